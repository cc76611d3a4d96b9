// `gatehouse publish` kept alive: register, serve streams, and when the connection goes (gateway restart,
// network loss) say so on stderr and come back with backoff and jitter, registering the same services again.
import type { ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { GatewayEndpoint } from './gatewayEndpoint.ts';
import { registerPublisher } from './publishConnection.ts';
import { targetLabel, type PublishSpec } from './publishSpec.ts';
import { serveStreams } from './publishStreams.ts';
import { describeFailure, type TunnelFailure } from './tunnelFailure.ts';
import { socketErrorWords, watchLiveness } from '../upstream/sessionLiveness.ts';

export interface PublisherOptions {
  endpoint: GatewayEndpoint;
  specs: readonly PublishSpec[];
  say: (line: string) => void;
  verbose: boolean;
  /** Backoff: first retry after about `minDelayMs`, doubling up to `maxDelayMs`, each scaled by a random 0.5-1. */
  minDelayMs?: number;
  maxDelayMs?: number;
}

export interface RunningPublisher {
  /** Resolves with an exit code when the publisher stops for good (a refusal that retrying cannot fix, or stop()). */
  readonly done: Promise<number>;
  stop(): void;
}

/** Refusals that the same request will meet again: retrying would only fill the audit log. */
function permanent(failure: TunnelFailure): boolean {
  return failure.kind === 'refused' && [400, 401, 403, 404, 426].includes(failure.status);
}

/** A failure to reach the gateway at all (refused, reset, timed out): it writes no record, so retrying soon costs nothing. */
function unreachable(failure: TunnelFailure): boolean {
  return failure.kind === 'network';
}

/** Network failures are retried at most this far apart: a restarted gateway is served again within about a second. */
const UNREACHABLE_MAX_DELAY_MS = 1_000;

/**
 * Resolves when the session is gone, with why. Pings the gateway (sessionLiveness.ts) so a silent network
 * loss is noticed, within about a second while streams are carried. `streams()` counts those open.
 */
function whenClosed(session: ServerHttp2Session, socket: TLSSocket, streams: () => number): Promise<string> {
  return new Promise((resolve) => {
    let reason: string | undefined;
    // A vanished gateway: end the streams now, as errors, rather than wait for closes a dead connection cannot carry.
    const lose = (why: string) => {
      reason ??= why;
      if (!session.destroyed) session.destroy(new Error(`connection to the gateway lost (${why})`));
    };
    socket.prependListener('error', (err: NodeJS.ErrnoException) => lose(socketErrorWords(err)));
    socket.prependOnceListener('end', () => lose('connection closed'));
    socket.prependOnceListener('close', () => lose('connection closed'));
    session.on('error', (err: NodeJS.ErrnoException) => (reason ??= err.code ?? err.message));
    session.on('goaway', () => (reason ??= 'the gateway is going away'));
    const liveness = watchLiveness(session, () => streams() > 0, (why) => lose(why === 'ping timeout' ? 'no answer to a ping' : why));
    session.on('stream', () => liveness.nudge());
    session.once('close', () => {
      liveness.stop();
      socket.destroy();
      resolve(reason ?? 'connection closed');
    });
  });
}

export function runPublisher(options: PublisherOptions): RunningPublisher {
  const { endpoint, specs, say } = options;
  const minDelay = options.minDelayMs ?? 500;
  const maxDelay = options.maxDelayMs ?? 8_000;
  const services = specs.map((s) => s.service);
  let stopped = false;
  let current: ServerHttp2Session | undefined;
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
    let everRegistered = false;
    while (!stopped) {
      const registration = await registerPublisher(endpoint, services);
      if (stopped) {
        if (registration.ok) registration.session.close();
        break;
      }
      if (!registration.ok) {
        const line = describeFailure(registration.failure, endpoint.label, services.join(', ')).replace(/refused route/, 'refused publishing');
        if (permanent(registration.failure)) {
          say(`error: ${line}`);
          return finish(4);
        }
        // Full jitter on an exponential step: many publishers cut off by one restart do not return in step.
        // A gateway that cannot be reached (restarting, behind a balancer with no backend) is tried again
        // within a second; one that refuses (a record each time) is left alone for longer and longer.
        const cap = unreachable(registration.failure) ? Math.min(maxDelay, UNREACHABLE_MAX_DELAY_MS) : maxDelay;
        const step = Math.min(cap, minDelay * 2 ** failures);
        const delay = Math.round(step * (0.5 + Math.random() / 2));
        failures += 1;
        say(`${line}; retrying in ${(delay / 1000).toFixed(1)} s`);
        await sleep(delay);
        continue;
      }
      failures = 0;
      const { session, socket, user, publisherId } = registration;
      current = session;
      say(`${everRegistered ? 're-registered' : 'published'} as ${user} through ${endpoint.label} (publisher ${publisherId}): ${specs.map((s) => `${s.service} -> ${targetLabel(s.target)}`).join(', ')}`);
      everRegistered = true;
      let streamsOpen = 0;
      session.on('stream', (stream: ServerHttp2Stream) => {
        streamsOpen += 1;
        stream.once('close', () => (streamsOpen -= 1));
      });
      serveStreams(session, specs, {
        refused: (service, why) => say(`stream for ${service} refused: ${why}`),
        ...(options.verbose && {
          opened: (service: string) => say(`stream for ${service} opened`),
          closed: (service: string, summary: string) => say(`stream for ${service} closed: ${summary}`),
        }),
      });
      const reason = await whenClosed(session, socket, () => streamsOpen);
      current = undefined;
      if (stopped) break;
      const delay = Math.round(minDelay * (0.5 + Math.random() / 2));
      say(`connection to ${endpoint.label} lost (${reason}); reconnecting in ${(delay / 1000).toFixed(1)} s`);
      await sleep(delay);
    }
    finish(0);
  })();

  return {
    done,
    stop() {
      stopped = true;
      wake?.();
      // GOAWAY: the gateway opens no new streams; streams in flight may finish.
      current?.close();
    },
  };
}
