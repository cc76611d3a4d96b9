// One exchange per request, upgrade, tunnel, publish registration or gateway page: it counts the request
// on its connection once, carries the fields every record of it starts with and its timing, and writes its records.
import type { AuditLog } from '../audit/auditLog.ts';
import { auditClient, type AuditRecord } from '../audit/auditRecord.ts';
import { refusalClient, type RefusalRecords } from '../audit/refusalRecords.ts';
import type { ConnectionContext } from './connection.ts';

/** Where an exchange's records go. */
export interface ExchangeSinks {
  audit: Pick<AuditLog, 'write'>;
  /** A client's own refusals are recorded within its budgets, so it cannot fill the audit disk. */
  refusals: Pick<RefusalRecords, 'request'>;
}

/** How an exchange ended: `completed` is recorded in full, `refused` (the client's refusal) within its budgets. */
export type Ending = 'completed' | 'refused';

/** The fields every record of an exchange starts with; `event` may be left to each record (gateway pages). */
export type ExchangeBase = Omit<AuditRecord, 'event'> & { event?: AuditRecord['event'] };

export interface Exchange {
  /** The client connection it came on, handed down by the listener. */
  readonly conn: ConnectionContext;
  /** `connection id.request number`: the `req` of every record of this exchange. */
  readonly id: string;
  /** Mutable while the exchange runs: what is learnt on the way (the credential's kind) goes into every later record. */
  readonly base: ExchangeBase;
  /** How it ended, once closed. */
  readonly ended: Ending | undefined;
  /** Milliseconds since it was opened, to the microsecond. */
  elapsedMs(): number;
  /** A record on the way (tunnel.open, publish.open), written in full: `base` then `fields`. */
  write(fields: Partial<AuditRecord>): void;
  /** The exchange's last record (`base` then `fields`): the audit log counts it into the metrics. Written once. */
  close(fields: Partial<AuditRecord>, ending?: Ending): void;
}

/** Opens the exchange of one request on `conn`: counts it (connection.close reports the count) and names it. */
export function openExchange(conn: ConnectionContext, sinks: ExchangeSinks, fields: Partial<AuditRecord>): Exchange {
  const started = performance.now();
  conn.requests += 1;
  const id = `${conn.id}.${conn.requests}`;
  const { event, ...rest } = fields;
  // Field order is the records' order on disk: event, conn, req, source, client, then what the way in adds.
  const base: ExchangeBase = { ...(event !== undefined && { event }), conn: conn.id, req: id, source: conn.source, client: auditClient(conn.identity), ...rest };
  let ended: Ending | undefined;
  return {
    conn,
    id,
    base,
    get ended() {
      return ended;
    },
    elapsedMs: () => Math.round((performance.now() - started) * 1000) / 1000,
    write(more) {
      sinks.audit.write({ ...base, ...more } as AuditRecord);
    },
    close(more, ending = 'completed') {
      if (ended !== undefined) return;
      ended = ending;
      const record = { ...base, ...more } as AuditRecord;
      if (ending === 'refused') sinks.refusals.request(record, refusalClient(conn));
      else sinks.audit.write(record);
    },
  };
}

/**
 * A refusal before any request was counted on `conn` (a malformed request, or the wrong kind for its
 * endpoint): its record names the connection but no request, and is written within the client's budgets.
 */
export function refuseUncounted(conn: ConnectionContext, sinks: Pick<ExchangeSinks, 'refusals'>, fields: Partial<AuditRecord>): void {
  sinks.refusals.request({ event: 'request', conn: conn.id, source: conn.source, client: auditClient(conn.identity), ...fields }, refusalClient(conn));
}
