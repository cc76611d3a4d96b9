// Another source of revoked ids besides the list file (the cluster's database): the authorizer refuses
// what either source lists, and fails closed when either is unavailable.
import type { ReloadResult, RevocationState, RevocationStatus } from './revocationState.ts';

export interface RevocationFeed {
  /** Called per request: must be cheap (return the same object until something changes). */
  status(): RevocationStatus;
  /** `listener` hears of every change of the ids; returns the unsubscribe. */
  subscribe(listener: (result: ReloadResult) => void): () => void;
}

/** The file's state and the feed's, as one: the union of ids; unavailable when either is. */
export function withRevocationFeed(file: RevocationState, feed: RevocationFeed): RevocationState {
  let memo: { file: RevocationStatus; feed: RevocationStatus; union: RevocationStatus } | undefined;
  const union = (a: RevocationStatus, b: RevocationStatus): RevocationStatus => {
    if (a.kind === 'unavailable') return a;
    if (b.kind === 'unavailable' || a.kind === 'none') return b;
    if (b.kind === 'none') return a;
    return { kind: 'loaded', ids: new Set([...a.ids, ...b.ids]) };
  };
  return {
    status() {
      // Recomputed only when either side changed: both hand out the same status object until then.
      const fileStatus = file.status();
      const feedStatus = feed.status();
      if (memo?.file !== fileStatus || memo.feed !== feedStatus) memo = { file: fileStatus, feed: feedStatus, union: union(fileStatus, feedStatus) };
      return memo.union;
    },
    reload: () => file.reload(),
    close: () => file.close(),
  };
}
