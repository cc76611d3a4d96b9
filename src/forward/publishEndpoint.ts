// The publish endpoint (`/.well-known/gatehouse/publish`, Upgrade: gatehouse-publish.v1): a publisher's
// registration is admitted by the publish policy, answered with 101, and its connection becomes an HTTP/2 session.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { AuditLog } from '../audit/auditLog.ts';
import type { AuditRecord } from '../audit/auditRecord.ts';
import type { RefusalRecords } from '../audit/refusalRecords.ts';
import type { AdmissionContext } from '../admission/admitRequest.ts';
import { publisherTokenOf } from '../audit/auditToken.ts';
import type { Decision } from '../authz/types.ts';
import type { IdentityLimits } from '../admission/identityLimits.ts';
import type { GatewayConfig } from '../config/schema.ts';
import type { ConnectionContext } from '../exchange/connection.ts';
import type { Refused } from '../exchange/admit.ts';
import type { Exchange } from '../exchange/exchange.ts';
import type { PublisherDecided, WayIn } from '../exchange/wayIn.ts';
import type { Publisher, PublishedServices, Reservation } from '../upstream/publishedServices.ts';
import { PUBLISH_PATH } from '../routing/reservedPaths.ts';
import { INSTANCE_HEADER, NOT_PUBLISHED_HEADER, parsePublisherId, parseRawTcpList, parseServiceList, parseUdpList, PUBLISH_PROTOCOL, PUBLISHER_HEADER, PUBLISHER_ID_HEADER, RAW_TCP_HEADER, SERVICES_HEADER, UDP_HEADER, USER_HEADER } from '../upstream/publishProtocol.ts';
import { refuse, refusalOf, type Refusal } from '../errors/refusal.ts';
import { ignoreSocketErrors, sendRefusalOnSocket } from './refusals.ts';
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

type ServiceList = { services: string[]; rawTcp?: string[]; udp?: string[] };
type AttachedPublisher = Publisher;
/**
 * A well-formed registration: the services named, which of them speak raw TCP or are UDP services, and the
 * publisher id and replaced connection it names (a newer publisher).
 */
type Registration = { services: string[]; rawTcp: string[]; udp: string[]; publisherId?: string; replaces?: string };

/** An admitted registration with its services reserved, on its way to the 101. */
interface Acceptance {
  conn: ConnectionContext;
  req: IncomingMessage;
  socket: Duplex;
  exchange: Exchange;
  decision: Extract<Decision, { allow: true }>;
  reservation: Extract<Reservation, { ok: true }>;
  /** Authorizes the registration again under the current config. */
  reauthorize: PublisherDecided['reauthorize'];
  rawTcp: string[];
  /** The id the publisher process sent (its records name it, so its connections to every instance are found together). */
  publisherId: string | undefined;
  udp: string[];
  deny(refusal: Refusal): void;
}

/** The registration's own checks, before it spends any of the rate: the gateway is not stopping, the upgrade and service lists are well formed. */
function checkRegistration(deps: PublishDeps, req: IncomingMessage): ({ ok: true } & Registration) | { ok: false; refused: Refused } {
  const badRegistration = (reason: string, clientReason = reason, record: Partial<AuditRecord> = {}) => ({ ok: false as const, refused: { refusal: refuse('GH_BAD_PUBLISH', reason, { clientReason }), record } });
  if (!deps.tunnels.accepting) return { ok: false, refused: { refusal: refuse('GH_DRAINING', 'gateway shutting down'), record: {} } };
  if (req.headers.upgrade?.toLowerCase() !== PUBLISH_PROTOCOL) return badRegistration(`publish endpoint asked to upgrade to ${JSON.stringify(String(req.headers.upgrade ?? '').slice(0, 60))}`, `expected Upgrade: ${PUBLISH_PROTOCOL}`);
  const named = parseServiceList(req.headers[SERVICES_HEADER] as string | undefined);
  if (!named.ok) return badRegistration(named.reason);
  const raw = parseRawTcpList(req.headers[RAW_TCP_HEADER] as string | undefined, named.services);
  if (!raw.ok) return badRegistration(raw.reason, raw.reason, { detail: { services: named.services } });
  const udp = parseUdpList(req.headers[UDP_HEADER] as string | undefined, named.services, raw.rawTcp);
  if (!udp.ok) return badRegistration(udp.reason, udp.reason, { detail: { services: named.services } });
  const claimed = parsePublisherId(req.headers[PUBLISHER_ID_HEADER] as string | undefined);
  if (!claimed.ok) return badRegistration(claimed.reason, claimed.reason, { detail: { services: named.services } });
  return { ok: true, services: named.services, rawTcp: raw.rawTcp, udp: udp.udp, ...(claimed.id !== undefined && { publisherId: claimed.id }), ...(claimed.replaces !== undefined && { replaces: claimed.replaces }) };
}

