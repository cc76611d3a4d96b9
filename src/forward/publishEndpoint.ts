// The publish endpoint (`/.well-known/gatehouse/publish`, Upgrade: gatehouse-publish.v1): a publisher's
// registration is admitted by the publish policy, answered with 101, and its connection becomes an HTTP/2 session.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { AuditLog } from '../audit/auditLog.ts';
import type { AuditRecord } from '../audit/auditRecord.ts';
import type { RefusalRecords } from '../audit/refusalRecords.ts';
import type { AdmissionContext } from '../admission/admitRequest.ts';
import { admitPublisher } from '../admission/admitPublisher.ts';
import { bearerCredential, tokenOf } from '../admission/bearerCredential.ts';
import type { IdentityLimits } from '../admission/identityLimits.ts';
import type { GatewayConfig } from '../config/schema.ts';
import type { ConnectionContext } from '../listener/connectionContext.ts';
import { openExchange, refuseUncounted } from '../exchange/exchange.ts';
import { auditUnavailable, overRequestRate } from '../exchange/admissionPreamble.ts';
import type { PublishedServices } from '../upstream/publishedServices.ts';
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

export function createPublishEndpoint(deps: PublishDeps) {
  async function handleUpgrade(conn: ConnectionContext, req: IncomingMessage, socket: Duplex): Promise<void> {
    socket.on('error', () => {});
    const exchange = openExchange(conn, deps, { event: 'publish.open', method: req.method ?? '', path: PUBLISH_PATH });
    const deny = (refusal: Refusal, extra: Partial<AuditRecord> = {}) => {
      sendRefusalOnSocket(socket, refusal);
      // A client's own refusals are recorded within its budgets, so it cannot fill the audit disk.
      exchange.close({ decision: 'deny', status: refusal.status, reason: refusal.reason, durationMs: exchange.elapsedMs(), ...extra }, 'refused');
    };
    const unavailable = auditUnavailable(deps.audit);
    if (unavailable) return deny(unavailable);
    if (!deps.tunnels.accepting) return deny(refuse('GH_DRAINING', 'gateway shutting down'));
    const badRegistration = (reason: string, clientReason = reason) => refuse('GH_BAD_PUBLISH', reason, { clientReason });
    if (req.headers.upgrade?.toLowerCase() !== PUBLISH_PROTOCOL) return deny(badRegistration(`publish endpoint asked to upgrade to ${JSON.stringify(String(req.headers.upgrade ?? '').slice(0, 60))}`, `expected Upgrade: ${PUBLISH_PROTOCOL}`));
    const named = parseServiceList(req.headers[SERVICES_HEADER] as string | undefined);
    if (!named.ok) return deny(badRegistration(named.reason));
    const raw = parseRawTcpList(req.headers[RAW_TCP_HEADER] as string | undefined, named.services);
    if (!raw.ok) return deny(badRegistration(raw.reason), { detail: { services: named.services } });
    const detail = { services: named.services, ...(raw.rawTcp.length > 0 && { rawTcp: raw.rawTcp }) };
    // Its 429 names no retry-after: the publisher retries on its own schedule.
    const overRate = overRequestRate(deps.identityLimits, exchange);
    if (overRate) return overRate.then((over) => deny({ ...over, headers: {} }, { detail }));
    const config = deps.config();
    const credential = bearerCredential(req.headers, config.limits.maxTokenBytes, 'authorization');
    if (credential.kind === 'invalid') return deny(refusalOf({ status: 401, ...credential }), { detail });
    const token = tokenOf(credential);
    const ask = { identity: conn.identity, sourceIp: conn.sourceIp, token, services: named.services };
    const admitted = await admitPublisher(deps.admission().authorizer, config.publish, config.authz.limits, ask);
    const tokenRecord = admitted.decision && { user: admitted.decision.user, ...(admitted.decision.allow && { groups: admitted.decision.groups }), revocationIds: admitted.decision.revocationIds };
    if (!admitted.allow) return deny(admitted.refusal, { token: tokenRecord, detail });
    if (socket.destroyed) return deny(refuse('GH_CLIENT_CLOSED', 'publisher left during admission'), { token: tokenRecord, detail });

    const { decision } = admitted;
    const reservation = deps.published.reserve({ id: conn.id, user: decision.user, fingerprint: conn.identity.fingerprint, services: named.services, rawTcp: raw.rawTcp });
    if (!reservation.ok) return deny(refusalOf(reservation), { token: tokenRecord, detail });

    // Services that could not be published are named to the publisher (with why); the others are published.
    const { refused } = reservation;
    const rawTcp = raw.rawTcp.filter((s) => reservation.services.includes(s));
    const published = { services: reservation.services, ...(rawTcp.length > 0 && { rawTcp }), ...(refused.length > 0 && { refused }) };
    const record: Partial<AuditRecord> = { token: tokenRecord, publisher: conn.id, detail: published };
    const head = ['HTTP/1.1 101 Switching Protocols', 'connection: Upgrade', `upgrade: ${PUBLISH_PROTOCOL}`, `${USER_HEADER}: ${headerSafe(decision.user)}`, `${PUBLISHER_HEADER}: ${conn.id}`];
    if (refused.length > 0) head.push(`${NOT_PUBLISHED_HEADER}: ${headerSafe(refused.map((r) => `${r.service} (${r.reason})`).join('; '))}`);
    // HTTP/2 may take the socket only once the 101 is fully written (it writes to the same TLS stream).
    socket.write(head.join('\r\n') + '\r\n\r\n', (err) => {
      if (err || socket.destroyed) {
        reservation.cancel();
        return deny(refuse('GH_CLIENT_CLOSED', 'publisher left before the 101 was written'), { token: tokenRecord, detail });
      }
      const publisher = reservation.attach(socket);
      exchange.write({ ...record, decision: 'allow', status: 101, reason: decision.matched, durationMs: exchange.elapsedMs() });
      const opened = performance.now();
      let recorded!: () => void;
      const written = new Promise<void>((resolve) => (recorded = resolve));
      // Shutdown and revocations (of the token, or of the certificate: conn.id) end publishers like tunnels; the close record follows.
      // Shutdown drains them instead: the requests they carry finish (up to the drain time), as on socket routes.
      const forget = deps.tunnels.add((why, drainMs) => {
        if (drainMs === undefined) publisher.close(why);
        else publisher.drain(why, drainMs);
        return written;
      }, decision.revocationIds, conn.id);
      // Shutdown began while its 101 was being written: it was not there to be drained, and nothing would end it.
      if (!deps.tunnels.accepting) publisher.close('gateway shutting down');
      const recheck = setInterval(() => {
        const now = deps.config();
        void admitPublisher(deps.admission().authorizer, now.publish, now.authz.limits, ask).then((again) => {
          if (!again.allow) publisher.close(`authorization withdrawn: ${again.refusal.reason}`);
        });
      }, RECHECK_MS);
      recheck.unref();
      void publisher.closed.then((why) => {
        clearInterval(recheck);
        forget();
        const tls = req.socket as TLSSocket;
        exchange.close({
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
    });
  }

  /** A plain request on the reserved path: publishing needs the upgrade. */
  function handleRequest(conn: ConnectionContext, req: IncomingMessage, res: ServerResponse): void {
    refuseUncounted(conn, deps, { protocol: 'http', method: req.method ?? '', path: PUBLISH_PATH, decision: 'deny', status: 426, reason: 'publish endpoint needs an upgrade to ' + PUBLISH_PROTOCOL });
    res.setHeader('upgrade', PUBLISH_PROTOCOL);
    sendRefusal(res, refuse('GH_UPGRADE_REQUIRED', 'publish endpoint needs an upgrade', { clientReason: `publish endpoint needs Upgrade: ${PUBLISH_PROTOCOL}` }));
  }

  return { handleUpgrade, handleRequest };
}
