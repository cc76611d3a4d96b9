// Who publishes what right now: the replicas serving each user's service, each user's publishers, the
// certificates of those gone lately (for failover), and which replica takes a new stream.
import type { Publisher, PublishedListing } from './publishedServices.ts';
import type { PublisherSession } from './publisherSession.ts';
import type { UpstreamTarget } from './upstreamTarget.ts';

export type Published = Extract<UpstreamTarget, { kind: 'published' }>;

export interface Entry extends Publisher, PublisherSession {
  streamsOpen: number;
  streamsServed: number;
  /** The same counts per service this publisher carries (the portal lists one row per service and replica). */
  perService: Map<string, { open: number; served: number }>;
  /** Replaced by a newer connection of the same publisher here: it carries no new stream and ends soon. */
  retired?: boolean;
  /** Lets its streams finish (no new one) and ends it, as a publisher replaced here; set once attached. */
  retire?(reason: string): void;
}

/**
 * The publisher a connection belongs to, as the limits count it: the id the publisher process sent (one for
 * all its connections, on every instance) with the certificate it presents, or for an older publisher that
 * sends none, the connection itself. The id is no secret (it is on the portal): the certificate keeps another
 * holder of a publish token for the same user from replacing or locking out that publisher under its id; the
 * same id from two certificates counts as two publishers.
 */
export const publisherKeyOf = (p: Pick<Entry, 'id' | 'publisherId' | 'fingerprint'>): string =>
  p.publisherId === undefined ? `connection:${p.id}` : `${p.publisherId}@${p.fingerprint}`;

export function tallyOf(entry: Entry, service: string): { open: number; served: number } {
  let tally = entry.perService.get(service);
  if (!tally) entry.perService.set(service, (tally = { open: 0, served: 0 }));
  return tally;
}

/** Its HTTP/2 session is up and not closing: it can take a stream. */
export const live = (e: Entry): boolean => e.session !== undefined && !e.session.closed && !e.session.destroyed;

/** One service one publisher connection here carries: what this instance registers in a cluster. */
export interface CarriedService {
  publisher: string;
  /** The publisher's key (publisherKeyOf): the instances count a user's publishers by it. */
  identity: string;
  user: string;
  service: string;
  fingerprint: string;
}

const key = (user: string, service: string) => `${user}\u0000${service}`;
/** Departed publishers remembered for failover: far more than the requests in flight when one goes could name. */
const MAX_DEPARTED = 256;

export class PublisherRegistry {
  /** The replicas that take new streams, per user and service (a publisher saying goodbye leaves at once). */
  private readonly byService = new Map<string, Entry[]>();
  private readonly byUser = new Map<string, Set<Entry>>();
  /** Turns among equally loaded replicas, so a burst of requests inspected at once spreads over them. */
  private turn = 0;
  /** The certificates of publishers gone lately (by connection id): a request they carried may fail over to a replica with the same one. */
  private readonly departed = new Map<string, string>();
  /** Told when the services carried here change (a cluster writes its leases soon after); never waits. */
  onChange: () => void = () => {};

  /** `user`'s publishers now, connected or being set up. */
  publishersOf(user: string): ReadonlySet<Entry> {
    return this.byUser.get(user) ?? new Set();
  }

  add(entry: Entry): void {
    for (const s of entry.services) this.byService.set(key(entry.user, s), [...(this.byService.get(key(entry.user, s)) ?? []), entry]);
    const mine = this.byUser.get(entry.user) ?? new Set<Entry>();
    mine.add(entry);
    this.byUser.set(entry.user, mine);
    this.onChange();
  }

  /** Takes `entry`'s services (or those of them named) out (a goodbye): no new stream goes to it; it still counts as the user's publisher. */
  withdraw(entry: Entry, services: readonly string[] = entry.services): void {
    for (const service of services) {
      const k = key(entry.user, service);
      const replicas = this.byService.get(k)?.filter((e) => e !== entry) ?? [];
      if (replicas.length > 0) this.byService.set(k, replicas);
      else this.byService.delete(k);
    }
    this.onChange();
  }

