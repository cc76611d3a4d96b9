// The publish endpoint (`/.well-known/gatehouse/publish`, Upgrade: gatehouse-publish.v1): a publisher's
// registration is admitted by the publish policy, answered with 101, and its connection becomes an HTTP/2 session.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { AuditLog } from '../audit/auditLog.ts';
import type { AuditRecord } from '../audit/auditRecord.ts';
import type { RefusalRecords } from '../audit/refusalRecords.ts';
import type { AdmissionContext } from '../admission/admitRequest.ts';
import { admitPublisher, type PublisherRequest } from '../admission/admitPublisher.ts';
import { tokenOf } from '../admission/bearerCredential.ts';
import type { Decision } from '../authz/types.ts';
import type { IdentityLimits } from '../admission/identityLimits.ts';
import type { GatewayConfig } from '../config/schema.ts';
import type { ConnectionContext } from '../exchange/connection.ts';
import { openExchange, refuseUncounted } from '../exchange/exchange.ts';
import { admit, type Refused } from '../exchange/admit.ts';
import type { Exchange } from '../exchange/exchange.ts';
import type { Publisher, PublishedServices, Reservation } from '../upstream/publishedServices.ts';
import { NOT_PUBLISHED_HEADER, parseRawTcpList, parseServiceList, PUBLISH_PATH, PUBLISH_PROTOCOL, PUBLISHER_HEADER, RAW_TCP_HEADER, SERVICES_HEADER, USER_HEADER } from '../upstream/publishProtocol.ts';
import { refuse, refusalOf, type Refusal } from '../errors/refusal.ts';
import { sendRefusal, sendRefusalOnSocket } from './refusals.ts';
import { headerSafe } from './upstreamHeaders.ts';
import type { TunnelRegistry } from './tunnelSession.ts';

/** A registered publisher is authorized again this often: an expired, attenuated or no longer allowed token ends it. */
const RECHECK_MS = 30_000;

export interface PublishDeps {
  admission: () => AdmissionContext;
  audit: AuditLog;
  /** Deny records go through their budgets here. */
  refusals: RefusalRecords;
  tunnels: TunnelRegistry;
  identityLimits: IdentityLimits;
  /** The current config (publish block, limits, authz run limits). */
  config: () => GatewayConfig;
  published: PublishedServices;
}

type ServiceList = { services: string[]; rawTcp?: string[] };
type AttachedPublisher = Publisher;

/** An admitted registration with its services reserved, on its way to the 101. */
interface Acceptance {
  conn: ConnectionContext;
  req: IncomingMessage;
  socket: Duplex;
  exchange: Exchange;
  decision: Extract<Decision, { allow: true }>;
  reservation: Extract<Reservation, { ok: true }>;
  /** What the registration is authorized again with. */
  ask: PublisherRequest;
  rawTcp: string[];
  deny(refusal: Refusal): void;
}

/** The registration's own checks, before it spends any of the rate: the gateway is not stopping, the upgrade and service lists are well formed. */
function checkRegistration(deps: PublishDeps, req: IncomingMessage): { ok: true; services: string[]; rawTcp: string[] } | { ok: false; refused: Refused } {
  const badRegistration = (reason: string, clientReason = reason, record: Partial<AuditRecord> = {}) => ({ ok: false as const, refused: { refusal: refuse('GH_BAD_PUBLISH', reason, { clientReason }), record } });
  if (!deps.tunnels.accepting) return { ok: false, refused: { refusal: refuse('GH_DRAINING', 'gateway shutting down'), record: {} } };
  if (req.headers.upgrade?.toLowerCase() !== PUBLISH_PROTOCOL) return badRegistration(`publish endpoint asked to upgrade to ${JSON.stringify(String(req.headers.upgrade ?? '').slice(0, 60))}`, `expected Upgrade: ${PUBLISH_PROTOCOL}`);
  const named = parseServiceList(req.headers[SERVICES_HEADER] as string | undefined);
  if (!named.ok) return badRegistration(named.reason);
  const raw = parseRawTcpList(req.headers[RAW_TCP_HEADER] as string | undefined, named.services);
  if (!raw.ok) return badRegistration(raw.reason, raw.reason, { detail: { services: named.services } });
  return { ok: true, services: named.services, rawTcp: raw.rawTcp };
}

