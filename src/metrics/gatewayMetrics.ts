// The gateway's Prometheus metrics (prom-client, one registry, names prefixed `gatehouse_`): the
// authorization engine, traffic counted from the audit records, and TLS/audit state read at each scrape.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { AuditLog, AuditLogObserver } from '../audit/auditLog.ts';
import type { AuditRecord } from '../audit/auditRecord.ts';
import type { RefusalObserver } from '../audit/refusalRecords.ts';
import type { AuthzObserver } from '../authz/authzObserver.ts';
import type { TlsRejectKind } from '../listener/tlsListener.ts';
import { auditLogMetrics } from './auditLogMetrics.ts';
import { authzMetrics } from './authzMetrics.ts';
import { trafficMetrics } from './trafficMetrics.ts';

/** Dates the gateway's TLS material stops working; the expiry gauges read them at each scrape. */
export interface TlsExpiryDates {
  serverCert: Date;
  clientCa: Date;
  crlNextUpdate?: Date;
}

export interface GatewayMetrics {
  readonly registry: Registry;
  /** Hooks for the authorizer; they outlive config reloads (each reload builds a new authorizer). */
  readonly authz: AuthzObserver;
  /** Hooks for the audit log itself: the logging is monitored too. */
  readonly auditLog: AuditLogObserver;
  /** Refusal records left out by their budgets (the audit.suppressed summary counts them too). */
  readonly refusals: RefusalObserver;
  /** Counts what an audit record says happened (requests, tunnels, reloads, TLS refusals). */
  observeAudit(record: AuditRecord): void;
  /** A connection or request refused by one of `limits` (its key, e.g. `connectionsPerSource`); counted even when its record is suppressed. */
  limitRefused(limit: string): void;
  /** Client connections accepted and closed (before TLS too): the open-connections gauge. */
  connectionOpened(): void;
  connectionClosed(): void;
  /** A connection refused by a `proxyProtocol` listener (untrusted peer, invalid or late header). */
  proxyRefused(reason: string): void;
  /** A TLS handshake refused; counted here because its tls.reject records are rate limited. */
  tlsRejected(kind: TlsRejectKind): void;
  /** What the scrape-time gauges read: TLS expiry dates and whether the audit log is writable. */
  observeState(state: { tlsExpiry(): TlsExpiryDates; auditHealthy(): boolean }): void;
}

export function createGatewayMetrics(options: { processMetrics?: boolean } = {}): GatewayMetrics {
  const registry = new Registry();
  const prefix = 'gatehouse_';
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry, prefix });
  const registers = [registry];
  const limitRefusals = new Counter({ name: `${prefix}limit_refusals_total`, help: 'Connections and requests refused by a configured limit, by limit', labelNames: ['limit'], registers });
  const openConnections = new Gauge({ name: `${prefix}open_connections`, help: 'Client connections open now, including those still in the TLS handshake', registers });
  const proxyRefusals = new Counter({ name: `${prefix}proxy_protocol_refusals_total`, help: 'Connections refused by a proxyProtocol listener, by reason (untrusted, invalid, timeout)', labelNames: ['reason'], registers });
  const tlsRejects = new Counter({ name: `${prefix}tls_rejects_total`, help: 'Connections refused during the TLS handshake, by reason (revoked, crl_unusable, certificate, no_certificate, timeout, handshake)', labelNames: ['reason'], registers });
  let state: { tlsExpiry(): TlsExpiryDates; auditHealthy(): boolean } | undefined;
  new Gauge({
    name: `${prefix}tls_expiry_seconds`,
    help: 'Seconds until TLS material stops working: server certificate, earliest client CA, earliest CRL nextUpdate (negative once past)',
    labelNames: ['what'],
    registers,
    collect() {
      if (!state) return;
      const dates = state.tlsExpiry();
      const left = (d: Date) => Math.round((d.getTime() - Date.now()) / 1000);
      this.set({ what: 'server_certificate' }, left(dates.serverCert));
      this.set({ what: 'client_ca' }, left(dates.clientCa));
      if (dates.crlNextUpdate) this.set({ what: 'crl_next_update' }, left(dates.crlNextUpdate));
      else this.remove({ what: 'crl_next_update' });
    },
  });
  // Series with a known, small set of labels start at 0, so rate() and alerts see them before the first event.
  for (const reason of ['revoked', 'crl_unusable', 'certificate', 'no_certificate', 'timeout', 'handshake'] satisfies TlsRejectKind[]) tlsRejects.inc({ reason }, 0);
  for (const reason of ['untrusted', 'invalid', 'timeout']) proxyRefusals.inc({ reason }, 0);
  for (const limit of ['connections', 'connectionsPerSource']) limitRefusals.inc({ limit }, 0);
  const authz = authzMetrics(prefix, registers);
  const { auditLog, refusals } = auditLogMetrics(prefix, registers);
  const observeAudit = trafficMetrics(prefix, registers);
  return {
    registry,
    authz,
    auditLog,
    refusals,
    observeAudit,
    limitRefused: (limit) => limitRefusals.inc({ limit }),
    connectionOpened: () => openConnections.inc(),
    connectionClosed: () => openConnections.dec(),
    proxyRefused: (reason) => proxyRefusals.inc({ reason }),
    tlsRejected: (reason) => tlsRejects.inc({ reason }),
    observeState: (next) => {
      state = next;
    },
  };
}

/** An audit log that also feeds the metrics: every stage already writes a record, so nothing else changes. */
export function auditWithMetrics(audit: AuditLog, metrics: GatewayMetrics): AuditLog {
  return {
    write(record) {
      audit.write(record);
      metrics.observeAudit(record);
    },
    get healthy() {
      return audit.healthy;
    },
    get lastError() {
      return audit.lastError;
    },
    close: () => audit.close(),
  };
}
