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
  return new OpenExchange(conn, sinks, fields);
}

/**
 * A class, not an object of closures: one allocation per request (plus its base record), the methods shared
 * on the prototype. This runs for every request, and closures per request were measurable in the profile.
 */
class OpenExchange implements Exchange {
  readonly conn: ConnectionContext;
  readonly id: string;
  readonly base: ExchangeBase;
  readonly #sinks: ExchangeSinks;
  readonly #started: number;
  #ended: Ending | undefined;

  constructor(conn: ConnectionContext, sinks: ExchangeSinks, fields: Partial<AuditRecord>) {
    this.#started = performance.now();
    conn.requests += 1;
    this.conn = conn;
    this.#sinks = sinks;
    const id = `${conn.id}.${conn.requests}`;
    this.id = id;
    // Field order is the records' order on disk: event, conn, req, source, client, then what the way in adds
    // (assigning an existing key keeps its place). Built without spreads.
    const client = auditClient(conn.identity);
    const base: ExchangeBase = fields.event !== undefined ? { event: fields.event, conn: conn.id, req: id, source: conn.source, client } : { conn: conn.id, req: id, source: conn.source, client };
    this.base = Object.assign(base, fields);
  }

  get ended(): Ending | undefined {
    return this.#ended;
  }

  elapsedMs(): number {
    return Math.round((performance.now() - this.#started) * 1000) / 1000;
  }

  write(more: Partial<AuditRecord>): void {
    this.#sinks.audit.write({ ...this.base, ...more } as AuditRecord);
  }

  close(more: Partial<AuditRecord>, ending: Ending = 'completed'): void {
    if (this.#ended !== undefined) return;
    this.#ended = ending;
    // The last record of the exchange: the base itself becomes it (no copy per request); nothing writes
    // after close, and the same keys end in the same order as a spread would give.
    const record = Object.assign(this.base, more) as AuditRecord;
    if (ending === 'refused') this.#sinks.refusals.request(record, refusalClient(this.conn));
    else this.#sinks.audit.write(record);
  }
}

/**
 * A refusal before any request was counted on `conn` (a malformed request, or the wrong kind for its
 * endpoint): its record names the connection but no request, and is written within the client's budgets.
 */
export function refuseUncounted(conn: ConnectionContext, sinks: Pick<ExchangeSinks, 'refusals'>, fields: Partial<AuditRecord>): void {
  sinks.refusals.request({ event: 'request', conn: conn.id, source: conn.source, client: auditClient(conn.identity), ...fields }, refusalClient(conn));
}
