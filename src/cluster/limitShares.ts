// Per-identity limits held by several instances: each reports, once a second, the demand it saw (requests
// tried, tunnels open) and sizes its own buckets by its share of the demand all of them reported.
import type { IdentityDemand, LimitShares } from '../admission/identityLimits.ts';

/** The NOTIFY channel the reports travel on. */
export const LIMITS_CHANNEL = 'gatehouse_limits';

/** How often an instance reports (and so how fast shares follow the load). */
export const REPORT_INTERVAL_MS = 1000;

/** A report older than this is forgotten: its instance died or lost the database, and its share returns to the others. */
const FORGET_AFTER_MS = 3 * REPORT_INTERVAL_MS;

/** NOTIFY payloads are at most 8000 bytes; a report is cut into parts below that. */
const MAX_PAYLOAD = 7800;

/** Entries one part may carry at most, and parts one instance may have outstanding (a hostile or broken writer cannot grow memory). */
const MAX_ENTRIES_PER_INSTANCE = 100_000;

interface Seen {
  requests: number;
  tunnels: number;
  at: number;
}

/** One part of a report as it travels: instance, then [identity, requests tried, tunnels open] triples. */
interface ReportPart {
  i: string;
  d: Array<[string, number, number]>;
}

export interface SharedLimits extends LimitShares {
  /** This instance's demand of the last interval: kept for its own share, and cut into the parts it sends. */
  local(demand: IdentityDemand): string[];
  /** A part another instance sent (its own are ignored); malformed parts are dropped. */
  reported(payload: string | undefined): void;
}

const count = (value: unknown): number | undefined => (typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.min(value, 1e9) : undefined);

/**
 * `databaseFresh`: whether this instance hears from the database. While it does not, the others' last
 * reports are kept rather than forgotten: their silence is then this instance's outage, not their death,
 * and forgetting them would hand every instance the whole limit.
 */
export function createSharedLimits(self: string, now: () => number = Date.now, databaseFresh: () => boolean = () => true): SharedLimits {
  let mine = new Map<string, number>();
  // Identities this instance reported last time: reported once more at 0 when they go quiet, so the
  // others stop counting them at once rather than after FORGET_AFTER_MS.
  let reportedLast = new Set<string>();
  // By instance: when it last reported (every interval, even with nothing to say) and what it saw.
  const others = new Map<string, { at: number; seen: Map<string, Seen> }>();

  const recent = (then: number, at: number) => at - then <= FORGET_AFTER_MS || !databaseFresh();
  const fresh = (seen: Seen | undefined, at: number): seen is Seen => seen !== undefined && recent(seen.at, at);
  const liveOthers = (at: number) => {
    let live = 0;
    for (const other of others.values()) if (recent(other.at, at)) live += 1;
    return live;
  };

  return {
    shareOf(identity) {
      const at = now();
      let elsewhere = 0;
      for (const { seen } of others.values()) {
        const entry = seen.get(identity);
        if (fresh(entry, at)) elsewhere += entry.requests;
      }
      const seenHere = mine.get(identity);
      // New here, and the others have not said yet whether they see it too: an equal part, so an identity
      // starting on every instance at once gets its limit in all, not on each (full once the reports say so).
      if (elsewhere === 0) return seenHere === undefined ? 1 / (1 + liveOthers(at)) : 1;
      // +1: an instance that saw little keeps a small share, so its first requests are not all refused.
      const here = (seenHere ?? 0) + 1;
      return here / (here + elsewhere);
    },
    tunnelsElsewhere(identity) {
      const at = now();
      let open = 0;
      for (const { seen } of others.values()) {
        const entry = seen.get(identity);
        if (fresh(entry, at)) open += entry.tunnels;
      }
      return open;
    },
    local(demand) {
      mine = new Map(demand.requests);
      const identities = new Set([...demand.requests.keys(), ...demand.tunnels.keys()]);
      const entries: Array<[string, number, number]> = [...identities].map((id) => [id, demand.requests.get(id) ?? 0, demand.tunnels.get(id) ?? 0]);
      for (const id of reportedLast) if (!identities.has(id)) entries.push([id, 0, 0]);
      reportedLast = identities;
      const parts: string[] = [];
      let part: ReportPart = { i: self, d: [] };
      let size = JSON.stringify(part).length;
      for (const entry of entries) {
        const added = JSON.stringify(entry).length + 1;
        if (size + added > MAX_PAYLOAD && part.d.length > 0) {
          parts.push(JSON.stringify(part));
          part = { i: self, d: [] };
          size = JSON.stringify(part).length;
        }
        part.d.push(entry);
        size += added;
      }
      // Sent even when empty: the others count the live instances from these.
      if (part.d.length > 0 || parts.length === 0) parts.push(JSON.stringify(part));
      return parts;
    },
    reported(payload) {
      let part: Partial<ReportPart>;
      try {
        part = JSON.parse(payload ?? '') as Partial<ReportPart>;
      } catch {
        return;
      }
      if (typeof part.i !== 'string' || part.i === self || !Array.isArray(part.d)) return;
      const at = now();
      let other = others.get(part.i);
      if (other === undefined) others.set(part.i, (other = { at, seen: new Map() }));
      other.at = at;
      const { seen } = other;
      for (const entry of part.d) {
        if (!Array.isArray(entry) || typeof entry[0] !== 'string' || entry[0].length > 200) continue;
        const requests = count(entry[1]);
        const tunnels = count(entry[2]);
        if (requests === undefined || tunnels === undefined) continue;
        if (requests === 0 && tunnels === 0) {
          seen.delete(entry[0]);
          continue;
        }
        if (!seen.has(entry[0]) && seen.size >= MAX_ENTRIES_PER_INSTANCE) continue;
        seen.set(entry[0], { requests, tunnels, at });
      }
      // Forget what went quiet without a word (an instance that died).
      for (const [instance, { at: last, seen: entries }] of others) {
        for (const [id, entry] of entries) if (!fresh(entry, at)) entries.delete(id);
        if (!recent(last, at)) others.delete(instance);
      }
    },
  };
}
