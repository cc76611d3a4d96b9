// A UDP flow's upstream on a datagram UNIX socket (`unixgram:/path`): a socket of the flow's own, bound to a
// fresh path in the gateway's flow directory, sending to the target and taking datagrams from the target alone.
import { chmod, unlink } from 'node:fs/promises';
import { refuse } from '../errors/refusal.ts';
import { upstreamRefusal } from './openUpstream.ts';
import { flowSocketDirectory, flowSocketPath, FLOW_SOCKET_MODE } from './flowSocketDirectory.ts';
import type { DatagramUpstream, OpenedDatagramUpstream } from './udpUpstream.ts';
import { MAX_SOCKET_PATH_BYTES, unixDatagramModule, type UnixDatagramSocket } from './unixgramModule.ts';
import { identityAtPath, pinSocket, type PinnedSocket } from './unixgramTarget.ts';
import type { UpstreamTarget } from './upstreamTarget.ts';

type UnixgramTarget = Extract<UpstreamTarget, { kind: 'unixgram' }>;

/** Kernel buffers of a flow's socket, as for udp: flows. */
const SOCKET_BUFFER_BYTES = 1 << 20;
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
    this.#pin?.release();
    this.#pin = pinned.ok ? pinned.pin : undefined;
    if (!pinned.ok && !pinned.gone) this.end(`upstream socket replaced: ${pinned.reason}`);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#pin?.release();
    this.#pin = undefined;
  }
}

/** The flow's socket as a DatagramUpstream; `path` is removed when the flow closes. */
function unixgramUpstream(socket: UnixDatagramSocket, path: string, target: UnixgramTarget, first: PinnedSocket): DatagramUpstream {
  let open = true;
  let strangers = 0;
  let report: (reason: string) => void = () => undefined;
  let ended: (reason: string) => void = () => undefined;
  const watch = new TargetWatch(target, first, (reason) => ended(reason));
  // The addon closes the socket on a receive error: the flow cannot go on.
  socket.on('error', (err) => ended(`socket error: ${err.message}`));
  return {
    send(payload, sent) {
      const via = watch.via;
      if (!open || via === undefined) return sent();
      try {
        // The addon queues a send the kernel cannot take yet (EAGAIN) and calls back once it left: the flow's queue.
        socket.sendTo(payload, 0, payload.length, via, (err) => {
          sent();
          if (!err) return;
          report(err.message);
          watch.check();
        });
      } catch (err) {
        sent();
        report((err as Error).message);
      }
    },
    onDatagram(receive) {
      // Only the target's datagrams belong to the flow: anyone else who found this path is dropped and counted.
      socket.on('data', (payload, from) => (from === target.path && watch.via !== undefined ? receive(payload) : (strangers += 1)));
    },
    onError: (r) => void (report = r),
    onEnd: (e) => void (ended = e),
    strangers: () => strangers,
    close() {
      if (!open) return;
      open = false;
      watch.stop();
      socket.close();
      void unlink(path).catch(() => undefined);
    },
  };
}

/** A socket of the flow's own, bound in the gateway's flow directory; refused if the target is not a socket now. */
export async function openUnixgramUpstream(target: UnixgramTarget): Promise<OpenedDatagramUpstream> {
  const addon = unixDatagramModule();
  if (!addon.ok) return unavailable(addon.reason);
  if (Buffer.byteLength(target.path) > MAX_SOCKET_PATH_BYTES) return unavailable(`upstream socket path ${target.path} is longer than ${MAX_SOCKET_PATH_BYTES} bytes`);
  const directory = await flowSocketDirectory();
  if (!directory.ok) return unavailable(directory.reason);
  const first = await pinSocket(target);
  if (!first.ok) return unavailable(first.reason);
  const path = flowSocketPath(directory.dir);
  let socket: UnixDatagramSocket | undefined;
  try {
    socket = addon.create();
    socket.bind(path);
    await chmod(path, FLOW_SOCKET_MODE);
    socket.setRecvBufferSize(SOCKET_BUFFER_BYTES);
    socket.setSendBufferSize(SOCKET_BUFFER_BYTES);
  } catch (err) {
    socket?.close();
    first.pin.release();
    await unlink(path).catch(() => undefined);
    return unavailable(`cannot bind the flow's socket ${path}: ${(err as Error).message}`);
  }
  return { ok: true, upstream: unixgramUpstream(socket, path, target, first.pin) };
}
