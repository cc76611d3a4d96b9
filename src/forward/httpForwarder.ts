// HTTP forwarding: checks the request's shape and its identity's rate, admits it through the shared
// admission path, then streams it to the upstream with http-proxy-3 and writes one audit record.
import { Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { PassThrough } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import type { AuditLog } from '../audit/auditLog.ts';
import { auditClient, type AuditRecord } from '../audit/auditRecord.ts';
import { auditTokenOf } from '../audit/auditToken.ts';
import { admitRequest, type AdmissionContext } from '../admission/admitRequest.ts';
import { tokenOf } from '../admission/bearerCredential.ts';
import { requestCredential, sessionOriginCheck } from '../session/requestCredential.ts';
import { signInRedirect } from '../session/signInRedirect.ts';
import type { IdentityLimits } from '../admission/identityLimits.ts';
import type { GatewayLimits } from '../config/schema.ts';
import { contextOf } from '../listener/connectionContext.ts';
import { createRejectLimiter } from '../listener/rejectLimiter.ts';
import { socketAddress, type UpstreamOpener } from '../upstream/openUpstream.ts';
import type { Duplex } from 'node:stream';
import { redactTarget } from './redactTarget.ts';
import { refuse } from './refusals.ts';
import { checkRequestShape } from './requestShape.ts';
import type { PrefixRewrite } from './prefixRewrite.ts';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './upstreamHeaders.ts';

export interface HttpForwarderDeps {
  /** Read per request, so a config reload takes effect for the next request. */
  admission: () => AdmissionContext;
  audit: AuditLog;
  identityLimits: IdentityLimits;
  /** The current config's limits (read per request, like admission). */
  limits: () => GatewayLimits;
  /** Opens streams to upstreams node:http cannot dial itself (published services). */
  upstreams: UpstreamOpener;
}

/** How long a stream-only upstream may take to open (the publisher connecting to its local service). */
const STREAM_OPEN_TIMEOUT_MS = 10_000;

/** Hands node:http one already-open stream for one request: no pooling, the stream ends with the response. */
class OneStreamAgent extends Agent {
  readonly #stream: Duplex;
  constructor(stream: Duplex) {
    super({ keepAlive: false });
    this.#stream = stream;
  }
  override createConnection(): Duplex {
    return this.#stream;
  }
}

/** What the response side needs to know about a request on its way through. */
interface InFlight {
  headers: Record<string, string | string[]>;
  bytesOut: number;
  truncated: boolean;
  /** The upstream answered something the gateway could not pass on. */
  upstreamFault?: { status: number; reason: string };
  /** Set when the route stripped a prefix: Location and cookie paths go back under it. */
  prefix?: PrefixRewrite;
}

export function createHttpForwarder(deps: HttpForwarderDeps) {
  // One keep-alive agent for all upstreams: Node keys its pools by socket path or host:port.
  const agent = new Agent({ keepAlive: true, maxFreeSockets: 64, timeout: 60_000 });
  // selfHandleResponse: the response's headers are decided by upstreamHeaders.ts, not by http-proxy-3's passes.
  const proxy = createProxyServer({ xfwd: false, agent, proxyTimeout: 120_000, selfHandleResponse: true });
  const flights = new WeakMap<IncomingMessage, InFlight>();
  // http-proxy-3's deleteLength pass rewrites framing for DELETE/OPTIONS (turning a chunked body into
  // raw bytes after `content-length: 0`): the headers decided in upstreamHeaders.ts go on after it.
  // (Its `after()` inserts *before* the named pass, so this anchors on XHeaders, which follows
  // deleteLength and precedes the pass that sends: correct whether or not that quirk is ever fixed.)
  proxy.after('web', 'XHeaders', (req: IncomingMessage) => {
    const flight = flights.get(req);
    if (flight) req.headers = flight.headers as IncomingMessage['headers'];
  });
  proxy.on('proxyRes', (proxyRes, req, res) => {
    const flight = flights.get(req);
    if (flight) proxyRes.on('data', (chunk: Buffer) => (flight.bytesOut += chunk.length));
    // An upstream that dies mid-body must not leave the client waiting forever: cut the client off.
    proxyRes.once('close', () => {
      if (proxyRes.complete) return;
      if (flight) flight.truncated = true;
      res.destroy();
    });
    if (res.headersSent || res.destroyed) return void proxyRes.destroy();
    try {
      res.writeHead(proxyRes.statusCode ?? 502, proxyRes.statusMessage, downstreamResponseHeaders(proxyRes.rawHeaders, { ...(flight?.prefix && { prefix: flight.prefix }) }));
    } catch (err) {
      // Whatever an upstream answers must never throw out of this handler (that would end the process).
      if (flight) flight.upstreamFault = { status: 502, reason: `unusable response head: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
      proxyRes.destroy();
      return void refuse(res, 502, 'upstream unavailable');
    }
    proxyRes.pipe(res);
  });
  const limitRecords = createRejectLimiter();

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const conn = contextOf(req.socket as TLSSocket);
    if (!conn) return refuse(res, 421, 'connection not authenticated');
    // The parser may hand over a request whose header block it has already refused (an invalid
    // Transfer-Encoding): the listener answered and recorded it; there is nothing left to decide.
    if (conn.brokenBy) return void res.destroy();
    conn.requests += 1;
    // While a request is being handled its parse errors are its own to record (see the listener's clientError).
    conn.inFlight += 1;
    res.once('close', () => (conn.inFlight -= 1));
    const target = redactTarget(req.url ?? '');
    const base: AuditRecord = { event: 'request', conn: conn.id, req: `${conn.id}.${conn.requests}`, source: conn.source, client: auditClient(conn.identity), protocol: 'http', method: req.method ?? '' };
    const finish = (fields: Partial<AuditRecord>) =>
      deps.audit.write({ ...base, ...fields, ...(fields.path !== target && { target }), durationMs: Math.round((performance.now() - started) * 1000) / 1000 });
    const deny = (status: number, clientReason: string, reason: string, extra: Partial<AuditRecord> = {}, headers: Record<string, string | number> = {}) => {
      refuse(res, status, clientReason, headers);
      finish({ decision: 'deny', status, reason, ...extra });
    };

    if (!deps.audit.healthy) return deny(503, 'gateway unavailable', `audit log unavailable: ${deps.audit.lastError ?? 'unknown error'}`);
    const shape = checkRequestShape(req);
    if (!shape.ok) return deny(shape.status, shape.clientReason, shape.reason);
    const ctx = deps.admission();
    // The rate is per certificate and checked before the token: a flood of bad tokens costs one bucket.
    const rate = deps.identityLimits.takeRequest(conn.identity.fingerprint);
    if (!rate.ok) {
      refuse(res, 429, 'too many requests', { 'retry-after': rate.retryAfterSeconds });
      // Refusals under a limit are recorded at a bounded rate, so they cannot fill the audit disk.
      const record = limitRecords.admit(conn.identity.fingerprint);
      if (record.write) finish({ decision: 'deny', status: 429, reason: rate.reason, ...(record.suppressed > 0 && { detail: { suppressedBefore: record.suppressed } }) });
      return;
    }
    const credential = requestCredential(req.headers, deps.limits().maxTokenBytes, ['authorization', 'cookie']);
    if (credential.auth) base.auth = credential.auth;
    if (credential.kind === 'invalid') return deny(401, credential.clientReason, credential.reason);
    if (credential.auth === 'session') {
      const origin = sessionOriginCheck(req.headers, req.method ?? 'GET', false);
      if (!origin.ok) return deny(403, 'cross-origin request refused', origin.reason);
    }

    // Watch for the client leaving while admission runs: its 'close' may fire before we listen again.
    let clientLeft = false;
    res.once('close', () => (clientLeft = true));
    const admission = await admitRequest(ctx, {
      identity: conn.identity,
      sourceIp: conn.sourceIp,
      protocol: 'http',
      method: req.method ?? 'GET',
      hostHeader: req.headers.host,
      target: req.url ?? '',
      token: tokenOf(credential),
    });
    const token = auditTokenOf(admission.decision);
    if (!admission.allow) {
      // A browser without a (working) session is sent to sign in, and back here afterwards.
      const signIn = admission.status === 401 ? signInRedirect(req) : undefined;
      return deny(signIn ? 303 : admission.status, admission.clientReason, admission.reason, { route: admission.route?.config.name, path: admission.path, token }, signIn ? { location: signIn } : {});
    }

    const { route, upstream, decision } = admission;
    if (clientLeft || res.destroyed) {
      // Nobody is waiting for the answer (the client left, or broke the request while it was being
      // admitted): do not act on the upstream on their behalf.
      // A request the client broke (malformed, timed out) is refused like any malformed request.
      const broken = conn.brokenBy ?? { status: 499, reason: 'client closed during admission' };
      return finish({ decision: conn.brokenBy ? 'deny' : 'allow', status: broken.status, reason: `${broken.reason}; not forwarded`, route: route.config.name, path: admission.path, token });
    }
    const address = socketAddress(upstream);
    // Only an admitted request may make the client send its body (RFC 9110 10.1.1).
    if (shape.expectsContinue) res.writeContinue();
    const caller = { identity: conn.identity, sourceIp: conn.sourceIp, user: decision.user, groups: decision.groups, route: route.config.name };
    const flight: InFlight = { headers: upstreamRequestHeaders(req.rawHeaders, { caller, keepToken: route.config.forwardToken, framing: shape.framing }), bytesOut: 0, truncated: false };
    if (admission.strippedPrefix !== undefined) flight.prefix = { prefix: admission.strippedPrefix, ...(req.headers.host !== undefined && { host: req.headers.host }) };
    flights.set(req, flight);
    req.url = admission.upstreamTarget;
    let agent: OneStreamAgent | undefined;
    if (!address) {
      // Reached only through a stream (a published service): opened before the body starts to flow, so no
      // byte is read before there is somewhere to send it, and "not published" is a 503 of its own.
      const opened = await deps.upstreams.open(upstream, STREAM_OPEN_TIMEOUT_MS);
      const where = { route: route.config.name, upstream: upstream.label, ...(upstream.via !== undefined && { publisher: upstream.via }), path: admission.path, token };
      if (!opened.ok) {
        refuse(res, opened.status, opened.clientReason);
        return finish({ decision: 'allow', ...where, status: opened.status, reason: `upstream error: ${opened.reason}`, bytesIn: 0, bytesOut: 0 });
      }
      if (res.destroyed) {
        opened.stream.destroy();
        return finish({ decision: 'allow', ...where, status: 499, reason: 'client closed while the upstream stream opened; not forwarded' });
      }
      agent = new OneStreamAgent(opened.stream);
    }
    let bytesIn = 0;
    // Only a request with a body gets the counting pass-through: most requests have none, and the
    // extra stream was a measurable share of the per-request cost (bench/README.md, the HTTP profile).
    let body: PassThrough | undefined;
    if (shape.framing.kind !== 'none') {
      body = new PassThrough();
      body.on('data', (chunk: Buffer) => (bytesIn += chunk.length));
      req.pipe(body);
    }

    let upstreamError: { status: number; reason: string } | undefined;
    res.once('close', () => {
      upstreamError ??= flight.upstreamFault;
      // A body the client broke off or framed badly (a bad chunk after admission) is the client's fault,
      // and the record must not read like a completed request.
      const bodyBroken = !req.complete && shape.framing.kind !== 'none';
      const broken = bodyBroken ? (conn.brokenBy ?? { status: 499, reason: 'client closed before sending the whole body' }) : undefined;
      finish({
        decision: 'allow',
        route: route.config.name,
        upstream: upstream.label,
        ...(upstream.via !== undefined && { publisher: upstream.via }),
        path: admission.path,
        token,
        status: broken ? broken.status : upstreamError ? upstreamError.status : res.statusCode,
        reason: broken
          ? `${broken.reason}; not completed`
          : upstreamError
            ? `upstream error: ${upstreamError.reason}`
            : flight.truncated
              ? 'upstream closed before the response was complete'
              : res.writableFinished
                ? decision.matched
                : 'client closed before response completed',
        bytesIn,
        bytesOut: flight.bytesOut,
      });
    });
    proxy.web(req, res, { target: (address ?? { host: 'localhost', port: 80 }) as never, ...(body && { buffer: body }), ...(agent && { agent }) }, (err: Error) => {
      upstreamError = { status: 502, reason: (err as NodeJS.ErrnoException).code ?? err.message };
      refuse(res, 502, 'upstream unavailable');
    });
  }

  return {
    handle,
    close(): void {
      agent.destroy();
      proxy.close();
    },
  };
}
