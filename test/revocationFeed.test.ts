// The authorizer's revocation set with a second source (the cluster's database) beside the list file:
// the union of both, unavailable when either is, recomputed only when either changes.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { withRevocationFeed, type RevocationFeed } from '../src/authz/policy/revocationFeed.ts';
import { noRevocations, watchRevocationList, type RevocationStatus } from '../src/authz/policy/revocationState.ts';

const a = 'aa'.repeat(32);
const b = 'bb'.repeat(32);

function feedOf(initial: RevocationStatus): RevocationFeed & { set(status: RevocationStatus): void } {
  let status = initial;
  return { status: () => status, subscribe: () => () => {}, set: (next) => (status = next) };
}

describe('withRevocationFeed', () => {
  it('refuses what either the file or the feed lists', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-feed-'));
    writeFileSync(join(dir, 'revoked.txt'), `${a}\n`);
    const file = watchRevocationList(join(dir, 'revoked.txt'));
    const feed = feedOf({ kind: 'loaded', ids: new Set([b]) });
    const state = withRevocationFeed(file, feed);
    const status = state.status();
    expect(status.kind === 'loaded' && [...status.ids].sort()).toEqual([a, b]);
    // Same inputs, same object: nothing is recomputed per request.
    expect(state.status()).toBe(status);
    feed.set({ kind: 'loaded', ids: new Set([b, 'cc'.repeat(32)]) });
    expect(state.status()).not.toBe(status);
    file.close();
  });

  it('fails closed when either source is unavailable, and without a file the feed alone decides', () => {
    const feed = feedOf({ kind: 'unavailable', reason: 'database stale' });
    const state = withRevocationFeed(noRevocations(), feed);
    expect(state.status()).toEqual({ kind: 'unavailable', reason: 'database stale' });
    feed.set({ kind: 'loaded', ids: new Set([a]) });
    expect(state.status()).toEqual({ kind: 'loaded', ids: new Set([a]) });
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-feed-'));
    const missing = watchRevocationList(join(dir, 'absent.txt'));
    expect(withRevocationFeed(missing, feed).status().kind).toBe('unavailable');
    missing.close();
  });
});
