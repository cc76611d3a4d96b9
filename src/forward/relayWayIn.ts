// The way in for streams another instance of the cluster relays here (an HTTP/2 CONNECT on the peer channel):
// the entry instance decided, so this one checks the ticket, opens its own publisher's stream and carries bytes.
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { AuditLog } from '../audit/auditLog.ts';
import { auditClient, type AuditRecord } from '../audit/auditRecord.ts';
import type { RefusalRecords } from '../audit/refusalRecords.ts';
import type { AdmissionContext } from '../admission/admitRequest.ts';
import type { IdentityLimits } from '../admission/identityLimits.ts';
import type { WayIn } from '../exchange/wayIn.ts';
import { refuse, type Refusal } from '../errors/refusal.ts';
import type { UpstreamConnection } from '../upstream/openUpstream.ts';
import { decodeRelay, RELAY_ERROR_HEADER, RELAY_HEADER, type RelayWire } from '../upstream/relayWire.ts';
import type { UpstreamTarget } from '../upstream/upstreamTarget.ts';
import { splice, type Splice } from './byteSplice.ts';
import type { TunnelRegistry } from './tunnelSession.ts';

type Published = Extract<UpstreamTarget, { kind: 'published' }>;

/** How long the publisher here may take to open its service's stream. */
const RELAY_OPEN_TIMEOUT_MS = 10_000;

export interface RelayArrival {
  stream: ServerHttp2Stream;
  /** The entry instance, as its certificate names it (the peer channel took no other). */
  from: string;
  read: ReturnType<typeof decodeRelay>;
}

export interface RelayDeps {
  audit: Pick<AuditLog, 'write' | 'healthy' | 'lastError'>;
  refusals: Pick<RefusalRecords, 'request'>;
  admission: () => AdmissionContext;
  /** Publishers here only: a relayed stream is never relayed on. */
  published: { openRelayed(target: Published, fingerprint: string, timeoutMs: number, datagrams?: boolean): Promise<UpstreamConnection> };
  /** This instance's own revocations: a relayed token it knows revoked is refused, though the entry instance allowed it. */
  isRevoked(ids: readonly string[]): boolean;
  /** Open relayed streams are registered here with their token's ids, so a revocation heard here ends them, as local tunnels. */
  tunnels: Pick<TunnelRegistry, 'add'>;
}

/**
 * The entry instance spent the client's request rate and tunnel slot already; spending them again here
 * would count a relayed client twice. The peer channel admits only instances, so nothing else comes in.
 */
const decidedElsewhere: IdentityLimits = {
  takeRequest: () => ({ ok: true }),
  chargeEngine: () => {},
  engineRefusal: () => undefined,
  reserveTunnel: () => ({ ok: true, release: () => {} }),
  tunnelsOf: () => 0,
  takeDemand: () => ({ requests: new Map(), tunnels: new Map() }),
};

const ticketOf = (r: RelayArrival): RelayWire => (r.read as Extract<RelayArrival['read'], { ok: true }>).ticket;
const revocationIdsOf = (t: RelayWire): readonly string[] => t.decided.token?.revocationIds ?? [];

/** Answers on the stream (the entry instance reads the reason from the header and records it). */
function answer(r: RelayArrival, refusal: Refusal): void {
  if (r.stream.destroyed || r.stream.headersSent) return;
  r.stream.respond({ ':status': refusal.status, [RELAY_ERROR_HEADER]: refusal.reason.replace(/[^\x20-\x7e]/g, '?').slice(0, 300) }, { endStream: true });
}

export interface RelayWayIn {
  wayIn: WayIn<[ServerHttp2Stream, IncomingHttpHeaders, string], RelayArrival, 'none'>;
  /** Ends every relayed stream being carried (shutdown), each as an error to the entry instance. */
  close(reason: string): void;
}

