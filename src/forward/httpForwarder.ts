// The HTTP way in: checks the request's shape before the exchange stage admits it, then streams it to the
// upstream over undici (upstreamExchange.ts) and closes its exchange with one audit record.
import { relayRecord } from '../upstream/relayedUpstreams.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform } from 'node:stream';
import type { AuditLog } from '../audit/auditLog.ts';
import type { RefusalRecords } from '../audit/refusalRecords.ts';
import type { AuditRecord } from '../audit/auditRecord.ts';
import { auditTokenOf } from '../audit/auditToken.ts';
import type { AdmissionContext } from '../admission/admitRequest.ts';
import type { IdentityLimits } from '../admission/identityLimits.ts';
import type { GatewayLimits } from '../config/schema.ts';
import type { BreakListener } from '../exchange/connection.ts';
import type { Exchange } from '../exchange/exchange.ts';
import type { RouteAdmission } from '../exchange/admit.ts';
import type { WayIn } from '../exchange/wayIn.ts';
import { refuse, RefusalError, refusalOf } from '../errors/refusal.ts';
import { socketAddress, type UpstreamOpener } from '../upstream/openUpstream.ts';
import { redactTarget } from './redactTarget.ts';
import { sendRefusal } from './refusals.ts';
import { checkRequestShape, type RequestShape } from './requestShape.ts';
import type { PrefixRewrite } from './prefixRewrite.ts';
import { upstreamRequestHeaders } from './upstreamHeaders.ts';
import { relayExchange, type ExchangeOutcome, type UpstreamRequest } from './upstreamExchange.ts';
import { replicaRetry, type ReplicaRetry } from './replicaRetry.ts';
import { createUpstreamPools, type Lease, type StreamAddress, type UpstreamPools } from './upstreamPools.ts';
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
type Admitted = RouteAdmission;

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

/** Streams to a published service's replica, opened on the pool's demand; a stream that went elsewhere is refused. */
function publishedAddress(upstreams: UpstreamOpener, upstream: UpstreamTarget): StreamAddress {
  return {
    key: `${upstream.label}@${upstream.via ?? ''}`,
    // A relayed stream carries one exchange's identity and correlation id: never lent to another request.
    ...(upstream.kind === 'published' && upstream.relay && { once: true }),
    async open() {
      const target = { ...upstream };
      const opened = await upstreams.open(target, STREAM_OPEN_TIMEOUT_MS);
      if (!opened.ok) return new RefusalError(refusalOf(opened));
      if (target.via === upstream.via) return opened.stream;
      opened.stream.destroy();
      return new Error(`publisher ${upstream.via ?? ''} went away`);
    },
  };
}

/**
 * Only a request with a body gets the counting stage: most requests have none, and the extra stream
 * was a measurable share of the per-request cost (bench/README.md, the HTTP profile). The stage also
 * keeps the client's request out of undici's hands: undici destroys a body it gives up on, and that
 * would take the client's connection (and the refusal it is owed) with it.
 */
function countedBody(req: IncomingMessage, shape: AdmittedShape): { body: Transform | null; bytesIn(): number } {
  if (shape.framing.kind === 'none') return { body: null, bytesIn: () => 0 };
  let bytesIn = 0;
  const body = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytesIn += chunk.length;
      callback(null, chunk);
    },
  });
  req.pipe(body);
  return { body, bytesIn: () => bytesIn };
}

/**
 * One request from its arrival to its record: the way in's state, one object per request. The exchange
 * stage hands it to every step, so the HTTP path makes no closure per step (its CPU per request counts).
 */
interface HttpArrival {
  req: IncomingMessage;
  res: ServerResponse;
  /** The target as recorded (credentials in the query redacted). */
  target: string;
  exchange: Exchange | undefined;
  shape: RequestShape | undefined;
  /** Why the listener said the connection broke under it, if it did. */
  brokenBy: { status: number; reason: string } | undefined;
  /** The client left (its 'close' may fire while admission runs, before anyone listens again). */
  clientLeft: boolean;
}

/** The request's record fields: the target when the path differs, and its duration so far. */
function recordOf(a: HttpArrival, exchange: Exchange, fields: Partial<AuditRecord>): Partial<AuditRecord> {
  return { ...fields, ...(fields.path !== a.target && { target: a.target }), durationMs: exchange.elapsedMs() };
}

