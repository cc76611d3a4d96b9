// Budgets for the records of refused connections and requests: per client (source address, or
// certificate) and for the whole gateway, so no crowd of addresses or certificates can fill the audit disk.
import { LRUCache } from 'lru-cache';
import type { AuditLog } from './auditLog.ts';
import type { AuditRecord } from './auditRecord.ts';

export interface RefusalBudgets {
  windowSeconds: number;
  perSource: number;
  perIdentity: number;
  anonymous: number;
  identified: number;
}

/** Who was refused, for the budgets and the summary. */
export interface RefusalOrigin {
  /** The client's address without port (`unix` for a UNIX-socket client, `*` for the gateway-wide connection limit). */
  source: string;
  /** The client certificate's fingerprint, once the handshake verified one. */
  identity?: string;
  /** A short fixed label for the summary and the metric: a TLS reject kind, a limit's name, an HTTP status. */
  kind: string;
  /** Refused by a rate or connection limit: such records are bounded per client like anonymous ones (`perSource`). */
  limited?: boolean;
}

export interface RefusalRecords {
  /** Writes `record` when its client's and the gateway's budgets allow; otherwise counts it for the next summary. */
  write(record: AuditRecord, origin: RefusalOrigin): void;
  /**
   * A request's deny record from a client with a certificate: its own refusals (4xx, 429 as a limit)
   * within its budgets; anything else (the gateway's 5xx, a redirect to sign in), or a record without
   * a known client, is always written.
   */
  request(record: AuditRecord, client: { source: string; identity: string } | undefined): void;
  /** Writes the summary of what was left out so far (shutdown), and stops the timer. */
  close(): void;
}

export interface RefusalObserver {
  /** One record left out (gatehouse_audit_suppressed_records_total). */
  suppressed(event: string, kind: string): void;
}

interface Window {
  start: number;
  written: number;
  /** Left out by this key's budget since its last written record: told in that next record. */
  suppressed: number;
}

/** Distinct sources and identities counted per summary group; past this the count says "at least". */
const DISTINCT_LIMIT = 10_000;

interface Group {
  event: string;
  kind: string;
  count: number;
  byClientBudget: number;
  byGatewayBudget: number;
  sources: Set<string>;
  identities: Set<string>;
}

/** The client of a connection as the budgets know it: its address (or `unix`) and its certificate. */
export function refusalClient(conn: { source: string; sourceIp: string; identity: { fingerprint: string } } | undefined): { source: string; identity: string } | undefined {
  return conn && { source: conn.sourceIp || conn.source, identity: conn.identity.fingerprint };
}

export const DEFAULT_REFUSAL_BUDGETS: RefusalBudgets = { windowSeconds: 10, perSource: 10, perIdentity: 200, anonymous: 100, identified: 1000 };

/** Takes one record from `w`'s budget of `limit`, starting a new window when due. */
function take(w: Window, limit: number, now: number, windowMs: number): boolean {
  if (now - w.start >= windowMs) {
    w.start = now;
    w.written = 0;
  }
  if (w.written >= limit) return false;
  w.written += 1;
  return true;
}

/** What was left out since the last summary, by event and kind, with bounded sets of who sent it. */
class SuppressedGroups {
  #groups = new Map<string, Group>();

  count(record: AuditRecord, origin: RefusalOrigin, budget: 'client' | 'gateway'): void {
    const key = `${record.event}\u0000${origin.kind}`;
    let g = this.#groups.get(key);
    if (!g) {
      g = { event: record.event, kind: origin.kind, count: 0, byClientBudget: 0, byGatewayBudget: 0, sources: new Set(), identities: new Set() };
      this.#groups.set(key, g);
    }
    g.count += 1;
    if (budget === 'client') g.byClientBudget += 1;
    else g.byGatewayBudget += 1;
    if (g.sources.size < DISTINCT_LIMIT) g.sources.add(origin.source);
    if (origin.identity !== undefined && g.identities.size < DISTINCT_LIMIT) g.identities.add(origin.identity);
  }

  /** The audit.suppressed record of what was counted since the last call (undefined when nothing was). */
  takeSummary(windowSeconds: number): AuditRecord | undefined {
    if (this.#groups.size === 0) return undefined;
    const done = [...this.#groups.values()];
    this.#groups = new Map();
    const distinct = (set: Set<string>) => (set.size >= DISTINCT_LIMIT ? { atLeast: set.size } : set.size);
    return {
      event: 'audit.suppressed',
      detail: {
        windowSeconds,
        suppressed: done.reduce((n, g) => n + g.count, 0),
        groups: done.map((g) => ({ event: g.event, kind: g.kind, count: g.count, byClientBudget: g.byClientBudget, byGatewayBudget: g.byGatewayBudget, sources: distinct(g.sources), identities: distinct(g.identities) })),
      },
    };
  }
}

export function createRefusalRecords(audit: Pick<AuditLog, 'write'>, budgets: RefusalBudgets = DEFAULT_REFUSAL_BUDGETS, observer?: RefusalObserver): RefusalRecords {
  const windowMs = budgets.windowSeconds * 1000;
  // Keys forgotten least-recently-used first: a crowd of addresses then meets the gateway budget instead.
  const clients = new LRUCache<string, Window>({ max: 10_000 });
  const pools = new Map<'anonymous' | 'identified', Window>();
  const groups = new SuppressedGroups();
  const count = (record: AuditRecord, origin: RefusalOrigin, budget: 'client' | 'gateway') => {
    groups.count(record, origin, budget);
    observer?.suppressed(record.event, origin.kind);
  };
  const summarize = () => {
    const summary = groups.takeSummary(budgets.windowSeconds);
    if (summary) audit.write(summary);
  };
  const timer = setInterval(summarize, windowMs);
  timer.unref();

  const refusals: RefusalRecords = {
    request(record, client) {
      const status = record.status ?? 0;
      if (!client || status < 400 || status > 499) return audit.write(record);
      refusals.write(record, { ...client, kind: String(status), limited: status === 429 });
    },
    write(record, origin) {
      const now = Date.now();
      const anonymous = origin.identity === undefined;
      const key = anonymous ? `source ${origin.source}` : `${origin.limited ? 'limited' : 'identity'} ${origin.identity}`;
      let client = clients.get(key);
      if (!client) {
        client = { start: now, written: 0, suppressed: 0 };
        clients.set(key, client);
      }
      if (!take(client, anonymous || origin.limited ? budgets.perSource : budgets.perIdentity, now, windowMs)) {
        client.suppressed += 1;
        return count(record, origin, 'client');
      }
      const poolName = anonymous ? 'anonymous' : 'identified';
      let pool = pools.get(poolName);
      if (!pool) pools.set(poolName, (pool = { start: now, written: 0, suppressed: 0 }));
      if (!take(pool, budgets[poolName], now, windowMs)) return count(record, origin, 'gateway');
      const before = client.suppressed;
      client.suppressed = 0;
      audit.write(before > 0 ? { ...record, detail: { ...record.detail, suppressedBefore: before } } : record);
    },
    close() {
      clearInterval(timer);
      summarize();
    },
  };
  return refusals;
}
