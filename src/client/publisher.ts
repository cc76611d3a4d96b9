// `gatehouse publish` kept alive: register, serve streams, and when the connection goes (gateway restart,
// network loss) say so on stderr and come back with backoff and jitter, registering the same services again.
import { constants as h2, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { GatewayEndpoint } from './gatewayEndpoint.ts';
import { registerPublisher } from './publishConnection.ts';
import { targetLabel, type PublishSpec } from './publishSpec.ts';
import { serveStreams } from './publishStreams.ts';
import { describeFailure, type TunnelFailure } from './tunnelFailure.ts';
import { socketErrorWords, watchLiveness } from '../upstream/sessionLiveness.ts';
import { ALREADY_CONNECTED } from '../upstream/publishProtocol.ts';

export interface PublisherOptions {
  endpoint: GatewayEndpoint;
  specs: readonly PublishSpec[];
  say: (line: string) => void;
  verbose: boolean;
  /** Backoff: first retry after about `minDelayMs`, doubling up to `maxDelayMs`, each scaled by a random 0.5-1. */
  minDelayMs?: number;
  maxDelayMs?: number;
  /** In a cluster: where this connection may land, and which instance it holds (see Landing). */
  landing?: Landing;
  /** This process's publisher id, sent on every connection: the gateways count the process once, however many it holds. */
  identity?: string;
}

/**
 * A connection through a balancer that must hold an instance no other connection of this publisher holds:
 * registered on a taken one, it leaves and comes back through the balancer, at most MAX_LANDINGS times in a row.
 */
export interface Landing {
  /** Instances the publisher's other connections hold now (empty: land anywhere). */
  taken(): ReadonlySet<string>;
  /** The instance this connection holds now ('' when none, or a gateway that names none). */
  holds(instance: string): void;
}

/** Tries to land on an instance not yet held, in a row, before keeping the one it got. */
export const MAX_LANDINGS = 8;

export interface RunningPublisher {
  /** Resolves with an exit code when the publisher stops for good (a refusal that retrying cannot fix, or stop()). */
  readonly done: Promise<number>;
  stop(): void;
  /**
   * The token was renewed: register again with it, then leave the old connection gracefully (its streams
   * finish there). The gateway re-authorizes a registration with the token it was given and ends it once
   * that token expires; the protocol has no way to hand a new token to a running registration.
   */
  tokenRenewed(): void;
}

/** Refusals that the same request will meet again: retrying would only fill the audit log. */
function permanent(failure: TunnelFailure): boolean {
  return failure.kind === 'refused' && [400, 401, 403, 404, 426].includes(failure.status);
}

/** The instance refused a second connection of this publisher (another of its connections holds it): land elsewhere. */
function landedOnOwn(failure: TunnelFailure): boolean {
  return failure.kind === 'refused' && failure.status === 429 && failure.reason.includes(ALREADY_CONNECTED);
}

/** A failure to reach the gateway at all (refused, reset, timed out): it writes no record, so retrying soon costs nothing. */
function unreachable(failure: TunnelFailure): boolean {
  return failure.kind === 'network';
}

/** Network failures are retried at most this far apart: a restarted gateway is served again within about a second. */
const UNREACHABLE_MAX_DELAY_MS = 1_000;
/** How long a destroyed session may take to report itself closed before the publisher reconnects anyway. */
const CLOSE_WAIT_MS = 5_000;
/** Why a session ended when the gateway said goodbye (it is stopping): not a loss. */
const GOODBYE = 'the gateway is going away';
/** Why the publisher registers again while its connection still runs: the token was renewed. */
const RENEWED = 'the token was renewed';

/**
 * Resolves when the session is gone, with why, or as soon as the gateway says goodbye (GOAWAY: it is
 * draining to stop): the streams in flight finish on this session by themselves while the publisher
 * registers again (behind a balancer, with another instance: no gap). Pings the gateway
 * (sessionLiveness.ts) so a silent network loss is noticed, within about a second while streams are carried.
 * `streams()` counts those open.
 */
function whenClosed(session: ServerHttp2Session, socket: TLSSocket, streams: () => number): Promise<string> {
  return new Promise((resolve) => {
    let reason: string | undefined;
    let fallback: NodeJS.Timeout | undefined;
    // A vanished gateway: end the streams now, as errors, rather than wait for closes a dead connection cannot carry.
    const lose = (why: string) => {
      reason ??= why;
      if (!session.destroyed) session.destroy(new Error(`connection to the gateway lost (${why})`));
      // A wedged connection may never report the session closed: reconnect regardless. Not unref'd: with
      // the connection gone it can be the last thing keeping the process alive, and a publisher that
      // lost its gateway must reconnect, not exit 0 in silence (seen after SIGSTOP/SIGCONT).
      fallback ??= setTimeout(done, CLOSE_WAIT_MS);
    };
    socket.prependListener('error', (err: NodeJS.ErrnoException) => lose(socketErrorWords(err)));
    socket.prependOnceListener('end', () => lose('connection closed'));
    socket.prependOnceListener('close', () => lose('connection closed'));
    session.on('error', (err: NodeJS.ErrnoException) => (reason ??= err.code ?? err.message));
    session.on('goaway', () => {
      reason ??= GOODBYE;
      resolve(reason);
    });
    // Upload windows (towards the local service) grow with the path: registerPublisher sized them (publishWindows.ts).
    const liveness = watchLiveness(session, () => streams() > 0, (why) => lose(why === 'ping timeout' ? 'no answer to a ping' : why));
    session.on('stream', () => liveness.nudge());
    function done(): void {
      clearTimeout(fallback);
      liveness.stop();
      socket.destroy();
      resolve(reason ?? 'connection closed');
    }
    session.once('close', done);
  });
}

/** Most stream openings the gateway may have in the air when it hears the first goodbye, in time. */
const GOODBYE_GRACE_MS = 1_000;

/**
 * HTTP/2's graceful shutdown (RFC 9113 6.8): a first GOAWAY that still accepts every stream (the gateway
 * stops choosing this publisher, replicas take new requests), then, once the gateway has answered a ping
 * (so every stream it opened before is in), the final one; streams in flight finish, then the connection closes.
 */
function leaveGracefully(session: ServerHttp2Session): void {
  if (session.closed || session.destroyed) return;
  session.goaway(h2.NGHTTP2_NO_ERROR, 2 ** 31 - 1);
  let closing = false;
  const close = () => {
    if (closing) return;
    closing = true;
    if (!session.closed && !session.destroyed) session.close();
  };
  setTimeout(close, GOODBYE_GRACE_MS).unref();
  try {
    if (!session.ping(close)) close();
  } catch {
    close();
  }
}

/**
 * Full jitter on an exponential step: many publishers cut off by one restart do not return in step.
 * A gateway that cannot be reached (restarting, behind a balancer with no backend) is tried again
 * within a second; one that refuses (a record each time) is left alone for longer and longer.
 */
function retryDelay(failure: TunnelFailure, failures: number, minDelay: number, maxDelay: number): number {
  const cap = unreachable(failure) ? Math.min(maxDelay, UNREACHABLE_MAX_DELAY_MS) : maxDelay;
  const step = Math.min(cap, minDelay * 2 ** failures);
  return Math.round(step * (0.5 + Math.random() / 2));
}

/** How many of the session's streams are open now, as a function to read it. */
function countStreams(session: ServerHttp2Session): () => number {
  let open = 0;
  session.on('stream', (stream: ServerHttp2Stream) => {
    open += 1;
    stream.once('close', () => (open -= 1));
  });
  return () => open;
}

export function runPublisher(options: PublisherOptions): RunningPublisher {
  const { endpoint, specs, say } = options;
  const minDelay = options.minDelayMs ?? 500;
  const maxDelay = options.maxDelayMs ?? 8_000;
  const services = specs.map((s) => s.service);
  let stopped = false;
  let current: ServerHttp2Session | undefined;
  /** The connection registered with the previous token: left once the new registration is in. */
  let handingOver: ServerHttp2Session | undefined;
  let renewed: ((reason: string) => void) | undefined;
  let wake: (() => void) | undefined;
  let finish!: (code: number) => void;
  const done = new Promise<number>((resolve) => (finish = resolve));
  const sleep = (ms: number) => new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => {
      clearTimeout(timer);
      resolve();
    };
  });

  void (async () => {
    let failures = 0;
    let landings = 0;
    let everRegistered = false;
    /** This connection's id on its gateway last time: a reconnect or a renewed token's registration replaces it there. */
    let previous: string | undefined;
    while (!stopped) {
      const identity = options.identity === undefined ? undefined : `${options.identity}${previous === undefined ? '' : `; replaces=${previous}`}`;
      const registration = await registerPublisher(endpoint, services, { rawTcp: specs.filter((s) => s.rawTcp).map((s) => s.service), udp: specs.filter((s) => s.target.kind === 'udp').map((s) => s.service), ...(identity !== undefined && { identity }) });
      if (stopped) {
        if (registration.ok) registration.session.close();
        break;
      }
      // Make before break: the old connection serves until the new one is registered.
      if (registration.ok && handingOver) {
        leaveGracefully(handingOver);
        handingOver = undefined;
      }
      if (!registration.ok && landedOnOwn(registration.failure) && landings < MAX_LANDINGS) {
        landings += 1;
        say(`${endpoint.label} answered from an instance another connection of this publisher holds; reconnecting for another (${landings}/${MAX_LANDINGS})`);
        await sleep(Math.round(100 * (0.5 + Math.random() / 2)));
        continue;
      }
      if (!registration.ok) {
        const line = describeFailure(registration.failure, endpoint.label, services.join(', ')).replace(/refused route/, 'refused publishing');
        if (permanent(registration.failure)) {
          say(`error: ${line}`);
          return finish(4);
        }
        const delay = retryDelay(registration.failure, failures, minDelay, maxDelay);
        failures += 1;
        say(`${line}; retrying in ${(delay / 1000).toFixed(1)} s`);
        await sleep(delay);
        continue;
      }
      failures = 0;
      const { session, socket, user, publisherId, notPublished, instance } = registration;
      previous = publisherId;
      if (instance !== '' && options.landing?.taken().has(instance)) {
        landings += 1;
        if (landings <= MAX_LANDINGS) {
          say(`${endpoint.label} answered from instance ${instance}, which another connection holds; reconnecting for another (${landings}/${MAX_LANDINGS})`);
          leaveGracefully(session);
          await sleep(Math.round(100 * (0.5 + Math.random() / 2)));
          continue;
        }
        say(`${endpoint.label} answered from instance ${instance} ${MAX_LANDINGS} times more: keeping this connection (no other instance reached)`);
      }
      landings = 0;
      options.landing?.holds(instance);
      current = session;
      say(`${everRegistered ? 're-registered' : 'published'} as ${user} through ${endpoint.label} (publisher ${publisherId}): ${specs.map((s) => `${s.service} -> ${targetLabel(s.target)}`).join(', ')}`);
      everRegistered = true;
      if (notPublished) say(`not published: ${notPublished}`);
      const streamsOpen = countStreams(session);
      serveStreams(session, specs, {
        refused: (service, why) => say(`stream for ${service} refused: ${why}`),
        ...(options.verbose && {
          opened: (service: string) => say(`stream for ${service} opened`),
          closed: (service: string, summary: string) => say(`stream for ${service} closed: ${summary}`),
        }),
      });
      const reason = await Promise.race([whenClosed(session, socket, streamsOpen), new Promise<string>((resolve) => (renewed = resolve))]);
      renewed = undefined;
      current = undefined;
      options.landing?.holds('');
      if (stopped) break;
      if (reason === RENEWED) {
        say(`token renewed: registering again with it through ${endpoint.label} (streams in flight finish on the old connection)`);
        handingOver = session;
        continue;
      }
      const delay = Math.round(minDelay * (0.5 + Math.random() / 2));
      say(reason === GOODBYE
        ? `${endpoint.label} is going away (streams in flight finish on the old connection); reconnecting in ${(delay / 1000).toFixed(1)} s`
        : `connection to ${endpoint.label} lost (${reason}); reconnecting in ${(delay / 1000).toFixed(1)} s`);
      await sleep(delay);
    }
    finish(0);
  })();

  return {
    done,
    stop() {
      stopped = true;
      wake?.();
      if (current) leaveGracefully(current);
      if (handingOver) leaveGracefully(handingOver);
    },
    tokenRenewed() {
      renewed?.(RENEWED);
    },
  };
}