export function createRelayWayIn(deps: RelayDeps): RelayWayIn {
  const carrying = new Set<Splice>();
  const wayIn: RelayWayIn['wayIn'] = {
    stage: { audit: deps.audit, refusals: deps.refusals, identityLimits: decidedElsewhere, admission: deps.admission },
    decides: 'none',
    arrive: (stream, headers, from) => ({ stream, from, read: decodeRelay(headers[RELAY_HEADER]) }),
    screen(r) {
      if (!r.read.ok) return { refusal: refuse('GH_BAD_REQUEST', `relayed stream from instance ${r.from}: ${r.read.reason}`), record: { event: 'relay.close' } };
      // An instance speaks for itself only: a ticket naming another entry instance is refused.
      if (r.read.ticket.from !== r.from) return { refusal: refuse('GH_BAD_REQUEST', `relayed stream from instance ${r.from} names ${r.read.ticket.from} as its entry`), record: { event: 'relay.close', relay: { id: r.read.ticket.id, from: r.from } } };
      // The entry instance may not have heard of a revocation this one has (each reads the database on its own).
      if (deps.isRevoked(revocationIdsOf(r.read.ticket))) return { refusal: refuse('GH_TOKEN_REVOKED', `relayed stream from instance ${r.from}: the token is revoked (as this instance knows)`), record: { event: 'relay.close', relay: { id: r.read.ticket.id, from: r.from } } };
      return undefined;
    },
    opens(r) {
      const t = ticketOf(r);
      const d = t.decided;
      // The record is the client's, as the entry instance admitted it: its certificate, address, route and token.
      const fields: Partial<AuditRecord> = { event: 'relay.close', source: d.source, client: auditClient(d.identity), route: d.route, upstream: `published:${t.user}/${t.service}`, publisher: t.publisher, protocol: d.protocol, relay: { id: t.id, from: r.from } };
      if (d.path !== undefined) fields.path = d.path;
      if (d.token !== undefined) fields.token = d.token;
      return fields;
    },
    decideOn: () => undefined,
    answer,
    refuse(r, exchange, { refusal, record }) {
      answer(r, refusal);
      exchange.close({ ...record, decision: 'deny', status: refusal.status, reason: refusal.reason, durationMs: exchange.elapsedMs() });
    },
    async carry(r, exchange) {
      const t = ticketOf(r);
      const target: Published = { kind: 'published', user: t.user, service: t.service, label: `published:${t.user}/${t.service}`, via: t.publisher };
      // A udp route's flow: the publisher's stream carries its DATAGRAM capsules, which the relay passes as bytes.
      const opened = await deps.published.openRelayed(target, t.fingerprint, RELAY_OPEN_TIMEOUT_MS, t.decided.protocol === 'udp');
      if (!opened.ok) {
        answer(r, opened);
        return exchange.close({ decision: 'deny', status: opened.status, reason: opened.reason, durationMs: exchange.elapsedMs() });
      }
      if (r.stream.destroyed) {
        opened.stream.destroy();
        return exchange.close({ decision: 'deny', status: 499, reason: 'entry instance left before the publisher answered', durationMs: exchange.elapsedMs() });
      }
      r.stream.respond({ ':status': 200 });
      // The entry instance enforces the route's idle timeout on its client; here the bytes only pass through.
      const live = splice({ client: r.stream, upstream: opened.stream, idleTimeoutMs: 0 });
      carrying.add(live);
      let recorded!: () => void;
      const written = new Promise<void>((resolve) => (recorded = resolve));
      // A revocation heard here ends it like a local tunnel (the entry instance ends its side when it hears).
      const forget = deps.tunnels.add((reason) => {
        live.stop(reason, reason === 'gateway shutting down' ? 1001 : 1008);
        return written;
      }, revocationIdsOf(t));
      const result = await live.done;
      carrying.delete(live);
      forget();
      exchange.close({ publisher: target.via, decision: 'allow', status: 200, durationMs: exchange.elapsedMs(), bytesIn: result.bytesIn, bytesOut: result.bytesOut, reason: result.reason });
      recorded();
    },
  };
  return {
    wayIn,
    close(reason) {
      for (const live of carrying) live.stop(reason, 1001);
    },
  };
}