function finish(a: HttpArrival, fields: Partial<AuditRecord>): void {
  const exchange = a.exchange as Exchange;
  exchange.close(recordOf(a, exchange, fields));
}

/** What every request of one forwarder shares: its dependencies and its keep-alive pools. */
interface HttpForwarding {
  deps: HttpForwarderDeps;
  pools: UpstreamPools;
}

/** The HTTP way in: made once per forwarder, its methods handed each request's state by the exchange stage. */
function httpWayIn(fw: HttpForwarding): WayIn<[IncomingMessage, ServerResponse], HttpArrival, 'route'> {
  const { deps } = fw;
  return {
    stage: deps,
    decides: 'route',
    arrive: (req, res) => ({ req, res, target: redactTarget(req.url ?? ''), exchange: undefined, shape: undefined, brokenBy: undefined, clientLeft: false }),
    opens: (a) => ({ event: 'request', protocol: 'http', method: a.req.method ?? '' }),
    opened(a, exchange) {
      a.exchange = exchange;
      const { conn } = exchange;
      // While a request is being handled its parse errors are its own to record: the listener tells it why
      // the connection broke (see the listener's clientError).
      const onBreak: BreakListener = (why) => (a.brokenBy = why);
      conn.inFlight.add(onBreak);
      a.res.once('close', () => {
        conn.inFlight.delete(onBreak);
        a.clientLeft = true;
      });
    },
    precheck(a) {
      a.shape = checkRequestShape(a.req);
      return a.shape.ok ? undefined : { refusal: a.shape.refusal, record: {} };
    },
    credential: (a) => ({ headers: a.req.headers, method: a.req.method ?? 'GET', maxTokenBytes: deps.limits().maxTokenBytes, sources: ['authorization', 'cookie'], websocket: false }),
    decideOn: (a) => ({ protocol: 'http', method: a.req.method ?? 'GET', hostHeader: a.req.headers.host, target: a.req.url ?? '' }),
    signInFrom: (a) => a.req,
    answer: (a, refusal) => sendRefusal(a.res, refusal),
    refuse(a, exchange, { refusal, record }) {
      sendRefusal(a.res, refusal);
      // A client's own refusals are recorded within its budgets, so it cannot fill the audit disk.
      exchange.close(recordOf(a, exchange, { decision: 'deny', status: refusal.status, reason: refusal.reason, ...record }), 'refused');
    },
    carry(a, _exchange, admitted) {
      const admission = admitted.decided;
      if (a.clientLeft || a.res.destroyed) {
        // Nobody is waiting for the answer (the client left, or broke the request while it was being
        // admitted): do not act on the upstream on their behalf.
        // A request the client broke (malformed, timed out) is refused like any malformed request.
        const broken = a.brokenBy ?? { status: 499, reason: 'client closed during admission' };
        return finish(a, { decision: a.brokenBy ? 'deny' : 'allow', status: broken.status, reason: `${broken.reason}; not forwarded`, route: admission.route.config.name, path: admission.path, token: auditTokenOf(admission.decision) });
      }
      return forward(fw, a, admission);
    },
  };
}

/** Leases a connection to `to`; waits only while every connection to it is busy, and a client that leaves gives up its place. */
function leaseTo(fw: HttpForwarding, to: UpstreamTarget, chosen: UpstreamTarget, res: ServerResponse): Lease | Promise<Lease | undefined> | undefined {
  const address = to === chosen ? socketAddress(chosen) : undefined;
  return fw.pools.acquire(address ?? publishedAddress(fw.deps.upstreams, to), (cancel) => res.once('close', cancel));
}

