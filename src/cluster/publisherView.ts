// This instance's copy of which other instances carry which published services: replaced at each read of
// the leases (notification or heartbeat), and judged by the lease's own end, so a lookup never waits.
import type { PublisherLease } from './publisherLeases.ts';
import type { Ranking, RemoteUsage } from '../upstream/publisherQuota.ts';

/** Another instance carrying a service, as a relay needs it. */
export interface RemotePublisher {
  instance: string;
  instanceId: string;
  peerAddress: string;
  /** The publisher's connection id on that instance. */
  publisher: string;
  fingerprint: string;
  /** performance.now() at which the lease runs out unless read again renewed. */
  until: number;
}

const key = (user: string, service: string) => `${user}\u0000${service}`;

export interface PublisherView {
  /** Replaces the view with `leases` (read just now); this instance's own rows are left out. */
  replace(leases: readonly PublisherLease[]): void;
  /** The live remote carriers of `user`'s `service` (of one certificate if given), fewest relays first. */
  carriers(user: string, service: string, fingerprint?: string): RemotePublisher[];
  /** What `user` holds on the other instances (any, relayable or not): publisher keys and service names of live leases. */
  usageOf(user: string): RemoteUsage;
  /**
   * Every user's publisher keys and service names over all instances (this one too), first registered first
   * (then by key or name): the same order on every instance that read the same leases, so all agree on who came last.
   */
  ranked(): Ranking;
  /** How many remote (user, service, publisher) leases the view holds now. */
  size(): number;
}

/** Each user's publisher keys (or service names: `keyOf`) by their first registration anywhere, ties by key. */
function rank(leases: readonly PublisherLease[], keyOf: (lease: PublisherLease) => string): Map<string, string[]> {
  const first = new Map<string, Map<string, number>>();
  for (const l of leases) {
    const mine = first.get(l.user) ?? new Map<string, number>();
    mine.set(keyOf(l), Math.min(mine.get(keyOf(l)) ?? Infinity, l.registeredAt));
    first.set(l.user, mine);
  }
  const order = new Map<string, string[]>();
  for (const [user, since] of first) order.set(user, [...since].sort(([a, at], [b, bt]) => at - bt || (a < b ? -1 : a > b ? 1 : 0)).map(([key]) => key));
  return order;
}

/**
 * `silentAfterMs`: with no read for this long (the database out of reach), lease ends are no longer judged and
 * the last view is kept: an instance that died meanwhile costs one failed connection (the relay client then
 * passes over it), while every live one stays reachable through the outage.
 */
export function createPublisherView(selfId: string, silentAfterMs: number): PublisherView {
  let byService = new Map<string, RemotePublisher[]>();
  let byUser = new Map<string, Array<{ identity: string; service: string; until: number }>>();
  let count = 0;
  let order: Ranking = { publishers: new Map(), services: new Map() };
  let readAt = performance.now();
  return {
    replace(leases) {
      const now = performance.now();
      readAt = now;
      const next = new Map<string, RemotePublisher[]>();
      const users = new Map<string, Array<{ identity: string; service: string; until: number }>>();
      count = 0;
      for (const lease of leases) {
        if (lease.instanceId === selfId) continue;
        const held = users.get(lease.user) ?? [];
        held.push({ identity: lease.identity, service: lease.service, until: now + lease.remainingSeconds * 1000 });
        users.set(lease.user, held);
        // An instance that registered no peer address cannot be relayed to: it is not a carrier for the others.
        if (lease.instanceId === selfId || lease.peerAddress === null) continue;
        const k = key(lease.user, lease.service);
        const list = next.get(k) ?? [];
        list.push({ instance: lease.instance, instanceId: lease.instanceId, peerAddress: lease.peerAddress, publisher: lease.publisher, fingerprint: lease.fingerprint, until: now + lease.remainingSeconds * 1000 });
        next.set(k, list);
        count += 1;
      }
      byService = next;
      byUser = users;
      order = { publishers: rank(leases, (l) => l.identity), services: rank(leases, (l) => l.service) };
    },
    carriers(user, service, fingerprint) {
      const now = performance.now();
      const silent = now - readAt > silentAfterMs;
      // A lease past its end is not used while the database answers: its instance stopped renewing it.
      return (byService.get(key(user, service)) ?? []).filter((r) => (silent || r.until > now) && (fingerprint === undefined || r.fingerprint === fingerprint));
    },
    usageOf(user) {
      const now = performance.now();
      const silent = now - readAt > silentAfterMs;
      const held = (byUser.get(user) ?? []).filter((r) => silent || r.until > now);
      return { publishers: new Set(held.map((r) => r.identity)), services: new Set(held.map((r) => r.service)) };
    },
    ranked: () => order,
    size: () => count,
  };
}
