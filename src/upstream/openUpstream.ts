// Opens a byte stream to a resolved upstream within a deadline, whatever its kind: a UNIX socket, a TCP
// address, or a published service (a stream over the publisher's connection). Every forwarder uses this.
import { connect, type OnReadOpts } from 'node:net';
import type { Duplex } from 'node:stream';
import { refuse, type Refusal } from '../errors/refusal.ts';
import type { UpstreamTarget } from './upstreamTarget.ts';

/** An upstream that could not be opened: a Refusal (502 for the network, 503 when not published), marked `ok: false`. */
export type UpstreamRefusal = { readonly ok: false } & Refusal;

/** Marks a refusal as an upstream's. */
export function upstreamRefusal(refusal: Refusal): UpstreamRefusal {
  return { ok: false, ...refusal };
}

export type UpstreamConnection = { ok: true; stream: Duplex } | UpstreamRefusal;

/** What an authorization policy may know about an upstream before it is opened (facts), and the target pinned to it. */
export interface UpstreamInspection {
  target: UpstreamTarget;
  publisherFingerprint?: string;
  /** Set when the upstream cannot be reached at all; told only to an authorized caller. */
  unavailable?: Refusal;
}

/** Published services: found by user and service, reached by a stream over their publisher's connection. */
export interface StreamUpstreams {
  inspect(target: Extract<UpstreamTarget, { kind: 'published' }>): UpstreamInspection;
  /** `datagrams`: a stream carrying one UDP flow (DATAGRAM capsules) to a UDP service; otherwise a byte stream. */
  open(target: Extract<UpstreamTarget, { kind: 'published' }>, timeoutMs: number, datagrams?: boolean): Promise<UpstreamConnection>;
  /**
   * A request on replica `target.via` failed before any answer: if that replica is gone (lost, saying goodbye,
   * closed), the target pinned to another live replica with the same certificate (the policy decided on it);
   * undefined while the replica is still there (the failure is the service's, or a slow service's).
   */
  failover(target: Extract<UpstreamTarget, { kind: 'published' }>): Extract<UpstreamTarget, { kind: 'published' }> | undefined;
}

/** Socket options for a stream that carries a tunnel; a published service's stream has its own. */
export interface StreamOptions {
  /** Reads into a caller's buffer instead of a fresh Buffer per read (see net `onread`). */
  onread?: OnReadOpts;
  /** A published UDP service's stream: one flow's DATAGRAM capsules (upstream/publishedDatagrams.ts). */
  datagrams?: boolean;
}

export interface UpstreamOpener {
  inspect(target: UpstreamTarget): UpstreamInspection;
  open(target: UpstreamTarget, timeoutMs: number, options?: StreamOptions): Promise<UpstreamConnection>;
  /** Another replica for a request whose published replica went away before answering (StreamUpstreams.failover). */
  failover(target: UpstreamTarget): UpstreamTarget | undefined;
}

/** Where the HTTP forwarder's pools can connect by themselves; undefined for stream-only upstreams. */
export function socketAddress(target: UpstreamTarget): { socketPath: string; host: string } | { host: string; port: number } | undefined {
  if (target.kind === 'unix') return { socketPath: target.path, host: 'localhost' };
  if (target.kind === 'tcp') return { host: target.host, port: target.port };
  return undefined;
}

export function createUpstreamOpener(published: StreamUpstreams): UpstreamOpener {
  return {
    inspect: (target) => (target.kind === 'published' ? published.inspect(target) : { target }),
    open(target, timeoutMs, options) {
      if (target.kind === 'published') return published.open(target, timeoutMs, options?.datagrams);
      // Only udp routes have udp and unixgram upstreams, and they carry datagrams (udpUpstream.ts), never a stream.
      if (target.kind === 'udp' || target.kind === 'unixgram') return Promise.resolve(upstreamRefusal(refuse('GH_UPSTREAM_UNAVAILABLE', `${target.label} carries datagrams, not a stream`)));
      return openSocket(target, timeoutMs, options);
    },
    failover: (target) => (target.kind === 'published' ? published.failover(target) : undefined),
  };
}

/** The socket is half-open capable, so either direction can finish on its own. */
export function openSocket(target: Extract<UpstreamTarget, { kind: 'unix' | 'tcp' }>, timeoutMs: number, options: StreamOptions = {}): Promise<UpstreamConnection> {
  return new Promise((resolve) => {
    const socket =
      target.kind === 'unix'
        ? connect({ path: target.path, allowHalfOpen: true, ...options })
        : connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true, ...options });
    const fail = (reason: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(upstreamRefusal(refuse('GH_UPSTREAM_UNAVAILABLE', reason)));
    };
    const timer = setTimeout(() => fail(`connect timed out after ${timeoutMs} ms`), timeoutMs);
    const onError = (err: NodeJS.ErrnoException) => fail(err.code ?? err.message);
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      // Whoever takes the socket adds its own listener; until then an error must not crash the process.
      socket.on('error', () => {});
      resolve({ ok: true, stream: socket });
    });
  });
}
