// HTTP forwarding: checks the request's shape and its identity's rate, admits it through the shared
// admission path, then streams it to the upstream over undici (upstreamExchange.ts) and writes one audit record.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform } from 'node:stream';
import type { AuditLog } from '../audit/auditLog.ts';
import type { RefusalRecords } from '../audit/refusalRecords.ts';
import type { AuditRecord } from '../audit/auditRecord.ts';
import { auditTokenOf } from '../audit/auditToken.ts';
import { admitRequest, type Admission, type AdmissionContext } from '../admission/admitRequest.ts';
import { tokenOf } from '../admission/bearerCredential.ts';
import { signInRedirect } from '../session/signInRedirect.ts';
import type { IdentityLimits } from '../admission/identityLimits.ts';
import type { GatewayLimits } from '../config/schema.ts';
import type { ConnectionContext } from '../listener/connectionContext.ts';
import { openExchange, type Exchange } from '../exchange/exchange.ts';
import { auditUnavailable, overRequestRate, readCredential } from '../exchange/admissionPreamble.ts';
import { refuse, RefusalError, refusalOf, type Refusal } from '../errors/refusal.ts';
import { socketAddress, type UpstreamOpener } from '../upstream/openUpstream.ts';
import { redactTarget } from './redactTarget.ts';
import { sendRefusal } from './refusals.ts';
import { checkRequestShape, type RequestShape } from './requestShape.ts';
import type { PrefixRewrite } from './prefixRewrite.ts';
import { upstreamRequestHeaders } from './upstreamHeaders.ts';
import { relayExchange, type ExchangeOutcome, type UpstreamRequest } from './upstreamExchange.ts';
import { replicaRetry } from './replicaRetry.ts';
import { createUpstreamPools, type Lease, type StreamAddress } from './upstreamPools.ts';
import type { UpstreamTarget } from '../upstream/upstreamTarget.ts';

export interface HttpForwarderDeps {
  /** Read per request, so a config reload takes effect for the next request. */
  admission: () => AdmissionContext;
  audit: AuditLog;
  /** Deny records go through their budgets here. */
  refusals: RefusalRecords;
  identityLimits: IdentityLimits;
  /** The current config's limits (read per request, like admission). */
  limits: () => GatewayLimits;
  /** Opens streams to upstreams the gateway cannot dial itself (published services). */
  upstreams: UpstreamOpener;
}

type AdmittedShape = Extract<RequestShape, { ok: true }>;
type Admitted = Extract<Admission, { allow: true }>;

/** The status and reason of a forwarded request's record, from how its answer ended. */
function relayEnding(broken: { status: number; reason: string } | undefined, relay: ExchangeOutcome, res: ServerResponse, matched: string): { status: number; reason: string } {
  if (broken) return { status: broken.status, reason: `${broken.reason}; not completed` };
  if (relay.upstreamError) return { status: relay.upstreamError.status, reason: `upstream error: ${relay.upstreamError.reason}` };
  if (relay.truncated) return { status: res.statusCode, reason: 'upstream closed before the response was complete' };
  if (res.writableFinished) return { status: res.statusCode, reason: matched };
  // Gone before any answer (a silent upstream, a retry on another replica in flight): 499, as the body
  // case, never the 200 a response object starts with.
  return { status: res.headersSent ? res.statusCode : 499, reason: 'client closed before response completed' };
}

/** How long a stream-only upstream may take to open (the publisher connecting to its local service). */
const STREAM_OPEN_TIMEOUT_MS = 10_000;

