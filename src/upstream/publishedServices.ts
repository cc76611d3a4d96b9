// The services users publish right now: which publisher connections (replicas) serve each user's service,
// the limits on them, and streams opened to a service as HTTP/2 CONNECT streams over one replica's connection.
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { Gauge, type Registry } from 'prom-client';
import { refuse } from '../errors/refusal.ts';
import { upstreamRefusal, type StreamUpstreams, type UpstreamConnection, type UpstreamInspection, type UpstreamRefusal } from './openUpstream.ts';
import { notPublished, openPublishedStream, wrongKind } from './publishedStream.ts';
import { live, publisherKeyOf, PublisherRegistry, type CarriedService, type Entry, type Published } from './publisherRegistry.ts';
import { admitPublisher, NO_REMOTE_USAGE, settleAcross, type Ranking, type RemoteUsage } from './publisherQuota.ts';
import type { RemoteCarriers } from './relayedUpstreams.ts';
import { attachPublisher } from './publisherSession.ts';
import { DEFAULT_MAX_STREAM_WINDOW } from '../config/publishWindowBounds.ts';

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
  /** The publisher process's own id (the same on each of its connections); absent from an older publisher. */
  publisherId?: string;
  /** The connection (id) of the same publisher here that this one takes the place of (a reconnect, a renewed token). */
  replaces?: string;
  /** Of `services`, those the publisher says speak raw TCP, not HTTP (the portal offers no web link for them). */
  rawTcp?: readonly string[];
  /** Of `services`, the UDP services: reached by datagram streams (udp routes) only. */
  udp?: readonly string[];
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

/** A publisher or a stream the registry refuses: the one Refusal, marked `ok: false`. */
export type Refusal = UpstreamRefusal;

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
  /** A UDP service (`NAME=udp:PORT`): udp routes reach it. */
  udp: boolean;
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
  /** What this instance carries now (its leases in a cluster), and a call when that changes. */
  carried(): CarriedService[];
  onCarriedChange(listener: () => void): void;
  /** A cluster: a service nobody publishes here is looked up among the other instances' publishers. */
  useRemote(remote: RemoteCarriers): void;
  /** A cluster: the limits per user count what `usage` says the user holds on the other instances. */
  countRemote(usage: (user: string) => RemoteUsage): void;
  /** A cluster read the leases: ends this instance's share of the publishers and service names ranked past the limits. */
  settleAcross(ranking: Ranking): void;
  /**
   * A stream relayed here by another instance: to a publisher here with the certificate the policy decided
   * on, never relayed on again (no loops between instances).
   */
  openRelayed(target: Published, fingerprint: string, timeoutMs: number, datagrams?: boolean): Promise<UpstreamConnection>;
}

/**
 * Enters `info`, publishing `services`, in the registry and returns what the reservation does next: attach
 * the publisher's connection (whose drain also stops new streams, through `draining`), or cancel.
 */
function place(info: PublisherInfo, services: string[], publishers: PublisherRegistry, limits: () => PublisherLimits | undefined, draining: (reason: string) => void): Pick<Extract<Reservation, { ok: true }>, 'attach' | 'cancel'> {
  let settle!: (reason: string) => void;
  const closed = new Promise<string>((resolve) => (settle = resolve));
  const entry: Entry = { ...info, services, session: undefined, streams: new Set(), streamsOpen: 0, streamsServed: 0, perService: new Map(), closed, close: () => {}, drain: () => {}, nudge: () => {} };
  publishers.add(entry);
  return {
    attach(socket) {
      const maxWindow = () => limits()?.window ?? DEFAULT_MAX_STREAM_WINDOW;
      attachPublisher(entry, socket, maxWindow, () => publishers.withdraw(entry), (reason) => {
        publishers.forget(entry);
        settle(reason);
      });
      // Connected now: it can be leased to the cluster.
      publishers.onChange();
      const drain = entry.drain;
      // Replaced by a newer connection of the same publisher: its streams finish, the gateway goes on serving.
      entry.retire = (reason) => {
        entry.retired = true;
        drain(reason, RETIRE_DRAIN_MS);
      };
      entry.drain = (reason, deadlineMs) => {
        draining(reason);
        drain(reason, deadlineMs);
      };
      return entry;
    },
    cancel() {
      publishers.forget(entry);
      settle('cancelled before the connection was set up');
    },
  };
}

/** A replaced connection's streams may finish for this long; then what still runs is cut. */
const RETIRE_DRAIN_MS = 30_000;

function registerPublishMetrics(registry: Registry, counts: PublishedServices['counts']): void {
  const gauge = (name: string, help: string, pick: (c: ReturnType<typeof counts>) => number) =>
    new Gauge({ name: `gatehouse_${name}`, help, registers: [registry], collect() { this.set(pick(counts())); } });
  gauge('publishers_connected', 'Publisher connections registered now', (c) => c.publishers);
  gauge('published_services', 'Services published now, over all publishers', (c) => c.services);
  gauge('published_streams_open', 'Streams open to published services now', (c) => c.streams);
}