/** Sends an admitted request to its upstream; its record is written once the answer is over or broken off. */
async function forward(fw: HttpForwarding, a: HttpArrival, admission: Admitted): Promise<void> {
  const { req, res } = a;
  const shape = a.shape as AdmittedShape;
  const { conn } = a.exchange as Exchange;
  const { route, upstream, decision } = admission;
  // Only an admitted request may make the client send its body (RFC 9110 10.1.1).
  if (shape.expectsContinue) res.writeContinue();
  const caller = { identity: conn.identity, sourceIp: conn.sourceIp, user: decision.user, groups: decision.groups, route: route.config.name };
  const headers = upstreamRequestHeaders(req.rawHeaders, { caller, keepToken: route.config.forwardToken, framing: shape.framing });
  // undici states chunked framing itself (it refuses the field): a body without a length is sent chunked.
  if (shape.framing.kind === 'chunked') delete headers['transfer-encoding'];
  const prefix: PrefixRewrite | undefined = admission.strippedPrefix === undefined ? undefined : { prefix: admission.strippedPrefix, ...(req.headers.host !== undefined && { host: req.headers.host }) };
  const where = { route: route.config.name, upstream: upstream.label, ...(upstream.via !== undefined && { publisher: upstream.via }), ...relayRecord(upstream), path: admission.path, token: auditTokenOf(decision) };
  // A published service is pooled like a socket: each connection is a stream over the chosen replica's
  // publisher connection, kept alive between requests (one stream and one service connection per
  // request cost two thirds of the requests/s); the replica is part of the key, as the policy pinned it.
  const leased = leaseTo(fw, upstream, upstream, res);
  const got = leased instanceof Promise ? await leased : leased;
  if (!got || res.destroyed) {
    got?.release();
    return finish(a, { decision: 'allow', ...where, status: 499, reason: 'client closed while waiting for an upstream connection; not forwarded' });
  }
  const counted = countedBody(req, shape);
  const request: UpstreamRequest = { method: req.method ?? 'GET', path: admission.upstreamTarget, headers, body: counted.body, ...(prefix && { prefix }) };
  relay(fw, a, admission, got, request, (retry, outcome) => {
    // A body the client broke off or framed badly (a bad chunk after admission) is the client's fault,
    // and the record must not read like a completed request.
    const bodyBroken = !req.complete && shape.framing.kind !== 'none';
    const broken = bodyBroken ? (a.brokenBy ?? { status: 499, reason: 'client closed before sending the whole body' }) : undefined;
    finish(a, {
      decision: 'allow',
      ...where,
      // The publisher that served it last, and the ones lost under it.
      ...(retry.lost.length > 0 && { publisher: retry.target.via, detail: { retried: retry.lost.length, retriedFrom: retry.lost } }),
      ...relayEnding(broken, outcome, res, decision.matched),
      bytesIn: counted.bytesIn(),
      bytesOut: outcome.bytesOut,
    });
  });
}

/** Relays the exchange over `lease`; a replica lost before any of the answer came is replaced for a safe request without a body. */
function relay(fw: HttpForwarding, a: HttpArrival, admission: Admitted, lease: Lease, request: UpstreamRequest, ended: (retry: ReplicaRetry, outcome: ExchangeOutcome) => void): void {
  const { res } = a;
  const retry = replicaRetry(fw.deps.upstreams, admission.upstream, request.method, request.body !== null);
  const elsewhere = (): boolean => {
    const next = retry.next();
    if (next === undefined) return false;
    // Sent from a later tick, never from within the failed dispatch (undici may fail one synchronously).
    void Promise.resolve(leaseTo(fw, next, admission.upstream, res)).then((lease) => {
      if (lease && !res.destroyed) return void (current = relayExchange(lease, request, res, elsewhere));
      lease?.release();
      const refusal = refuse('GH_UPSTREAM_UNAVAILABLE', 'no connection to another replica');
      current = { bytesOut: 0, truncated: false, upstreamError: { status: refusal.status, reason: refusal.reason }, abort() {} };
      sendRefusal(res, refusal);
    });
    return true;
  };
  let current: ExchangeOutcome & { abort(): void } = relayExchange(lease, request, res, retry.possible ? elsewhere : undefined);
  res.once('close', () => {
    ended(retry, current);
    // A client that left before the answer was complete takes the upstream request with it.
    if (!res.writableFinished) current.abort();
  });
}

export function createHttpForwarder(deps: HttpForwarderDeps) {
  // Keep-alive pools per upstream address (socket path or host:port), undici's: the forwarding layer's
  // CPU per request is about half of node:http's with http-proxy-3 (bench/README.md, forwarding designs).
  const pools = createUpstreamPools();
  const fw: HttpForwarding = { deps, pools };

  return {
    wayIn: httpWayIn(fw),
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