/** The token fields of a publisher's records. */
function tokenRecordOf(decision: Decision | undefined): AuditRecord['token'] {
  return decision && { user: decision.user, ...(decision.allow && { groups: decision.groups }), revocationIds: decision.revocationIds };
}

/** Answers 101 naming the services that could not be published (with why), then serves the publisher until it goes. */
function accept(deps: PublishDeps, a: Acceptance): void {
  const { conn, socket, decision, reservation } = a;
  const { refused } = reservation;
  const rawTcp = a.rawTcp.filter((s) => reservation.services.includes(s));
  const published = { services: reservation.services, ...(rawTcp.length > 0 && { rawTcp }), ...(refused.length > 0 && { refused }) };
  const record: Partial<AuditRecord> = { token: tokenRecordOf(decision), publisher: conn.id, detail: published };
  const head = ['HTTP/1.1 101 Switching Protocols', 'connection: Upgrade', `upgrade: ${PUBLISH_PROTOCOL}`, `${USER_HEADER}: ${headerSafe(decision.user)}`, `${PUBLISHER_HEADER}: ${conn.id}`];
  if (refused.length > 0) head.push(`${NOT_PUBLISHED_HEADER}: ${headerSafe(refused.map((r) => `${r.service} (${r.reason})`).join('; '))}`);
  // HTTP/2 may take the socket only once the 101 is fully written (it writes to the same TLS stream).
  socket.write(head.join('\r\n') + '\r\n\r\n', (err) => {
    if (err || socket.destroyed) {
      reservation.cancel();
      return a.deny(refuse('GH_CLIENT_CLOSED', 'publisher left before the 101 was written'));
    }
    const publisher = reservation.attach(socket);
    a.exchange.write({ ...record, decision: 'allow', status: 101, reason: decision.matched, durationMs: a.exchange.elapsedMs() });
    serve(deps, a, publisher, record, published);
  });
}

/** Keeps an attached publisher under shutdown, revocation and periodic re-authorization; its close record ends the exchange. */
function serve(deps: PublishDeps, a: Acceptance, publisher: AttachedPublisher, record: Partial<AuditRecord>, published: Record<string, unknown>): void {
  const { decision } = a;
  const opened = performance.now();
  let recorded!: () => void;
  const written = new Promise<void>((resolve) => (recorded = resolve));
  // Shutdown and revocations (of the token, or of the certificate: conn.id) end publishers like tunnels; the close record follows.
  // Shutdown drains them instead: the requests they carry finish (up to the drain time), as on socket routes.
  const forget = deps.tunnels.add((why, drainMs) => {
    if (drainMs === undefined) publisher.close(why);
    else publisher.drain(why, drainMs);
    return written;
  }, decision.revocationIds, a.conn.id);
  // Shutdown began while its 101 was being written: it was not there to be drained, and nothing would end it.
  if (!deps.tunnels.accepting) publisher.close('gateway shutting down');
  const recheck = setInterval(() => {
    const now = deps.config();
    void admitPublisher(deps.admission().authorizer, now.publish, now.authz.limits, a.ask).then((again) => {
      if (!again.allow) publisher.close(`authorization withdrawn: ${again.refusal.reason}`);
    });
  }, RECHECK_MS);
  recheck.unref();
  void publisher.closed.then((why) => {
    clearInterval(recheck);
    forget();
    const tls = a.req.socket as TLSSocket;
    a.exchange.close({
      ...record,
      event: 'publish.close',
      reason: why,
      bytesIn: tls.bytesRead,
      bytesOut: tls.bytesWritten,
      durationMs: Math.round(performance.now() - opened),
      detail: { ...published, streams: publisher.streamsServed },
    });
    recorded();
  });
}

