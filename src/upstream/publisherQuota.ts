// What a new publisher connection may take: publish.publishersPerUser counted in distinct publishers (one
// process's connections count once) and servicesPerUser in distinct names, here and on the cluster's other instances.
import { refuse } from '../errors/refusal.ts';
import { upstreamRefusal } from './openUpstream.ts';
import { ALREADY_CONNECTED } from './publishProtocol.ts';
import { publisherKeyOf, type Entry, type PublisherRegistry } from './publisherRegistry.ts';
import type { PublisherInfo, PublisherLimits, Refusal, ServiceRefusal } from './publishedServices.ts';

/** What a user holds on the other instances (their live leases): publisher keys and service names. */
export interface RemoteUsage {
  publishers: ReadonlySet<string>;
  services: ReadonlySet<string>;
}

export const NO_REMOTE_USAGE: RemoteUsage = { publishers: new Set(), services: new Set() };

export type Admission = { ok: true; services: string[]; refused: ServiceRefusal[]; replacing: Entry | undefined } | Refusal;

/** `n things` with what the other instances hold of them, for the records. */
function counted(total: number, remote: number, what: string): string {
  return remote === 0 ? `${total} ${what}` : `${total} ${what} (${remote} on other instances)`;
}

/** The services `info` may publish now: those already published (another replica: counted once) and new names up to the limit. */
function roomFor(info: PublisherInfo, publishing: ReadonlySet<string>, remote: number, servicesPerUser: number): { services: string[]; refused: ServiceRefusal[] } {
  // Names past the limit are refused one by one, so the others are still published.
  let room = servicesPerUser - publishing.size;
  const services: string[] = [];
  const refused: ServiceRefusal[] = [];
  for (const service of info.services) {
    if (publishing.has(service) || room-- > 0) services.push(service);
    else refused.push({ service, reason: `${info.user} publishes ${counted(publishing.size, remote, 'services')} (publish.servicesPerUser ${servicesPerUser})` });
  }
  return { services, refused };
}

/**
 * Admits `info` against the user's publishers here (`mine`) and elsewhere (`remote`). The publisher id is the
 * client's to choose, so it buys nothing: one connection per (user, id) takes streams on an instance (a second
 * one is refused unless it names the first as the one it replaces), which is what an honest publisher holding
 * every instance has; and an id already counted is one publisher however many processes send it.
 */
export function admitPublisher(info: PublisherInfo, mine: ReadonlySet<Entry>, remote: RemoteUsage, limits: PublisherLimits): Admission {
  const key = publisherKeyOf(info);
  const current = [...mine].find((e) => !e.retired && publisherKeyOf(e) === key);
  if (current && (current.retire === undefined || info.replaces !== current.id)) {
    return upstreamRefusal(refuse('GH_TOO_MANY_PUBLISHERS', `publisher ${key} of ${info.user} already has connection ${current.id} on this instance (one per publisher and instance; a reconnect names the one it replaces)`, { clientReason: ALREADY_CONNECTED }));
  }
  const publishers = new Set([...mine].map(publisherKeyOf));
  const remoteOnly = [...remote.publishers].filter((p) => !publishers.has(p)).length;
  for (const p of remote.publishers) publishers.add(p);
  if (!publishers.has(key) && publishers.size >= limits.publishersPerUser) {
    return upstreamRefusal(refuse('GH_TOO_MANY_PUBLISHERS', `${info.user} already has ${counted(publishers.size, remoteOnly, 'publishers connected')} (publish.publishersPerUser ${limits.publishersPerUser})`));
  }
  const here = new Set([...mine].flatMap((e) => e.services));
  const publishing = new Set([...here, ...remote.services]);
  const { services, refused } = roomFor(info, publishing, publishing.size - here.size, limits.servicesPerUser);
  if (services.length === 0) {
    return upstreamRefusal(refuse('GH_TOO_MANY_SERVICES', `${info.user} publishes ${counted(publishing.size, publishing.size - here.size, 'services')}; ${info.services.length} more would pass publish.servicesPerUser ${limits.servicesPerUser}`));
  }
  return { ok: true, services, refused, replacing: current };
}

/** Per user, publisher keys and service names over every instance's leases, each first registered first. */
export interface Ranking {
  publishers: ReadonlyMap<string, readonly string[]>;
  services: ReadonlyMap<string, readonly string[]>;
}

/**
 * The publishers (or service names) past the limit when instances admitted several at once, each before
 * hearing of the others: per user, those ranked after the first `limit` (every instance ranks alike, so each
 * ends its own share of them and the user is back at the limit within a read of the leases).
 */
export function pastTheLimit(ranked: ReadonlyMap<string, readonly string[]>, limit: number): Map<string, Set<string>> {
  const past = new Map<string, Set<string>>();
  for (const [user, keys] of ranked) if (keys.length > limit) past.set(user, new Set(keys.slice(limit)));
  return past;
}

/**
 * After a read of the leases: ends this instance's share of what is past the limits across the cluster.
 * Publishers ranked past publishersPerUser are closed. Service names ranked past servicesPerUser are taken
 * out of the registry at once (no new stream reaches them, they leave this instance's leases, and they no
 * longer count against the user here), then each connection that carried one is let go as a replaced one is
 * (GOAWAY; its streams in flight finish). The protocol tells a publisher what is not published only in the
 * answer to its registration, so that is how it hears: it reconnects at once, publishes its other names again
 * and is told `not published: NAME (reason)` (or 429 and retries, if that was its only name), and it gets the
 * name in once a slot frees. Dropping the name silently would leave a publisher that believes it publishes
 * it, never asks again, and still counts against publishersPerUser with nothing to carry.
 */
export function settleAcross(publishers: PublisherRegistry, ranking: Ranking, limits: PublisherLimits): void {
  for (const [user, past] of pastTheLimit(ranking.publishers, limits.publishersPerUser)) {
    const why = `publish.publishersPerUser ${limits.publishersPerUser} passed: ${user}'s publishers were admitted at once on several instances, the last registered leave`;
    publishers.closeWhere((e) => e.user === user && e.session !== undefined && past.has(publisherKeyOf(e)), why);
  }
  for (const [user, past] of pastTheLimit(ranking.services, limits.servicesPerUser)) {
    for (const { entry, dropped } of publishers.drop(user, past)) {
      entry.retire?.(`${dropped.join(', ')} no longer published: ${user} publishes ${(ranking.services.get(user) ?? []).length} services across the cluster (publish.servicesPerUser ${limits.servicesPerUser}), the last registered leave`);
    }
  }
}
