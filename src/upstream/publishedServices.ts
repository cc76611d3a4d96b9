// The services users publish right now: which publisher connection serves each user's service, the
// limits on them, and streams opened to a service as HTTP/2 CONNECT streams over its publisher's connection.
import { connect as http2Connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { Gauge, type Registry } from 'prom-client';
import type { StreamUpstreams, UpstreamConnection, UpstreamInspection } from './openUpstream.ts';
import type { UpstreamTarget } from './upstreamTarget.ts';
import { STREAM_ERROR_HEADER } from './publishProtocol.ts';
import { socketErrorWords, watchLiveness } from './sessionLiveness.ts';

export interface PublisherLimits {
  servicesPerUser: number;
  publishersPerUser: number;
  streamsPerPublisher: number;
}

/** Who publishes what: `user` is the token's user (the name space), never a name the publisher chose. */
export interface PublisherInfo {
  /** The publisher's connection id (as in its connection.open record). */
  id: string;
  user: string;
  /** sha256 fingerprint of the publisher's client certificate. */
  fingerprint: string;
  services: readonly string[];
}

export interface Publisher extends PublisherInfo {
  readonly streamsOpen: number;
  readonly streamsServed: number;
  /** Resolves with why the publisher went away, once its services are withdrawn and its streams ended. */
  readonly closed: Promise<string>;
  close(reason: string): void;
}

export type Refusal = { ok: false; status: number; clientReason: string; reason: string };

/** A reserved place in the registry: the services are taken until attached or cancelled. */
export type Reservation =
  | { ok: true; attach(socket: Duplex): Publisher; cancel(): void }
  | Refusal;

/** One service a user publishes now, as the portal shows it to that user. */
export interface PublishedListing {
  service: string;
  /** The publisher's connection id. */
  publisher: string;
  fingerprint: string;
  streamsOpen: number;
  streamsServed: number;
}

export interface PublishedServices extends StreamUpstreams {
  reserve(info: PublisherInfo): Reservation;
  counts(): { publishers: number; services: number; streams: number };
  /** What `user` publishes right now (one row per service). */
  listOf(user: string): PublishedListing[];
  /** Gauges for the gateway's Prometheus registry. */
  registerMetrics(registry: Registry): void;
}

/**
 * Per-stream receive window: what one stream may have in flight towards a reader that is not reading.
 * A stalled reader costs at most this much at each end; the others keep flowing within the connection window.
 */
const STREAM_WINDOW = 256 << 10;
const CONNECTION_WINDOW = 16 << 20;

type Published = Extract<UpstreamTarget, { kind: 'published' }>;

interface Entry extends Publisher {
  session: ClientHttp2Session | undefined;
  streamsOpen: number;
  streamsServed: number;
  /** A stream was opened: see that the publisher still answers (sessionLiveness.ts). */
  nudge(): void;
}

const key = (user: string, service: string) => `${user}\u0000${service}`;

function notPublished(target: Published, why = 'nobody publishes it'): Refusal {
  return { ok: false, status: 503, clientReason: 'service not published', reason: `${target.label}: ${why}` };
}

/** `limits` is read at each registration and stream, so a config reload applies to publishers already connected. */
export function createPublishedServices(limits: () => PublisherLimits | undefined): PublishedServices {
  const byService = new Map<string, Entry>();
  const byUser = new Map<string, Set<Entry>>();

  const withdraw = (entry: Entry) => {
    for (const service of entry.services) if (byService.get(key(entry.user, service)) === entry) byService.delete(key(entry.user, service));
    const mine = byUser.get(entry.user);
    mine?.delete(entry);
    if (mine?.size === 0) byUser.delete(entry.user);
  };

  function attach(entry: Entry, socket: Duplex, settle: (reason: string) => void): void {
    let reason: string | undefined;
    const session = http2Connect('http://publisher.invalid', {
      createConnection: () => socket,
      settings: { initialWindowSize: STREAM_WINDOW, enablePush: false },
      // Outbound data queued towards slow streams counts here; the stream windows keep it far below.
      maxSessionMemory: 64,
    });
    entry.session = session;
    /**
     * The publisher is gone without saying goodbye: every stream it carried ends now, as an error that says
     * why (a transfer cut short must never look like a complete one), and its services are withdrawn.
     */
    const lose = (why: string) => {
      reason ??= `publisher lost (${why})`;
      if (!session.destroyed) session.destroy(new Error(reason));
    };
    const liveness = watchLiveness(session, () => entry.streamsOpen > 0, lose);
    entry.nudge = liveness.nudge;
    session.once('connect', () => {
      if (!session.destroyed) session.setLocalWindowSize(CONNECTION_WINDOW);
    });
    session.on('error', (err: NodeJS.ErrnoException) => lose(socketErrorWords(err)));
    // A goodbye (GOAWAY: the publisher is stopping): no new streams go to it; those it carries may finish.
    session.on('goaway', () => {
      reason ??= 'publisher said goodbye';
      withdraw(entry);
    });
    // The publisher's side of the connection ended or broke: nothing more can come from it, and Node's own
    // handling only asks open streams to close, which a dead connection never completes.
    // Ahead of HTTP/2's own listeners, so the streams end with this reason rather than a bare socket error.
    socket.prependListener('error', (err: NodeJS.ErrnoException) => lose(socketErrorWords(err)));
    socket.prependOnceListener('end', () => lose('connection closed'));
    socket.prependOnceListener('close', () => lose('connection closed'));
    session.once('close', () => {
      liveness.stop();
      entry.session = undefined;
      withdraw(entry);
      socket.destroy();
      settle(reason ?? 'publisher connection closed');
    });
    entry.close = (why: string) => {
      reason ??= why;
      // Streams in flight end now, as errors (each forwarder writes its close record); the connection goes with them.
      if (!session.destroyed) session.destroy(new Error(why));
    };
  }

  function reserve(info: PublisherInfo): Reservation {
    const now = limits();
    if (!now) return { ok: false, status: 403, clientReason: 'publishing is not enabled on this gateway', reason: 'routes.yaml has no publish: block' };
    const taken = info.services.map((s) => byService.get(key(info.user, s))).find((e) => e !== undefined);
    if (taken) {
      const service = info.services.find((s) => byService.get(key(info.user, s)) === taken);
      return { ok: false, status: 409, clientReason: `service ${service} is already published`, reason: `service ${service} of ${info.user} is already published by connection ${taken.id} (certificate ${taken.fingerprint})` };
    }
    const mine = byUser.get(info.user) ?? new Set<Entry>();
    if (mine.size >= now.publishersPerUser) {
      return { ok: false, status: 429, clientReason: 'too many publishers', reason: `${info.user} already has ${mine.size} publishers connected (publish.publishersPerUser ${now.publishersPerUser})` };
    }
    const services = [...mine].reduce((n, e) => n + e.services.length, 0);
    if (services + info.services.length > now.servicesPerUser) {
      return { ok: false, status: 429, clientReason: 'too many published services', reason: `${info.user} publishes ${services} services; ${info.services.length} more would pass publish.servicesPerUser ${now.servicesPerUser}` };
    }
    let settle!: (reason: string) => void;
    const closed = new Promise<string>((resolve) => (settle = resolve));
    const entry: Entry = { ...info, services: [...info.services], session: undefined, streamsOpen: 0, streamsServed: 0, closed, close: () => {}, nudge: () => {} };
    for (const s of info.services) byService.set(key(info.user, s), entry);
    mine.add(entry);
    byUser.set(info.user, mine);
    return {
      ok: true,
      attach(socket) {
        attach(entry, socket, settle);
        return entry;
      },
      cancel() {
        withdraw(entry);
        settle('cancelled before the connection was set up');
      },
    };
  }

  function inspect(target: Published): UpstreamInspection {
    const entry = byService.get(key(target.user, target.service));
    if (!entry?.session) return { target, unavailable: notPublished(target) };
    return { target: { ...target, via: entry.id }, publisherFingerprint: entry.fingerprint };
  }

  function open(target: Published, timeoutMs: number): Promise<UpstreamConnection> {
    const entry = byService.get(key(target.user, target.service));
    const session = entry?.session;
    if (!entry || !session || session.closed || session.destroyed) return Promise.resolve(notPublished(target));
    // The policy decided on the publisher it saw: one that reconnected since is a different one.
    if (target.via !== undefined && target.via !== entry.id) return Promise.resolve(notPublished(target, `publisher ${target.via} went away during admission`));
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
    entry.streamsOpen += 1;
    entry.nudge();
    stream.once('close', () => (entry.streamsOpen -= 1));
    // A reset by the publisher ends the stream now, even with writes queued behind flow control (see publishStreams.ts).
    stream.once('aborted', () => stream.destroy());
    return new Promise((resolve) => {
      const fail = (reason: string, status = 502, clientReason = 'upstream unavailable') => {
        clearTimeout(timer);
        stream.destroy();
        resolve({ ok: false, status, clientReason, reason: `publisher ${entry.id}: ${reason}` });
      };
      const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs);
      const onError = (err: NodeJS.ErrnoException) => fail(err.code ?? err.message);
      const onClose = () => fail('stream closed before an answer', 503, 'service not published');
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
        resolve({ ok: true, stream });
      });
    });
  }

  function counts() {
    let streams = 0;
    let services = 0;
    const publishers = [...byUser.values()].reduce((n, set) => n + set.size, 0);
    for (const set of byUser.values()) {
      for (const e of set) {
        streams += e.streamsOpen;
        services += e.services.length;
      }
    }
    return { publishers, services, streams };
  }

  return {
    reserve,
    inspect,
    open,
    counts,
    listOf(user) {
      return [...(byUser.get(user) ?? [])].flatMap((entry) =>
        entry.services
          .filter((service) => byService.get(key(user, service)) === entry)
          .map((service) => ({ service, publisher: entry.id, fingerprint: entry.fingerprint, streamsOpen: entry.streamsOpen, streamsServed: entry.streamsServed })),
      );
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