export function createPublishEndpoint(deps: PublishDeps) {
  async function handleUpgrade(conn: ConnectionContext, req: IncomingMessage, socket: Duplex): Promise<void> {
    socket.on('error', () => {});
    const exchange = openExchange(conn, deps, { event: 'publish.open', method: req.method ?? '', path: PUBLISH_PATH });
    /** The services named, once the registration is well formed: every later refusal's record names them. */
    let detail: ServiceList | undefined;
    const deny = (refusal: Refusal, extra: Partial<AuditRecord> = {}) => {
      sendRefusalOnSocket(socket, refusal);
      // A client's own refusals are recorded within its budgets, so it cannot fill the audit disk.
      exchange.close({ decision: 'deny', status: refusal.status, reason: refusal.reason, durationMs: exchange.elapsedMs(), ...extra, ...(detail && !extra.detail && { detail }) }, 'refused');
    };
    let registration: { services: string[]; rawTcp: string[] } | undefined;
    const config = deps.config();
    const admitted = await admit<Extract<Decision, { allow: true }>>(exchange, deps, {
      precheck: () => {
        const checked = checkRegistration(deps, req);
        if (!checked.ok) return checked.refused;
        registration = checked;
        detail = { services: checked.services, ...(checked.rawTcp.length > 0 && { rawTcp: checked.rawTcp }) };
        return undefined;
      },
      // A program's bearer token only; its 429 names no retry-after: the publisher retries on its own schedule.
      credential: { headers: req.headers, method: req.method ?? '', maxTokenBytes: config.limits.maxTokenBytes, sources: ['authorization'], websocket: false, bearerOnly: true },
      decide: async (token) => {
        const admission = await admitPublisher(deps.admission().authorizer, config.publish, config.authz.limits, { identity: conn.identity, sourceIp: conn.sourceIp, token, services: registration?.services ?? [] });
        if (admission.allow) return { ok: true, value: admission.decision };
        return { ok: false, error: { refusal: admission.refusal, record: { token: tokenRecordOf(admission.decision) } } };
      },
    });
    if (!admitted.ok) return deny(admitted.error.refusal.status === 429 ? { ...admitted.error.refusal, headers: {} } : admitted.error.refusal, admitted.error.record);
    const decision = admitted.value.decided;
    const ask = { identity: conn.identity, sourceIp: conn.sourceIp, token: admitted.value.credential && tokenOf(admitted.value.credential), services: registration?.services ?? [] };
    const tokenRecord = tokenRecordOf(decision);
    if (socket.destroyed) return deny(refuse('GH_CLIENT_CLOSED', 'publisher left during admission'), { token: tokenRecord });
    const rawTcp = registration?.rawTcp ?? [];
    const reservation = deps.published.reserve({ id: conn.id, user: decision.user, fingerprint: conn.identity.fingerprint, services: ask.services, rawTcp });
    if (!reservation.ok) return deny(refusalOf(reservation), { token: tokenRecord });
    accept(deps, { conn, req, socket, exchange, decision, reservation, ask, rawTcp, deny: (refusal) => deny(refusal, { token: tokenRecord }) });
  }

  /** A plain request on the reserved path: publishing needs the upgrade. */
  function handleRequest(conn: ConnectionContext, req: IncomingMessage, res: ServerResponse): void {
    refuseUncounted(conn, deps, { protocol: 'http', method: req.method ?? '', path: PUBLISH_PATH, decision: 'deny', status: 426, reason: 'publish endpoint needs an upgrade to ' + PUBLISH_PROTOCOL });
    res.setHeader('upgrade', PUBLISH_PROTOCOL);
    sendRefusal(res, refuse('GH_UPGRADE_REQUIRED', 'publish endpoint needs an upgrade', { clientReason: `publish endpoint needs Upgrade: ${PUBLISH_PROTOCOL}` }));
  }

  return { handleUpgrade, handleRequest };
}