/** `limits` is read at each registration and stream, so a config reload applies to publishers already connected. */
export function createPublishedServices(limits: () => PublisherLimits | undefined): PublishedServices {
  const publishers = new PublisherRegistry();
  let remote: RemoteCarriers | undefined;
  /** In a cluster: what each user holds on the other instances, as last read (never waits). */
  let remoteUsage: (user: string) => RemoteUsage = () => NO_REMOTE_USAGE;
  /** Set once shutdown drains the publishers: new streams are refused with this, as new tunnels are. */
  let goingAway: string | undefined;

  function reserve(info: PublisherInfo): Reservation {
    const now = limits();
    if (!now) return upstreamRefusal(refuse('GH_PUBLISH_DISABLED', 'routes.yaml has no publish: block'));
    const mine = publishers.publishersOf(info.user);
    const admitted = admitPublisher(info, mine, remoteUsage(info.user), now);
    if (!admitted.ok) return admitted;
    const { services, refused, replacing } = admitted;
    if (replacing) {
      // At most two connections per (user, publisher) here: the one taking streams and the one it replaced.
      for (const e of mine) if (e.retired && publisherKeyOf(e) === publisherKeyOf(replacing)) e.close(`replaced again, by connection ${info.id}`);
      replacing.retire?.(`replaced by connection ${info.id} of the same publisher`);
    }
    return { ok: true, services, refused, ...place(info, services, publishers, limits, (reason) => (goingAway = reason)) };
  }

  const shuttingDown = (target: Published): Refusal => upstreamRefusal(refuse('GH_DRAINING', `${target.label}: ${goingAway}`));

  function inspect(target: Published): UpstreamInspection {
    if (goingAway !== undefined) return { target, unavailable: shuttingDown(target) };
    const entry = publishers.pick(target);
    if (entry) return { target: { ...target, via: entry.id }, publisherFingerprint: entry.fingerprint };
    // Carried by another instance: relayed there, under one correlation id for both instances' records.
    const far = remote?.find(target);
    if (!far) return { target, unavailable: notPublished(target) };
    const relay = { id: randomUUID(), instance: far.instance, publisher: far.publisher, fingerprint: far.fingerprint };
    return { target: { ...target, via: far.publisher, relay }, publisherFingerprint: far.fingerprint };
  }

  /** The replica for `target`: the one chosen at admission, or one with its certificate if it left meanwhile. */
  function replicaFor(target: Published): Entry | undefined {
    if (target.via === undefined) return publishers.pick(target);
    const chosen = publishers.serving(target);
    if (chosen && live(chosen)) return chosen;
    // The replica chosen at admission said goodbye meanwhile. The policy decided on its certificate, so
    // only a replica with the same one may take its place (and the records then name that one).
    const left = [...publishers.publishersOf(target.user)].find((e) => e.id === target.via);
    const entry = left && publishers.pick(target, left.fingerprint);
    if (entry) target.via = entry.id;
    return entry;
  }

  function open(target: Published, timeoutMs: number, datagrams = false, retry = true): Promise<UpstreamConnection> {
    if (goingAway !== undefined) return Promise.resolve(shuttingDown(target));
    if (target.relay) return remote ? remote.open({ ...target, relay: target.relay }, timeoutMs) : Promise.resolve(notPublished(target, 'no cluster to relay to'));
    return openHere(target, replicaFor(target), timeoutMs, datagrams, retry);
  }

  function openHere(target: Published, entry: Entry | undefined, timeoutMs: number, datagrams: boolean, retry: boolean): Promise<UpstreamConnection> {
    const session = entry?.session;
    if (!entry || !session || !live(entry)) {
      return Promise.resolve(notPublished(target, target.via === undefined ? undefined : `publisher ${target.via} went away during admission`));
    }
    const mismatch = wrongKind(entry, target, datagrams);
    if (mismatch) return Promise.resolve(mismatch);
    const streamLimit = limits()?.streamsPerPublisher ?? 0;
    if (entry.streamsOpen >= streamLimit) {
      return Promise.resolve(upstreamRefusal(refuse('GH_SERVICE_BUSY', `publisher ${entry.id} has ${entry.streamsOpen} streams open (publish.streamsPerPublisher ${streamLimit})`)));
    }
    return openPublishedStream(entry, session, target, timeoutMs, retry ? () => open(target, timeoutMs, datagrams, false) : undefined, datagrams);
  }

  function openRelayed(target: Published, fingerprint: string, timeoutMs: number, datagrams = false): Promise<UpstreamConnection> {
    if (goingAway !== undefined) return Promise.resolve(shuttingDown(target));
    const entry = publishers.pick(target, fingerprint);
    if (entry) target.via = entry.id;
    return openHere(target, entry, timeoutMs, datagrams, false);
  }

  function failover(target: Published): Published | undefined {
    // A relayed request is not moved to another instance once admitted (its carrier's record is written).
    if (target.via === undefined || target.relay) return undefined;
    const serving = publishers.serving(target);
    // Still published and connected: the stream failed for another reason (the service's), not a lost replica.
    if (serving && live(serving)) return undefined;
    const fingerprint = publishers.fingerprintOf(target);
    const next = fingerprint === undefined ? undefined : publishers.pick(target, fingerprint);
    return next && next.id !== target.via ? { ...target, via: next.id } : undefined;
  }

  return {
    reserve,
    inspect,
    open,
    failover,
    counts: () => publishers.counts(),
    close: (id, reason) => publishers.closeWhere((e) => e.id === id, reason) > 0,
    closeByFingerprint: (fingerprint, reason) => publishers.closeWhere((e) => e.fingerprint === fingerprint, reason),
    listOf: (user) => publishers.listOf(user),
    registerMetrics: (registry) => registerPublishMetrics(registry, () => publishers.counts()),
    carried: () => publishers.carried(),
    onCarriedChange(listener) {
      publishers.onChange = listener;
    },
    useRemote(next) {
      remote = next;
    },
    countRemote(usage) {
      remoteUsage = usage;
    },
    settleAcross(ranking) {
      const now = limits();
      if (now) settleAcross(publishers, ranking, now);
    },
    openRelayed,
  };
}
