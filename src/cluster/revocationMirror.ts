// This instance's copy of the cluster's revocations: ids heard by notification or read by sequence number,
// and the status the authorizer reads per request (unavailable while stale, under whenStale: deny).
import type { RevocationFeed } from '../authz/policy/revocationFeed.ts';
import type { ReloadResult, RevocationStatus } from '../authz/policy/revocationState.ts';
import { shownDatabase, type ClusterSettings } from '../config/clusterSettings.ts';
import type { RevokedRow } from './sharedRevocations.ts';

export interface RevocationMirror {
  readonly feed: RevocationFeed;
  /** The highest sequence number read (catch-up reads start after it). */
  readonly lastSeq: number;
  /** Read at least once since the start. */
  readonly loaded: boolean;
  /** How many ids it holds. */
  readonly size: number;
  /** Ids from a notification: refused at once; the sequence number moves only with `caughtUp`. */
  noticed(row: RevokedRow): void;
  /** Rows of a catch-up read (every row after `lastSeq`, in order); the number of ids new here. */
  caughtUp(rows: readonly RevokedRow[]): number;
  setStale(stale: boolean): void;
}

export function createRevocationMirror(settings: ClusterSettings, onCount: (count: number) => void = () => {}): RevocationMirror {
  const ids = new Set<string>();
  const listeners = new Set<(result: ReloadResult) => void>();
  let lastSeq = 0;
  let loaded = false;
  let stale = false;

  const computeStatus = (): RevocationStatus => {
    if (settings.whenStale === 'deny' && !loaded) return { kind: 'unavailable', reason: `shared revocations not read yet from the cluster database ${shownDatabase(settings)}` };
    if (settings.whenStale === 'deny' && stale) return { kind: 'unavailable', reason: `cluster database not heard from for over ${settings.staleSeconds} s (cluster.staleSeconds): shared revocations may be stale, refusing new authorizations (cluster.whenStale: deny)` };
    // A new Set per change: the status object changes identity, which tells the authorizer to recompute.
    return { kind: 'loaded', ids: new Set(ids) };
  };
  let status = computeStatus();

  const add = (rows: readonly RevokedRow[]): number => {
    let added = 0;
    for (const row of rows) if (!ids.has(row.id)) ids.add(row.id), added++;
    return added;
  };
  const changed = (added: number) => {
    status = computeStatus();
    onCount(ids.size);
    for (const listener of listeners) listener({ ok: true, count: ids.size, source: 'cluster database', added });
  };

  return {
    feed: {
      status: () => status,
      subscribe(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    },
    get lastSeq() {
      return lastSeq;
    },
    get loaded() {
      return loaded;
    },
    get size() {
      return ids.size;
    },
    noticed(row) {
      if (add([row]) > 0) changed(1);
    },
    caughtUp(rows) {
      for (const row of rows) lastSeq = Math.max(lastSeq, row.seq);
      const added = add(rows);
      const first = !loaded;
      loaded = true;
      if (added > 0 || first) changed(added);
      return added;
    },
    setStale(next) {
      if (next === stale) return;
      stale = next;
      status = computeStatus();
    },
  };
}
