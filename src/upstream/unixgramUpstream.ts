// A UDP flow's upstream on a datagram UNIX socket (`unixgram:/path`): a socket of the flow's own, bound to a
// fresh path in the gateway's flow directory, sending to the target and taking datagrams from the target alone.
import { lstat, unlink, chmod } from 'node:fs/promises';
import { refuse } from '../errors/refusal.ts';
import { upstreamRefusal } from './openUpstream.ts';
import { flowSocketDirectory, flowSocketPath, FLOW_SOCKET_MODE } from './flowSocketDirectory.ts';
import type { DatagramUpstream, OpenedDatagramUpstream } from './udpUpstream.ts';
import { MAX_SOCKET_PATH_BYTES, unixDatagramModule, type UnixDatagramSocket } from './unixgramModule.ts';
import { verifySocketOwner, type UpstreamTarget } from './upstreamTarget.ts';

type UnixgramTarget = Extract<UpstreamTarget, { kind: 'unixgram' }>;

/** Kernel buffers of a flow's socket, as for udp: flows. */
const SOCKET_BUFFER_BYTES = 1 << 20;
/** How often a flow whose socket has an owner looks at whether the target path is still the socket it checked. */
const RECHECK_MS = 1000;

const unavailable = (reason: string) => upstreamRefusal(refuse('GH_UPSTREAM_UNAVAILABLE', reason));

/**
 * The target's identity, or why it is not a socket one could send to. A socket created after another was
 * removed often gets the freed inode number: its owner and change time tell them apart.
 */
async function socketIdentity(path: string): Promise<{ ok: true; id: string } | { ok: false; reason: string }> {
  try {
    const st = await lstat(path);
    if (!st.isSocket()) return { ok: false, reason: `upstream ${path} is not a socket` };
    return { ok: true, id: `${st.dev}:${st.ino}:${st.uid}:${st.ctimeMs}:${st.birthtimeMs}` };
  } catch (err) {
    return { ok: false, reason: `upstream socket ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  }
}

/**
 * A datagram flow reaches the target by its path on every send, not by a connection: if the socket is removed
 * and another created there, later datagrams go to the new one. For a route with `socketOwner`, the new socket
 * is checked as the first was (its owner) before any datagram goes to it or is taken from it; one that fails
 * ends the flow. What remains is a window of up to RECHECK_MS after a replacement.
 */
function ownerWatch(target: UnixgramTarget, firstId: string, end: (reason: string) => void): { trusted(): boolean; stop(): void } {
  const owner = target.owner;
  if (owner === undefined) return { trusted: () => true, stop: () => undefined };
  let id: string | undefined = firstId;
  let checking = false;
  const timer = setInterval(() => {
    if (checking) return;
    checking = true;
    void (async () => {
      const now = await socketIdentity(target.path);
      if (now.ok && now.id === id) return;
      id = undefined;
      if (!now.ok) return; // gone for now: nothing is sent to it or taken from it until a socket is back
      const check = await verifySocketOwner(target.path, owner);
      if (check.ok) id = now.id;
      else end(`upstream socket replaced: ${check.reason}`);
    })().finally(() => (checking = false));
  }, RECHECK_MS);
  timer.unref();
  return { trusted: () => id !== undefined, stop: () => clearInterval(timer) };
}

/** The flow's socket as a DatagramUpstream; `path` is removed when the flow closes. */
function unixgramUpstream(socket: UnixDatagramSocket, path: string, target: UnixgramTarget, firstId: string): DatagramUpstream {
  let open = true;
  let strangers = 0;
  let report: (reason: string) => void = () => undefined;
  let ended: (reason: string) => void = () => undefined;
  const watch = ownerWatch(target, firstId, (reason) => ended(reason));
  // The addon closes the socket on a receive error: the flow cannot go on.
  socket.on('error', (err) => ended(`socket error: ${err.message}`));
  return {
    send(payload, sent) {
      if (!open || !watch.trusted()) return sent();
      try {
        // The addon queues a send the kernel cannot take yet (EAGAIN) and calls back once it left: the flow's queue.
        socket.sendTo(payload, 0, payload.length, target.path, (err) => {
          sent();
          if (err) report(err.message);
        });
      } catch (err) {
        sent();
        report((err as Error).message);
      }
    },
    onDatagram(receive) {
      // Only the target's datagrams belong to the flow: anyone else who found this path is dropped and counted.
      socket.on('data', (payload, from) => (from === target.path && watch.trusted() ? receive(payload) : (strangers += 1)));
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
  const first = await socketIdentity(target.path);
  if (!first.ok) return unavailable(first.reason);
  const directory = await flowSocketDirectory();
  if (!directory.ok) return unavailable(directory.reason);
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
    await unlink(path).catch(() => undefined);
    return unavailable(`cannot bind the flow's socket ${path}: ${(err as Error).message}`);
  }
  return { ok: true, upstream: unixgramUpstream(socket, path, target, first.id) };
}