  /**
   * Takes `names` out of `user`'s connected publishers here (none retired): no new stream reaches them, and
   * they leave this instance's leases. Each publisher that carried one, with those it lost.
   */
  drop(user: string, names: ReadonlySet<string>): Array<{ entry: Entry; dropped: string[] }> {
    const touched: Array<{ entry: Entry; dropped: string[] }> = [];
    for (const entry of this.publishersOf(user)) {
      const dropped = entry.services.filter((s) => names.has(s));
      if (dropped.length === 0 || entry.retired || !live(entry)) continue;
      this.withdraw(entry, dropped);
      entry.services = entry.services.filter((s) => !names.has(s));
      touched.push({ entry, dropped });
    }
    return touched;
  }

  /** Every service carried by a connected publisher here, one row per replica (its lease in a cluster). */
  carried(): CarriedService[] {
    const rows: CarriedService[] = [];
    for (const [k, replicas] of this.byService) {
      const cut = k.indexOf('\u0000');
      const user = k.slice(0, cut);
      const service = k.slice(cut + 1);
      for (const e of replicas) if (live(e)) rows.push({ publisher: e.id, identity: publisherKeyOf(e), user, service, fingerprint: e.fingerprint });
    }
    return rows;
  }

  /** `entry` is gone: withdrawn, no longer the user's, its certificate remembered for failover. */
  forget(entry: Entry): void {
    this.withdraw(entry);
    this.departed.set(entry.id, entry.fingerprint);
    if (this.departed.size > MAX_DEPARTED) this.departed.delete(this.departed.keys().next().value as string);
    const mine = this.byUser.get(entry.user);
    mine?.delete(entry);
    if (mine?.size === 0) this.byUser.delete(entry.user);
  }

  /** The replica with the fewest streams open (least outstanding), turning among ties; of one certificate if given. */
  pick(target: Published, fingerprint?: string): Entry | undefined {
    const replicas = (this.byService.get(key(target.user, target.service)) ?? []).filter((e) => live(e) && (fingerprint === undefined || e.fingerprint === fingerprint));
    if (replicas.length <= 1) return replicas[0];
    const fewest = Math.min(...replicas.map((e) => e.streamsOpen));
    const least = replicas.filter((e) => e.streamsOpen === fewest);
    this.turn = (this.turn + 1) % 1_000_000;
    return least[this.turn % least.length];
  }

  /** The replica named by `target.via` while it still publishes the service (live or not). */
  serving(target: Published): Entry | undefined {
    return this.byService.get(key(target.user, target.service))?.find((e) => e.id === target.via);
  }

  /** The certificate of the publisher `target.via` names: serving, saying goodbye, or gone lately. */
  fingerprintOf(target: Published): string | undefined {
    if (target.via === undefined) return undefined;
    return this.serving(target)?.fingerprint ?? [...this.publishersOf(target.user)].find((e) => e.id === target.via)?.fingerprint ?? this.departed.get(target.via);
  }

  counts(): { publishers: number; services: number; streams: number } {
    let streams = 0;
    let publishers = 0;
    for (const set of this.byUser.values()) {
      publishers += set.size;
      for (const e of set) streams += e.streamsOpen;
    }
    // A service with several replicas is one service.
    return { publishers, services: this.byService.size, streams };
  }

  /** Closes every publisher `matches` picks; how many. */
  closeWhere(matches: (e: Entry) => boolean, reason: string): number {
    const found = [...this.byUser.values()].flatMap((set) => [...set]).filter(matches);
    for (const e of found) e.close(reason);
    return found.length;
  }

  /** What `user` publishes right now (one row per service and replica). */
  listOf(user: string): PublishedListing[] {
    return [...this.publishersOf(user)]
      .flatMap((entry) =>
        entry.services
          .filter((service) => this.byService.get(key(user, service))?.includes(entry))
          .map((service) => {
            const tally = entry.perService.get(service);
            return { service, publisher: entry.id, fingerprint: entry.fingerprint, streamsOpen: tally?.open ?? 0, streamsServed: tally?.served ?? 0, rawTcp: entry.rawTcp?.includes(service) === true, udp: entry.udp?.includes(service) === true };
          }),
      )
      .sort((a, b) => a.service.localeCompare(b.service) || a.publisher.localeCompare(b.publisher));
  }
}
