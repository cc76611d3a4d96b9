// The audit log's own metrics (the logging is monitored too): writes, failures, drops, checkpoints,
// records left out by the refusal budgets, the last write's time, and the syslog shipping lag.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { AuditLogObserver } from '../audit/auditLog.ts';
import type { RefusalObserver } from '../audit/refusalRecords.ts';

export function auditLogMetrics(prefix: string, registers: Registry[]): { auditLog: AuditLogObserver; refusals: RefusalObserver } {
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
    // Counted by event in the traffic metrics (checkpoints in gatehouse_audit_checkpoints_total).
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
  return { auditLog, refusals: { suppressed: (event, kind) => auditSuppressed.inc({ event, kind }) } };
}
