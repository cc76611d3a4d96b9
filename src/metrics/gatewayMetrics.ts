// The gateway's Prometheus metrics (prom-client, one registry, names prefixed `gatehouse_`): the
// authorization engine, traffic counted from the audit records, and TLS/audit state read at each scrape.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AuditLog, AuditLogObserver } from '../audit/auditLog.ts';
import type { AuditRecord } from '../audit/auditRecord.ts';
import type { RefusalObserver } from '../audit/refusalRecords.ts';
import type { AuthzObserver } from '../authz/authzObserver.ts';
import type { ReplaceReason } from '../authz/engine/workerProtocol.ts';
import { wasmMemoryReader } from '../authz/engine/wasmMemory.ts';
import type { TlsRejectKind } from '../listener/tlsListener.ts';
import { CounterTally } from './counterTally.ts';

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

  const wasmMemory = new Gauge({ name: `${prefix}authz_worker_wasm_memory_bytes`, help: 'WebAssembly memory of each authorization worker (biscuit-wasm never returns it)', labelNames: ['worker'], registers });
  // The main thread's biscuit-wasm memory never shrinks either: it must stay flat (token work runs in the workers).
  let mainWasmBytes = (): number => -1;
  void wasmMemoryReader().then((read) => (mainWasmBytes = read));
  new Gauge({ name: `${prefix}main_thread_wasm_memory_bytes`, help: 'WebAssembly memory of biscuit-wasm in the main thread (-1 when unreadable); flat while token work runs in the workers', registers, collect() { this.set(mainWasmBytes()); } });
  const replacements = new Counter({ name: `${prefix}authz_worker_replacements_total`, help: 'Authorization workers replaced, by reason (memory, count, deadline, crash, fault)', labelNames: ['reason'], registers });
  // Counters touched on every request count into a tally first (counterTally.ts): read at each scrape.
  const decisions = new CounterTally<'result' | 'path'>();
  decisions.bind(new Counter({ name: `${prefix}authz_decisions_total`, help: 'Authorization decisions by result and by the path that produced them', labelNames: ['result', 'path'], registers, collect: () => decisions.flush() }));
  const cacheHits = new CounterTally<'cache'>();
  cacheHits.bind(new Counter({ name: `${prefix}authz_cache_hits_total`, help: 'Authorization cache hits (token: verified tokens; decision: recent decisions)', labelNames: ['cache'], registers, collect: () => cacheHits.flush() }));
  const cacheMisses = new CounterTally<'cache'>();
  cacheMisses.bind(new Counter({ name: `${prefix}authz_cache_misses_total`, help: 'Authorization cache misses', labelNames: ['cache'], registers, collect: () => cacheMisses.flush() }));
  const latency = new Histogram({
    name: `${prefix}authz_decision_seconds`,
    help: 'Time to decide one authorization, by path',
    labelNames: ['path'],
    buckets: [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5],
    registers,
  });
  const requests = new CounterTally<'protocol' | 'route' | 'decision' | 'status'>();
  requests.bind(new Counter({ name: `${prefix}requests_total`, help: 'Requests and tunnel attempts by protocol, route, decision and status', labelNames: ['protocol', 'route', 'decision', 'status'], registers, collect: () => requests.flush() }));
  const tunnels = new Counter({ name: `${prefix}tunnels_opened_total`, help: 'Tunnels and WebSocket sessions opened, by protocol and route', labelNames: ['protocol', 'route'], registers });
  const tunnelBytes = new Counter({ name: `${prefix}tunnel_bytes_total`, help: 'Bytes carried by closed tunnels, by direction (in: client to upstream)', labelNames: ['direction'], registers });
  const publishedRetries = new Counter({ name: `${prefix}published_retries_total`, help: 'Requests (http) and tunnels (tunnel) sent again to another replica of a published service after theirs was lost before answering; counted as their records are written', labelNames: ['kind'], registers });
  /** A record's `detail.retried` (replicaRetry.ts): how many replicas were lost under it. */
  const countRetries = (kind: 'http' | 'tunnel', retried: unknown) => {
    if (typeof retried === 'number' && retried > 0) publishedRetries.inc({ kind }, retried);
  };
  const reloads = new Counter({ name: `${prefix}reloads_total`, help: 'Configuration and revocation list reloads by kind and result', labelNames: ['kind', 'result'], registers });
  const limitRefusals = new Counter({ name: `${prefix}limit_refusals_total`, help: 'Connections and requests refused by a configured limit, by limit', labelNames: ['limit'], registers });
  const openConnections = new Gauge({ name: `${prefix}open_connections`, help: 'Client connections open now, including those still in the TLS handshake', registers });
  const proxyRefusals = new Counter({ name: `${prefix}proxy_protocol_refusals_total`, help: 'Connections refused by a proxyProtocol listener, by reason (untrusted, invalid, timeout)', labelNames: ['reason'], registers });
  const tlsRejects = new Counter({ name: `${prefix}tls_rejects_total`, help: 'Connections refused during the TLS handshake, by reason (revoked, crl_unusable, certificate, no_certificate, timeout, handshake)', labelNames: ['reason'], registers });
  const openTunnels = new Gauge({ name: `${prefix}open_tunnels`, help: 'Tunnels and proxied WebSockets open now, by protocol (tcp, websocket) and route', labelNames: ['protocol', 'route'], registers });
  const routeBytes = new CounterTally<'route' | 'direction'>();
  routeBytes.bind(new Counter({ name: `${prefix}bytes_total`, help: 'Bytes by route and direction (in: client to upstream), HTTP bodies as each request ends and tunnels as each closes', labelNames: ['route', 'direction'], registers, collect: () => routeBytes.flush() }));
  const auditRecords = new CounterTally<'event'>();
  auditRecords.bind(new Counter({ name: `${prefix}audit_records_total`, help: 'Audit records handed to the audit log, by event (see gatehouse_audit_healthy for whether they reached the file)', labelNames: ['event'], registers, collect: () => auditRecords.flush() }));
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
  for (const reason of ['memory', 'count', 'deadline', 'crash', 'fault', 'idle'] satisfies ReplaceReason[]) replacements.inc({ reason }, 0);

  const auditSuppressed = new Counter({ name: `${prefix}audit_suppressed_records_total`, help: 'Refusal records left out by their budgets (audit.refusalRecords), by event and kind; each period is summarized in an audit.suppressed record', labelNames: ['event', 'kind'], registers });
  const auditWriteErrors = new Counter({ name: `${prefix}audit_write_errors_total`, help: 'Failed writes to the audit file (traffic is refused until a write succeeds)', registers });
  const auditDropped = new Counter({ name: `${prefix}audit_dropped_records_total`, help: 'Audit records lost: over the unwritten-data bound while the file failed, or written after close', registers });
  const auditCheckpoints = new Counter({ name: `${prefix}audit_checkpoints_total`, help: 'Checkpoint records written (signed when audit.signingKey is set)', registers });
  // Written on every write to the audit file, read at each scrape.
  let lastAuditWriteMs: number | undefined;
  let auditWritable = 1;
  new Gauge({
    name: `${prefix}audit_last_write_timestamp_seconds`,
    help: 'Unix time of the last successful write to the audit file',
    registers,
    collect() {
      if (lastAuditWriteMs !== undefined) this.set(lastAuditWriteMs / 1000);
    },
  });
  new Gauge({
    name: `${prefix}audit_healthy`,
    help: '1 while the audit file takes writes, 0 after a failed write (traffic refused)',
    registers,
    collect() {
      this.set(auditWritable);
    },
  });
  const syslogShipped = new Counter({ name: `${prefix}audit_syslog_shipped_bytes_total`, help: 'Audit bytes handed to the syslog connection', registers });
  const syslogQueued = new Gauge({ name: `${prefix}audit_syslog_queued_bytes`, help: 'Audit bytes waiting for the syslog receiver (the shipping lag)', registers });
  const syslogDropped = new Counter({ name: `${prefix}audit_syslog_dropped_total`, help: 'Audit records not shipped: the queue for an unreachable receiver was full', registers });
  const syslogUp = new Gauge({ name: `${prefix}audit_syslog_connected`, help: '1 while connected to the syslog receiver', registers });
  const auditLog: AuditLogObserver = {
    syslog: {
      shipped: (bytes, queued) => {
        syslogShipped.inc(bytes);
        syslogQueued.set(queued);
      },
      dropped: () => syslogDropped.inc(),
      connected: (up) => syslogUp.set(up ? 1 : 0),
    },
    // Counted by event in observeAudit (checkpoints in gatehouse_audit_checkpoints_total).
    recordQueued: () => {},
    bytesWritten: (_bytes, atMs) => {
      lastAuditWriteMs = atMs;
      auditWritable = 1;
    },
    writeFailed: () => {
      auditWriteErrors.inc();
      auditWritable = 0;
    },
    recordDropped: () => auditDropped.inc(),
    checkpointWritten: () => auditCheckpoints.inc(),
  };

  const authz: AuthzObserver = {
    workerMemory: (slot, bytes) => {
      if (bytes >= 0) wasmMemory.set({ worker: String(slot) }, bytes);
    },
    workerReplaced: (reason) => replacements.inc({ reason }),
    decided: (decision, path, seconds) => {
      const result = decision.allow ? 'allow' : decision.status === 503 ? 'unavailable' : 'deny';
      decisions.add(`${result}\u0000${path}`, () => ({ result, path }));
      latency.observe({ path }, seconds);
    },
    cacheLookup: (cache, hit) => (hit ? cacheHits : cacheMisses).add(cache, () => ({ cache })),
  };

  return {
    registry,
    authz,
    refusals: { suppressed: (event, kind) => auditSuppressed.inc({ event, kind }) },
    limitRefused: (limit) => limitRefusals.inc({ limit }),
    connectionOpened: () => openConnections.inc(),
    connectionClosed: () => openConnections.dec(),
    proxyRefused: (reason) => proxyRefusals.inc({ reason }),
    tlsRejected: (reason) => tlsRejects.inc({ reason }),
    observeState: (next) => {
      state = next;
    },
    auditLog,
    observeAudit(record) {
      const event = record.event;
      auditRecords.add(event, () => ({ event }));
      const route = record.route ?? '';
      const countBytes = () => {
        if (record.bytesIn) routeBytes.add(`${route}\u0000in`, () => ({ route, direction: 'in' }), record.bytesIn);
        if (record.bytesOut) routeBytes.add(`${route}\u0000out`, () => ({ route, direction: 'out' }), record.bytesOut);
      };
      switch (record.event) {
        case 'request': {
          const protocol = record.protocol ?? '';
          const decision = record.decision ?? '';
          const status = String(record.status ?? '');
          requests.add(`${protocol}\u0000${route}\u0000${decision}\u0000${status}`, () => ({ protocol, route, decision, status }));
          countBytes();
          countRetries('http', record.detail?.retried);
          break;
        }
        case 'tunnel.open':
          tunnels.inc({ protocol: record.protocol ?? '', route });
          openTunnels.inc({ protocol: record.protocol ?? '', route });
          break;
        case 'tunnel.close':
          openTunnels.dec({ protocol: record.protocol ?? '', route });
          if (record.bytesIn) tunnelBytes.inc({ direction: 'in' }, record.bytesIn);
          if (record.bytesOut) tunnelBytes.inc({ direction: 'out' }, record.bytesOut);
          countBytes();
          countRetries('tunnel', record.detail?.retried);
          break;
        case 'config.reload':
        case 'revocation.reload':
          reloads.inc({ kind: record.event === 'config.reload' ? 'config' : record.detail?.crl !== undefined ? 'crl' : 'revocation', result: record.decision === 'deny' ? 'error' : 'ok' });
          break;
        default:
          break;
      }
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
