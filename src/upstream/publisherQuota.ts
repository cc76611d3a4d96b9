// What a new publisher connection may take: publish.publishersPerUser counted in distinct publishers (one
// process's connections count once) and servicesPerUser in distinct names, here and on the cluster's other instances.
import { refuse } from '../errors/refusal.ts';
import { upstreamRefusal } from './openUpstream.ts';
import { ALREADY_CONNECTED } from './publishProtocol.ts';
import { publisherKeyOf, type Entry } from './publisherRegistry.ts';
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

/**
 * The publishers past the limit when instances admitted several at once, each before hearing of the others:
 * per user, the keys ranked after the first `publishersPerUser` (every instance ranks alike, so each closes
 * its own connections of those and the user is back at the limit within a read of the leases).
 */
export function pastTheLimit(ranked: ReadonlyMap<string, readonly string[]>, publishersPerUser: number): Map<string, Set<string>> {
  const past = new Map<string, Set<string>>();
  for (const [user, keys] of ranked) if (keys.length > publishersPerUser) past.set(user, new Set(keys.slice(publishersPerUser)));
  return past;
}
