// A UDP flow's upstream on a datagram UNIX socket (`unixgram:/path`): a socket of the flow's own, bound to a
// fresh path in the gateway's flow directory, sending to the target and taking datagrams from the target alone.
import { refuse } from '../errors/refusal.ts';
import { upstreamRefusal } from './openUpstream.ts';
import { flowSocketDirectory, flowSocketPath } from './flowSocketDirectory.ts';
import type { DatagramUpstream, OpenedDatagramUpstream } from './udpUpstream.ts';
import { bindReceiverWithSenders, RECEIVER_FULL, type BoundDatagramSocket } from './boundDatagramSocket.ts';
import { MAX_SOCKET_PATH_BYTES, unixDatagramModule } from './unixgramModule.ts';
import { identityAtPath, pinSocket, type PinnedSocket } from './unixgramTarget.ts';
import type { UpstreamTarget } from './upstreamTarget.ts';

type UnixgramTarget = Extract<UpstreamTarget, { kind: 'unixgram' }>;

/** Kernel buffers of a flow's socket, as for udp: flows. */
const SOCKET_BUFFER_BYTES = 1 << 20;
/** The longest pause before a datagram the service had no room for is sent again. */
const MAX_PAUSE_MS = 50;
/** How often a flow looks whether the socket at the target's path is still the one it sends to. */
const RECHECK_MS = 1000;

const unavailable = (reason: string) => upstreamRefusal(refuse('GH_UPSTREAM_UNAVAILABLE', reason));

/**
 * A service that restarts removes its socket and binds a new one at the same path: the flow follows it, with
 * the checks of the first (pinSocket: a socket, no symlink, its `socketOwner`'s). Until one is there, nothing
 * is sent or taken; one that fails the checks ends the flow. Looked at every RECHECK_MS, and at once when a
 * send fails (the pinned socket closed).
 */
class TargetWatch {
  #pin: PinnedSocket | undefined;
  #checking = false;
  #stopped = false;
  readonly #timer: NodeJS.Timeout;
  readonly target: UnixgramTarget;
  readonly end: (reason: string) => void;

  constructor(target: UnixgramTarget, first: PinnedSocket, end: (reason: string) => void) {
    this.target = target;
    this.end = end;
    this.#pin = first;
    this.#timer = setInterval(() => this.check(), RECHECK_MS);
    this.#timer.unref();
  }

  /** Where to send now; undefined while no checked socket is there. */
  get via(): string | undefined {
    return this.#pin?.via;
  }

  check(): void {
    if (this.#checking) return;
    this.#checking = true;
    void this.#recheck().finally(() => (this.#checking = false));
  }

  async #recheck(): Promise<void> {
    const now = await identityAtPath(this.target);
    if (now !== undefined && now === this.#pin?.id) return;
    const pinned = await pinSocket(this.target);
    // The flow ended meanwhile: the descriptor just opened is not kept.
    if (this.#stopped) return void (pinned.ok && pinned.pin.release());
    // `via` names the descriptor: it is closed only once no send can use it (sends use `via` synchronously).
    this.#pin?.release();
    this.#pin = pinned.ok ? pinned.pin : undefined;
    if (!pinned.ok && !pinned.gone) this.end(`upstream socket replaced: ${pinned.reason}`);
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#pin?.release();
    this.#pin = undefined;
  }
}

/**
 * The flow's socket as a DatagramUpstream. A service's socket takes only a few datagrams ahead of its reads
 * (net.unix.max_dgram_qlen, 10 by default): a datagram it has no room for waits in the flow's queue (the flow
 * bounds it: limits.udp.queuePackets) and is sent again after a pause that doubles up to MAX_PAUSE_MS.
 */
function unixgramUpstream(socket: BoundDatagramSocket, target: UnixgramTarget, first: PinnedSocket): DatagramUpstream {
  let open = true;
  let strangers = 0;
  let report: (reason: string) => void = () => undefined;
  let ended: (reason: string) => void = () => undefined;
  const watch = new TargetWatch(target, first, (reason) => ended(reason));
  socket.onFailure((reason) => ended(reason));
  const waiting: Array<{ payload: Buffer; sent: () => void }> = [];
  let pause: NodeJS.Timeout | undefined;
  let pauseMs = 0;
  const flush = () => {
    while (waiting.length > 0 && pause === undefined) {
      const next = waiting[0] as { payload: Buffer; sent: () => void };
      const via = watch.via;
      let dropped: string | undefined;
      if (open && via !== undefined) socket.send(next.payload, via, (reason) => (dropped = reason));
      if (dropped === RECEIVER_FULL) {
        pauseMs = Math.min(Math.max(1, pauseMs * 2), MAX_PAUSE_MS);
        pause = setTimeout(() => {
          pause = undefined;
          flush();
        }, pauseMs);
        return;
      }
      pauseMs = 0;
      waiting.shift();
      next.sent();
      if (dropped !== undefined) {
        report(dropped);
        watch.check();
      }
    }
  };
  return {
    send(payload, sent) {
      waiting.push({ payload, sent });
      flush();
    },
    onDatagram(receive) {
      // Only the target's datagrams belong to the flow: anyone else who may send here (the gateway's user, root, or
      // with unixgramReplies: any-local-user every local user: /proc/net/unix lists the path) is dropped and counted.
      socket.onDatagram((payload, from) => (from === target.path && watch.via !== undefined ? receive(payload) : (strangers += 1)));
    },
    onError: (r) => void (report = r),
    onEnd: (e) => void (ended = e),
    strangers: () => strangers,
    close() {
      if (!open) return;
      open = false;
      clearTimeout(pause);
      pause = undefined;
      // What still waits is dropped with the flow (the flow's own count of it ends here too).
      for (const { sent } of waiting.splice(0)) sent();
      watch.stop();
      socket.close();
    },
  };
}

/** A socket of the flow's own, bound in the gateway's flow directory; refused if the target is not a socket now. */
export async function openUnixgramUpstream(target: UnixgramTarget): Promise<OpenedDatagramUpstream> {
  const addon = unixDatagramModule();
  if (!addon.ok) return unavailable(addon.reason);
  if (Buffer.byteLength(target.path) > MAX_SOCKET_PATH_BYTES) return unavailable(`upstream socket path ${target.path} is longer than ${MAX_SOCKET_PATH_BYTES} bytes`);
  // Private unless the route lets a service run by another user reply (flowSocketDirectory.ts says what that risks).
  const directory = await flowSocketDirectory(target.replies ?? 'gateway-user');
  if (!directory.ok) return unavailable(directory.reason);
  const first = await pinSocket(target);
  if (!first.ok) return unavailable(first.reason);
  const path = flowSocketPath(directory.dir);
  try {
    const socket = bindReceiverWithSenders({ create: addon.create, path, mode: directory.socketMode, bufferBytes: SOCKET_BUFFER_BYTES });
    return { ok: true, upstream: unixgramUpstream(socket, target, first.pin) };
  } catch (err) {
    first.pin.release();
    return unavailable(`cannot bind the flow's socket ${path}: ${(err as Error).message}`);
  }
}