export function createHttpForwarder(deps: HttpForwarderDeps) {
  /** Streams to a published service's replica, opened on the pool's demand; a stream that went elsewhere is refused. */
  const publishedAddress = (upstream: UpstreamTarget): StreamAddress => ({
    key: `${upstream.label}@${upstream.via ?? ''}`,
    async open() {
      const target = { ...upstream };
      const opened = await deps.upstreams.open(target, STREAM_OPEN_TIMEOUT_MS);
      if (!opened.ok) return new RefusalError(refusalOf(opened));
      if (target.via === upstream.via) return opened.stream;
      opened.stream.destroy();
      return new Error(`publisher ${upstream.via ?? ''} went away`);
    },
  });

  // Keep-alive pools per upstream address (socket path or host:port), undici's: the forwarding layer's
  // CPU per request is about half of node:http's with http-proxy-3 (bench/README.md, forwarding designs).
  const pools = createUpstreamPools();

  async function handle(conn: ConnectionContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
    // The parser may hand over a request whose header block it has already refused (an invalid
    // Transfer-Encoding): the listener answered and recorded it; there is nothing left to decide.
    if (conn.brokenBy) return void res.destroy();
    const exchange = openExchange(conn, deps, { event: 'request', protocol: 'http', method: req.method ?? '' });
    // While a request is being handled its parse errors are its own to record (see the listener's clientError).
    conn.inFlight += 1;
    res.once('close', () => (conn.inFlight -= 1));
    const target = redactTarget(req.url ?? '');
    const recordOf = (fields: Partial<AuditRecord>): Partial<AuditRecord> => ({ ...fields, ...(fields.path !== target && { target }), durationMs: exchange.elapsedMs() });
    const finish = (fields: Partial<AuditRecord>) => exchange.close(recordOf(fields));
    const refused = (refusal: Refusal, extra: Partial<AuditRecord> = {}) => {
      sendRefusal(res, refusal);
      // A client's own refusals are recorded within its budgets, so it cannot fill the audit disk.
      exchange.close(recordOf({ decision: 'deny', status: refusal.status, reason: refusal.reason, ...extra }), 'refused');
    };

    const unavailable = auditUnavailable(deps.audit);
    if (unavailable) return refused(unavailable);
    const shape = checkRequestShape(req);
    if (!shape.ok) return refused(shape.refusal);
    const ctx = deps.admission();
    const overRate = overRequestRate(deps.identityLimits, exchange);
    if (overRate) return refused(await overRate);
    const read = readCredential(exchange, { headers: req.headers, method: req.method ?? 'GET', maxTokenBytes: deps.limits().maxTokenBytes, sources: ['authorization', 'cookie'], websocket: false });
    if (!read.ok) return refused(read.refusal);
    const { credential } = read;

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
      const signIn = admission.refusal.status === 401 ? signInRedirect(req) : undefined;
      const refusal = signIn ? { ...admission.refusal, status: 303, headers: { location: signIn } } : admission.refusal;
      return refused(refusal, { route: admission.route?.config.name, path: admission.path, token });
    }

    const { route } = admission;
    if (clientLeft || res.destroyed) {
      // Nobody is waiting for the answer (the client left, or broke the request while it was being
      // admitted): do not act on the upstream on their behalf.
      // A request the client broke (malformed, timed out) is refused like any malformed request.
      const broken = conn.brokenBy ?? { status: 499, reason: 'client closed during admission' };
      return finish({ decision: conn.brokenBy ? 'deny' : 'allow', status: broken.status, reason: `${broken.reason}; not forwarded`, route: route.config.name, path: admission.path, token });
    }
    return forward(exchange, req, res, shape, admission, finish);
  }

  /** Sends an admitted request to its upstream; its record is written once the answer is over or broken off. */
  async function forward(exchange: Exchange, req: IncomingMessage, res: ServerResponse, shape: AdmittedShape, admission: Admitted, finish: (fields: Partial<AuditRecord>) => void): Promise<void> {
    const { conn } = exchange;
    const { route, upstream, decision } = admission;
    const token = auditTokenOf(decision);
    const address = socketAddress(upstream);
    // Only an admitted request may make the client send its body (RFC 9110 10.1.1).
    if (shape.expectsContinue) res.writeContinue();
    const caller = { identity: conn.identity, sourceIp: conn.sourceIp, user: decision.user, groups: decision.groups, route: route.config.name };
    const headers = upstreamRequestHeaders(req.rawHeaders, { caller, keepToken: route.config.forwardToken, framing: shape.framing });
    // undici states chunked framing itself (it refuses the field): a body without a length is sent chunked.
    if (shape.framing.kind === 'chunked') delete headers['transfer-encoding'];
    const prefix: PrefixRewrite | undefined = admission.strippedPrefix === undefined ? undefined : { prefix: admission.strippedPrefix, ...(req.headers.host !== undefined && { host: req.headers.host }) };
    const where = { route: route.config.name, upstream: upstream.label, ...(upstream.via !== undefined && { publisher: upstream.via }), path: admission.path, token };
    // A published service is pooled like a socket: each connection is a stream over the chosen replica's
    // publisher connection, kept alive between requests (one stream and one service connection per
    // request cost two thirds of the requests/s); the replica is part of the key, as the policy pinned it.
    // Waits only while every connection to this upstream is busy (the pool's bound); a client that
    // leaves meanwhile gives up its place in the line.
    const leaseTo = (to: UpstreamTarget) => pools.acquire(to === upstream ? (address ?? publishedAddress(to)) : publishedAddress(to), (cancel) => res.once('close', cancel));
    const leased = leaseTo(upstream);
    const got = leased instanceof Promise ? await leased : leased;
    if (!got || res.destroyed) {
      got?.release();
      return finish({ decision: 'allow', ...where, status: 499, reason: 'client closed while waiting for an upstream connection; not forwarded' });
    }
    const lease: Lease = got;
    let bytesIn = 0;
    // Only a request with a body gets the counting stage: most requests have none, and the extra stream
    // was a measurable share of the per-request cost (bench/README.md, the HTTP profile). The stage also
    // keeps the client's request out of undici's hands: undici destroys a body it gives up on, and that
    // would take the client's connection (and the refusal it is owed) with it.
    let body: Transform | null = null;
    if (shape.framing.kind !== 'none') {
      body = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          bytesIn += chunk.length;
          callback(null, chunk);
        },
      });
      req.pipe(body);
    }

    const request: UpstreamRequest = { method: req.method ?? 'GET', path: admission.upstreamTarget, headers, body, ...(prefix && { prefix }) };
    // A replica lost before any of the answer came: a safe request without a body goes to another one.
    const retry = replicaRetry(deps.upstreams, upstream, request.method, body !== null);
    const elsewhere = (): boolean => {
      const next = retry.next();
      if (next === undefined) return false;
      // Sent from a later tick, never from within the failed dispatch (undici may fail one synchronously).
      void Promise.resolve(leaseTo(next)).then((lease) => {
        if (lease && !res.destroyed) return void (relay = relayExchange(lease, request, res, elsewhere));
        lease?.release();
        relay = { bytesOut: 0, truncated: false, upstreamError: { status: 502, reason: 'no connection to another replica' }, abort() {} };
        sendRefusal(res, refuse('GH_UPSTREAM_UNAVAILABLE', 'no connection to another replica'));
      });
      return true;
    };
    let relay: ExchangeOutcome & { abort(): void } = relayExchange(lease, request, res, retry.possible ? elsewhere : undefined);
    res.once('close', () => {
      // A body the client broke off or framed badly (a bad chunk after admission) is the client's fault,
      // and the record must not read like a completed request.
      const bodyBroken = !req.complete && shape.framing.kind !== 'none';
      const broken = bodyBroken ? (conn.brokenBy ?? { status: 499, reason: 'client closed before sending the whole body' }) : undefined;
      finish({
        decision: 'allow',
        ...where,
        // The publisher that served it last, and the ones lost under it.
        ...(retry.lost.length > 0 && { publisher: retry.target.via, detail: { retried: retry.lost.length, retriedFrom: retry.lost } }),
        ...relayEnding(broken, relay, res, decision.matched),
        bytesIn,
        bytesOut: relay.bytesOut,
      });
      // A client that left before the answer was complete takes the upstream request with it.
      if (!res.writableFinished) relay.abort();
    });
  }

  return {
    handle,
    /** Closes the pools nothing is in flight on: after a reload, those of removed routes go at once. */
    closeIdle(): void {
      pools.closeIdle();
    },
    /** Shutdown is draining: keep-alive connections to upstreams close as their exchanges end. */
    drain(): void {
      pools.drain();
    },
    close(): void {
      pools.close();
    },
  };
}