/** Answers 101 naming the services that could not be published (with why), then serves the publisher until it goes. */
function accept(deps: PublishDeps, a: Acceptance): void {
  const { conn, socket, decision, reservation } = a;
  const { refused } = reservation;
  const rawTcp = a.rawTcp.filter((s) => reservation.services.includes(s));
  const udp = a.udp.filter((s) => reservation.services.includes(s));
  const published = { services: reservation.services, ...(rawTcp.length > 0 && { rawTcp }), ...(udp.length > 0 && { udp }), ...(refused.length > 0 && { refused }), ...(a.publisherId !== undefined && { publisherId: a.publisherId }) };
  const record: Partial<AuditRecord> = { token: publisherTokenOf(decision), publisher: conn.id, detail: published };
  const head = ['HTTP/1.1 101 Switching Protocols', 'connection: Upgrade', `upgrade: ${PUBLISH_PROTOCOL}`, `${USER_HEADER}: ${headerSafe(decision.user)}`, `${PUBLISHER_HEADER}: ${conn.id}`];
  if (refused.length > 0) head.push(`${NOT_PUBLISHED_HEADER}: ${headerSafe(refused.map((r) => `${r.service} (${r.reason})`).join('; '))}`);
  const instance = deps.config().cluster?.instance;
  if (instance !== undefined) head.push(`${INSTANCE_HEADER}: ${instance}`);
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
    void a.reauthorize().then((again) => {
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

/** One registration's arrival: the state the exchange stage hands each step. */
interface PublishArrival {
  req: IncomingMessage;
  socket: Duplex;
  /** The registration's services and publisher id, once it is well formed. */
  registration: Registration | undefined;
  /** The services named, once the registration is well formed: every later refusal's record names them. */
  detail: ServiceList | undefined;
}

/** Answers on the socket and closes the exchange with its deny record, within the client's budgets. */
function deny(p: PublishArrival, exchange: Exchange, refusal: Refusal, extra: Partial<AuditRecord> = {}): void {
  sendRefusalOnSocket(p.socket, refusal);
  // A client's own refusals are recorded within its budgets, so it cannot fill the audit disk.
  exchange.close({ decision: 'deny', status: refusal.status, reason: refusal.reason, durationMs: exchange.elapsedMs(), ...extra, ...(p.detail && !extra.detail && { detail: p.detail }) }, 'refused');
}

/** The publish way in: a registration admitted by the publish policy, then served as an HTTP/2 session. */
export function createPublishEndpoint(deps: PublishDeps): { wayIn: WayIn<[IncomingMessage, Duplex], PublishArrival, 'publish'> } {
  const policy = () => {
    const config = deps.config();
    return { publish: config.publish, limits: config.authz.limits };
  };
  const wayIn: WayIn<[IncomingMessage, Duplex], PublishArrival, 'publish'> = {
    stage: deps,
    decides: 'publish',
    arrive(req, socket) {
      socket.on('error', ignoreSocketErrors);
      return { req, socket, registration: undefined, detail: undefined };
    },
    opens: ({ req }) => ({ event: 'publish.open', method: req.method ?? '', path: PUBLISH_PATH }),
    precheck(p) {
      const checked = checkRegistration(deps, p.req);
      if (!checked.ok) return checked.refused;
      p.registration = checked;
      p.detail = { services: checked.services, ...(checked.rawTcp.length > 0 && { rawTcp: checked.rawTcp }), ...(checked.udp.length > 0 && { udp: checked.udp }) };
      return undefined;
    },
    // A program's bearer token only; its 429 names no retry-after: the publisher retries on its own schedule.
    credential: ({ req }) => ({ headers: req.headers, method: req.method ?? '', maxTokenBytes: deps.config().limits.maxTokenBytes, sources: ['authorization'], websocket: false, bearerOnly: true }),
    decideOn: (p) => ({ services: p.registration?.services ?? [], policy }),
    answer: (p, refusal) => sendRefusalOnSocket(p.socket, refusal),
    refuse: (p, exchange, { refusal, record }) => deny(p, exchange, refusal.status === 429 ? { ...refusal, headers: {} } : refusal, record),
    carry(p, exchange, admitted) {
      const { decision, request, reauthorize } = admitted.decided;
      const { conn } = exchange;
      const token = publisherTokenOf(decision);
      if (p.socket.destroyed) return deny(p, exchange, refuse('GH_CLIENT_CLOSED', 'publisher left during admission'), { token });
      const rawTcp = p.registration?.rawTcp ?? [];
      const { publisherId, replaces } = p.registration ?? {};
      const udp = p.registration?.udp ?? [];
      const reservation = deps.published.reserve({ id: conn.id, user: decision.user, fingerprint: conn.identity.fingerprint, services: request.services, rawTcp, udp, ...(publisherId !== undefined && { publisherId }), ...(replaces !== undefined && { replaces }) });
      if (!reservation.ok) return deny(p, exchange, refusalOf(reservation), { token });
      accept(deps, { conn, req: p.req, socket: p.socket, exchange, decision, reservation, reauthorize, rawTcp, udp, publisherId, deny: (refusal) => deny(p, exchange, refusal, { token }) });
    },
  };
  return { wayIn };
}
