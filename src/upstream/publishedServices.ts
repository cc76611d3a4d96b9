// The services users publish right now: which publisher connections (replicas) serve each user's service,
// the limits on them, and streams opened to a service as HTTP/2 CONNECT streams over one replica's connection.
import { constants as h2, type ClientHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { Gauge, type Registry } from 'prom-client';
import type { StreamUpstreams, UpstreamConnection, UpstreamInspection } from './openUpstream.ts';
import type { UpstreamTarget } from './upstreamTarget.ts';
import { STREAM_ERROR_HEADER } from './publishProtocol.ts';
import { attachPublisher, type PublisherSession } from './publisherSession.ts';
import { DEFAULT_MAX_STREAM_WINDOW } from './publishWindows.ts';

export interface PublisherLimits {
  servicesPerUser: number;
  publishersPerUser: number;
  streamsPerPublisher: number;
  /** Largest receive window of one stream from a publisher (publish.window). */
  window?: number;
}

/** Who publishes what: `user` is the token's user (the name space), never a name the publisher chose. */
export interface PublisherInfo {
  /** The publisher's connection id (as in its connection.open record). */
  id: string;
  user: string;
  /** sha256 fingerprint of the publisher's client certificate. */
  fingerprint: string;
  services: readonly string[];
  /** Of `services`, those the publisher says speak raw TCP, not HTTP (the portal offers no web link for them). */
  rawTcp?: readonly string[];
}

export interface Publisher extends PublisherInfo {
  readonly streamsOpen: number;
  readonly streamsServed: number;
  /** Resolves with why the publisher went away, once its services are withdrawn and its streams ended. */
  readonly closed: Promise<string>;
  close(reason: string): void;
  /**
   * Shutdown: the streams it carries may finish for up to `deadlineMs` (what runs then is cut, as an error);
   * no new stream is opened to any publisher from now on (503 "gateway shutting down").
   */
  drain(reason: string, deadlineMs: number): void;
}

export type Refusal = { ok: false; status: number; clientReason: string; reason: string };

/** A reserved place in the registry: the services are taken until attached or cancelled. */
export type Reservation =
  | { ok: true; attach(socket: Duplex): Publisher; cancel(): void; services: string[]; refused: ServiceRefusal[] }
  | Refusal;

/** A service of a registration that was not published (the others were), and why. */
export interface ServiceRefusal {
  service: string;
  reason: string;
}

/** One service a user publishes now through one publisher (a replica per row), as the portal shows it to that user. */
export interface PublishedListing {
  service: string;
  /** The publisher's connection id. */
  publisher: string;
  fingerprint: string;
  streamsOpen: number;
  streamsServed: number;
  /** The publisher says the service speaks raw TCP (`NAME/tcp=`), not HTTP. */
  rawTcp: boolean;
}

export interface PublishedServices extends StreamUpstreams {
  reserve(info: PublisherInfo): Reservation;
  /** Ends the publisher with connection id `id` (its streams end as errors, `reason` in its publish.close). */
  close(id: string, reason: string): boolean;
  /** Ends every publisher whose client certificate has this fingerprint (e.g. revoked); how many. */
  closeByFingerprint(fingerprint: string, reason: string): number;
  counts(): { publishers: number; services: number; streams: number };
  /** What `user` publishes right now (one row per service). */
  listOf(user: string): PublishedListing[];
  /** Gauges for the gateway's Prometheus registry. */
  registerMetrics(registry: Registry): void;
}

type Published = Extract<UpstreamTarget, { kind: 'published' }>;

interface Entry extends Publisher, PublisherSession {
  streamsOpen: number;
  streamsServed: number;
  /** The same counts per service this publisher carries (the portal lists one row per service and replica). */
  perService: Map<string, { open: number; served: number }>;
}

function tallyOf(entry: Entry, service: string): { open: number; served: number } {
  let tally = entry.perService.get(service);
  if (!tally) entry.perService.set(service, (tally = { open: 0, served: 0 }));
  return tally;
}

const key = (user: string, service: string) => `${user}\u0000${service}`;
/** Departed publishers remembered for failover: far more than the requests in flight when one goes could name. */
const MAX_DEPARTED = 256;

function notPublished(target: Published, why = 'nobody publishes it'): Refusal {
  return { ok: false, status: 503, clientReason: 'service not published', reason: `${target.label}: ${why}` };
}

/** `limits` is read at each registration and stream, so a config reload applies to publishers already connected. */
export function createPublishedServices(limits: () => PublisherLimits | undefined): PublishedServices {
  /** The replicas that take new streams, per user and service (a publisher saying goodbye leaves at once). */
  const byService = new Map<string, Entry[]>();
  const byUser = new Map<string, Set<Entry>>();
  /** Turns among equally loaded replicas, so a burst of requests inspected at once spreads over them. */
  let turn = 0;
  /** The certificates of publishers gone lately (by connection id): a request they carried may fail over to a replica with the same one. */
  const departed = new Map<string, string>();
  /** Set once shutdown drains the publishers: new streams are refused with this, as new tunnels are. */
  let goingAway: string | undefined;

  const withdraw = (entry: Entry) => {
    for (const service of entry.services) {
      const k = key(entry.user, service);
      const replicas = byService.get(k)?.filter((e) => e !== entry) ?? [];
      if (replicas.length > 0) byService.set(k, replicas);
      else byService.delete(k);
    }
  };
  const forget = (entry: Entry) => {
    withdraw(entry);
    departed.set(entry.id, entry.fingerprint);
    if (departed.size > MAX_DEPARTED) departed.delete(departed.keys().next().value as string);
    const mine = byUser.get(entry.user);
    mine?.delete(entry);
    if (mine?.size === 0) byUser.delete(entry.user);
  };
  const live = (e: Entry) => e.session !== undefined && !e.session.closed && !e.session.destroyed;

  /** The replica with the fewest streams open (least outstanding), turning among ties; of one certificate if given. */
  function pick(target: Published, fingerprint?: string): Entry | undefined {
    const replicas = (byService.get(key(target.user, target.service)) ?? []).filter((e) => live(e) && (fingerprint === undefined || e.fingerprint === fingerprint));
    if (replicas.length <= 1) return replicas[0];
    const fewest = Math.min(...replicas.map((e) => e.streamsOpen));
    const least = replicas.filter((e) => e.streamsOpen === fewest);
    turn = (turn + 1) % 1_000_000;
    return least[turn % least.length];
  }

  function reserve(info: PublisherInfo): Reservation {
    const now = limits();
    if (!now) return { ok: false, status: 403, clientReason: 'publishing is not enabled on this gateway', reason: 'routes.yaml has no publish: block' };
    const mine = byUser.get(info.user) ?? new Set<Entry>();
    if (mine.size >= now.publishersPerUser) {
      return { ok: false, status: 429, clientReason: 'too many publishers', reason: `${info.user} already has ${mine.size} publishers connected (publish.publishersPerUser ${now.publishersPerUser})` };
    }
    // A service the user already publishes gains a replica (it counts once); new names fit up to the limit,
    // and those past it are refused one by one, so the others are still published.
    const publishing = new Set([...mine].flatMap((e) => e.services));
    let room = now.servicesPerUser - publishing.size;
    const services: string[] = [];
    const refused: ServiceRefusal[] = [];
    for (const service of info.services) {
      if (publishing.has(service) || room-- > 0) services.push(service);
      else refused.push({ service, reason: `${info.user} publishes ${publishing.size} services (publish.servicesPerUser ${now.servicesPerUser})` });
    }
    if (services.length === 0) {
      return { ok: false, status: 429, clientReason: 'too many published services', reason: `${info.user} publishes ${publishing.size} services; ${info.services.length} more would pass publish.servicesPerUser ${now.servicesPerUser}` };
    }
    let settle!: (reason: string) => void;
    const closed = new Promise<string>((resolve) => (settle = resolve));
    const entry: Entry = { ...info, services, session: undefined, streams: new Set(), streamsOpen: 0, streamsServed: 0, perService: new Map(), closed, close: () => {}, drain: () => {}, nudge: () => {} };
    for (const s of services) byService.set(key(info.user, s), [...(byService.get(key(info.user, s)) ?? []), entry]);
    mine.add(entry);
    byUser.set(info.user, mine);
    return {
      ok: true,
      services,
      refused,
      attach(socket) {
        const maxWindow = () => limits()?.window ?? DEFAULT_MAX_STREAM_WINDOW;
        attachPublisher(entry, socket, maxWindow, () => withdraw(entry), (reason) => {
          forget(entry);
          settle(reason);
        });
        const drain = entry.drain;
        entry.drain = (reason, deadlineMs) => {
          goingAway = reason;
          drain(reason, deadlineMs);
        };
        return entry;
      },
      cancel() {
        forget(entry);
        settle('cancelled before the connection was set up');
      },
    };
  }

  const shuttingDown = (target: Published): Refusal => ({ ok: false, status: 503, clientReason: 'gateway shutting down', reason: `${target.label}: ${goingAway}` });

  function inspect(target: Published): UpstreamInspection {
    if (goingAway !== undefined) return { target, unavailable: shuttingDown(target) };
    const entry = pick(target);
    if (!entry) return { target, unavailable: notPublished(target) };
    return { target: { ...target, via: entry.id }, publisherFingerprint: entry.fingerprint };
  }

  function open(target: Published, timeoutMs: number, retry = true): Promise<UpstreamConnection> {
    if (goingAway !== undefined) return Promise.resolve(shuttingDown(target));
    let entry = target.via === undefined ? pick(target) : byService.get(key(target.user, target.service))?.find((e) => e.id === target.via && live(e));
    if (!entry && target.via !== undefined) {
      // The replica chosen at admission said goodbye meanwhile. The policy decided on its certificate, so
      // only a replica with the same one may take its place (and the records then name that one).
      const left = [...(byUser.get(target.user) ?? [])].find((e) => e.id === target.via);
      entry = left && pick(target, left.fingerprint);
      if (entry) target.via = entry.id;
    }
    const session = entry?.session;
    if (!entry || !session || !live(entry)) {
      return Promise.resolve(notPublished(target, target.via === undefined ? undefined : `publisher ${target.via} went away during admission`));
    }
    const streamLimit = limits()?.streamsPerPublisher ?? 0;
    if (entry.streamsOpen >= streamLimit) {
      return Promise.resolve({ ok: false, status: 503, clientReason: 'service busy', reason: `publisher ${entry.id} has ${entry.streamsOpen} streams open (publish.streamsPerPublisher ${streamLimit})` });
    }
    let stream: ClientHttp2Stream;
    try {
      stream = session.request({ [h2.HTTP2_HEADER_METHOD]: 'CONNECT', [h2.HTTP2_HEADER_AUTHORITY]: target.service }, { endStream: false });
    } catch (err) {
      return Promise.resolve(notPublished(target, `publisher connection unusable: ${(err as Error).message}`));
    }
    const tally = tallyOf(entry, target.service);
    entry.streamsOpen += 1;
    tally.open += 1;
    entry.streams.add(stream);
    entry.nudge();
    stream.once('close', () => {
      entry.streamsOpen -= 1;
      tally.open -= 1;
      entry.streams.delete(stream);
    });
    // A reset by the publisher ends the stream now, even with writes queued behind flow control (see publishStreams.ts).
    stream.once('aborted', () => stream.destroy());
    return new Promise((resolve) => {
      const fail = (reason: string, status = 502, clientReason = 'upstream unavailable') => {
        clearTimeout(timer);
        stream.destroy();
        resolve({ ok: false, status, clientReason, reason: `publisher ${entry.id}: ${reason}` });
      };
      const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs);
      const onError = (err: NodeJS.ErrnoException) => (stream.rstCode === h2.NGHTTP2_REFUSED_STREAM ? undefined : fail(err.code ?? err.message));
      const onClose = () => {
        // Refused unprocessed (a replica leaving, RFC 9113 8.7): safe to open on another replica, once.
        if (stream.rstCode === h2.NGHTTP2_REFUSED_STREAM && retry) {
          clearTimeout(timer);
          return resolve(open(target, timeoutMs, false));
        }
        fail('stream closed before an answer', 503, 'service not published');
      };
      stream.once('error', onError);
      stream.once('close', onClose);
      stream.once('response', (headers) => {
        clearTimeout(timer);
        stream.off('error', onError);
        stream.off('close', onClose);
        stream.on('error', () => {}); // the forwarder's splice sees errors through 'close'
        const status = Number(headers[h2.HTTP2_HEADER_STATUS]);
        if (status !== 200) {
          const why = String(headers[STREAM_ERROR_HEADER] ?? `status ${status}`).slice(0, 200);
          stream.destroy();
          return resolve({ ok: false, status: 502, clientReason: 'upstream unavailable', reason: `publisher ${entry.id}: ${why}` });
        }
        entry.streamsServed += 1;
        tally.served += 1;
        resolve({ ok: true, stream });
      });
    });
  }

  function failover(target: Published): Published | undefined {
    if (target.via === undefined) return undefined;
    const serving = byService.get(key(target.user, target.service))?.find((e) => e.id === target.via);
    // Still published and connected: the stream failed for another reason (the service's), not a lost replica.
    if (serving && live(serving)) return undefined;
    const fingerprint = serving?.fingerprint ?? [...(byUser.get(target.user) ?? [])].find((e) => e.id === target.via)?.fingerprint ?? departed.get(target.via);
    const next = fingerprint === undefined ? undefined : pick(target, fingerprint);
    return next && next.id !== target.via ? { ...target, via: next.id } : undefined;
  }

  function counts() {
    let streams = 0;
    let publishers = 0;
    for (const set of byUser.values()) {
      publishers += set.size;
      for (const e of set) streams += e.streamsOpen;
    }
    // A service with several replicas is one service.
    return { publishers, services: byService.size, streams };
  }

  const closeWhere = (matches: (e: Entry) => boolean, reason: string): number => {
    const found = [...byUser.values()].flatMap((set) => [...set]).filter(matches);
    for (const e of found) e.close(reason);
    return found.length;
  };

  return {
    reserve,
    inspect,
    open,
    failover,
    counts,
    close: (id, reason) => closeWhere((e) => e.id === id, reason) > 0,
    closeByFingerprint: (fingerprint, reason) => closeWhere((e) => e.fingerprint === fingerprint, reason),
    listOf(user) {
      return [...(byUser.get(user) ?? [])]
        .flatMap((entry) =>
          entry.services
            .filter((service) => byService.get(key(user, service))?.includes(entry))
            .map((service) => {
              const tally = entry.perService.get(service);
              return { service, publisher: entry.id, fingerprint: entry.fingerprint, streamsOpen: tally?.open ?? 0, streamsServed: tally?.served ?? 0, rawTcp: entry.rawTcp?.includes(service) === true };
            }),
        )
        .sort((a, b) => a.service.localeCompare(b.service) || a.publisher.localeCompare(b.publisher));
    },
    registerMetrics(registry) {
      const gauge = (name: string, help: string, pick: (c: ReturnType<typeof counts>) => number) =>
        new Gauge({ name: `gatehouse_${name}`, help, registers: [registry], collect() { this.set(pick(counts())); } });
      gauge('publishers_connected', 'Publisher connections registered now', (c) => c.publishers);
      gauge('published_services', 'Services published now, over all publishers', (c) => c.services);
      gauge('published_streams_open', 'Streams open to published services now', (c) => c.streams);
    },
  };
}
