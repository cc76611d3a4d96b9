// Opens the upstream side of one UDP flow: a `DatagramUpstream` the flow carries datagrams to and from,
// whatever the target (`udp:host:port` here; other datagram targets plug in through `openDatagramTarget`).
import { createSocket, type Socket } from 'node:dgram';
import { isIP } from 'node:net';
import { refuse } from '../errors/refusal.ts';
import { upstreamRefusal, type UpstreamRefusal } from './openUpstream.ts';
import { openPublishedDatagrams, type PublishedDatagramStreams } from './publishedDatagrams.ts';
import type { UpstreamTarget } from './upstreamTarget.ts';
import { openUnixgramUpstream } from './unixgramUpstream.ts';

/** One flow's upstream, as the flow sees it: datagrams each way, errors that do not end it, and its end. */
export interface DatagramUpstream {
  /** Sends one datagram (the upstream owns `payload` from now on); `sent` once it left this process. */
  send(payload: Buffer, sent: () => void): void;
  /** Datagrams from the upstream (only from the target itself). */
  onDatagram(receive: (payload: Buffer) => void): void;
  /** Errors that do not end the flow (an ICMP unreachable on UDP: UDP is lossy, the flow goes on). */
  onError(report: (reason: string) => void): void;
  /** The upstream ended on its own (a publisher gone, a unixgram socket replaced by one that fails its checks): the flow ends with this reason. */
  onEnd(ended: (reason: string) => void): void;
  /** Datagrams dropped for coming from elsewhere than the target (absent where the kernel filters them). */
  strangers?(): number;
  close(): void;
}

export type OpenedDatagramUpstream = { ok: true; upstream: DatagramUpstream } | UpstreamRefusal;

/** Kernel buffers of a flow's upstream socket: room for a burst of full-size datagrams each way. */
const SOCKET_BUFFER_BYTES = 1 << 20;

/** A connected UDP socket as a flow's upstream: the kernel passes up only the target's own datagrams. */
function socketUpstream(socket: Socket): DatagramUpstream {
  let open = true;
  return {
    send: (payload, sent) => (open ? socket.send(payload, sent) : undefined),
    onDatagram: (receive) => void socket.on('message', receive),
    onError(report) {
      socket.removeAllListeners('error');
      socket.on('error', (err: NodeJS.ErrnoException) => report(err.code ?? err.message));
    },
    onEnd: () => undefined,
    close() {
      if (!open) return;
      open = false;
      socket.close();
    },
  };
}

/** A socket of the target's family, connected to it (a name is resolved by the kernel's resolver, first address). */
export function openUdpUpstream(target: Extract<UpstreamTarget, { kind: 'udp' }>, timeoutMs: number): Promise<OpenedDatagramUpstream> {
  return new Promise((resolve) => {
    const socket = createSocket({ type: isIP(target.host) === 6 ? 'udp6' : 'udp4', recvBufferSize: SOCKET_BUFFER_BYTES, sendBufferSize: SOCKET_BUFFER_BYTES });
    let settled = false;
    const fail = (reason: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.close();
      resolve(upstreamRefusal(refuse('GH_UPSTREAM_UNAVAILABLE', reason)));
    };
    const timer = setTimeout(() => fail(`connect timed out after ${timeoutMs} ms`), timeoutMs);
    socket.once('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
    // A name that does not resolve comes back through the callback (Node passes the lookup's error to it, not to 'error').
    socket.connect(target.port, target.host, (err?: NodeJS.ErrnoException) => {
      if (err) return fail(err.code ?? err.message);
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeAllListeners('error');
      // Whoever carries the flow adds its own listener; until then an error (an ICMP unreachable) must not crash the process.
      socket.on('error', () => {});
      resolve({ ok: true, upstream: socketUpstream(socket) });
    });
  });
}

/**
 * The upstream of a flow to `target`, or the refusal the client gets. `published` opens publisher streams
 * (published: targets), each holding up to `queueBytes` (the flow's queue) of datagrams not yet sent.
 */
export function openDatagramTarget(target: UpstreamTarget, timeoutMs: number, published?: PublishedDatagramStreams): Promise<OpenedDatagramUpstream> {
  if (target.kind === 'udp') return openUdpUpstream(target, timeoutMs);
  if (target.kind === 'published' && published) return openPublishedDatagrams(target, timeoutMs, published);
  if (target.kind === 'unixgram') return openUnixgramUpstream(target);
  return Promise.resolve(upstreamRefusal(refuse('GH_UPSTREAM_UNAVAILABLE', `${target.label} is not a datagram upstream`)));
}
