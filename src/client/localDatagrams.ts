// The local end of `-L udp:` and `-L unixgram:` forwards: a UDP port or a private datagram UNIX socket, as
// datagrams from local peers (each with a key for its flow) and a way to answer the peer that can be answered.
import { createSocket } from 'node:dgram';
import { isIP } from 'node:net';
import { bindDatagramSocket, type BoundDatagramSocket } from '../upstream/boundDatagramSocket.ts';
import { MAX_SOCKET_PATH_BYTES, unixDatagramModule } from '../upstream/unixgramModule.ts';
import { listenerLabel, type ForwardSpec } from './forwardSpec.ts';
import { bindFailure } from './localListeners.ts';
import { preparePrivateSocketPath } from './privateSocket.ts';

/** Who sent a local datagram: its flow's key and, if it can be answered, how. */
export interface LocalPeer {
  key: string;
  /** Absent for a sender with no address of its own (an unbound datagram UNIX socket): nothing can reach it. */
  reply?: (payload: Buffer) => void;
}

export interface LocalDatagrams {
  label: string;
  port?: number;
  onDatagram(receive: (payload: Buffer, peer: LocalPeer) => void): void;
  stopReceiving(): void;
  /** Closes the socket (and removes a UNIX socket's file). */
  close(): Promise<void>;
}

export type LocalDatagramsResult = { ok: true; local: LocalDatagrams } | { ok: false; error: string };

/** Senders without a bound path share one flow under this key. */
export const UNBOUND_SENDERS = 'unbound senders';

// A burst from the local sender waits in the kernel while this process encrypts the previous one: room for ~4 MiB.
const LOCAL_BUFFER_BYTES = 4 << 20;

async function bindUdp(spec: Extract<ForwardSpec, { kind: 'udp' }>, say: (line: string) => void): Promise<LocalDatagramsResult> {
  const socket = createSocket({ type: isIP(spec.host) === 6 ? 'udp6' : 'udp4', recvBufferSize: LOCAL_BUFFER_BYTES, sendBufferSize: LOCAL_BUFFER_BYTES });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(spec.port, spec.host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    return bindFailure(spec, err);
  }
  const port = socket.address().port;
  const label = listenerLabel(spec, port);
  let closed = false;
  socket.on('error', (err) => say(`error: listener ${label}: ${err.message}`));
  return {
    ok: true,
    local: {
      label,
      port,
      onDatagram(receive) {
        socket.on('message', (payload, rinfo) => {
          const key = `${rinfo.family === 'IPv6' ? `[${rinfo.address}]` : rinfo.address}:${rinfo.port}`;
          // send() on a closed socket throws.
          receive(payload, { key, reply: (answer) => void (closed || socket.send(answer, rinfo.port, rinfo.address)) });
        });
      },
      stopReceiving: () => void socket.removeAllListeners('message'),
      close() {
        closed = true;
        socket.close();
        return Promise.resolve();
      },
    },
  };
}

/**
 * A datagram UNIX socket in a private directory, mode 0600 (the checks of `-L unix:`). A sender is answered at
 * the absolute path it is bound to; one bound nowhere (or to a relative path, which means nothing from here)
 * cannot be answered, and shares one flow with the others like it.
 */
async function bindUnixgram(spec: Extract<ForwardSpec, { kind: 'unixgram' }>, say: (line: string) => void): Promise<LocalDatagramsResult> {
  const addon = unixDatagramModule();
  if (!addon.ok) return { ok: false, error: `cannot listen on ${listenerLabel(spec)}: ${addon.reason}` };
  const prepared = await preparePrivateSocketPath(spec.path);
  if (!prepared.ok) return prepared;
  const path = prepared.path;
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) return { ok: false, error: `cannot listen on unixgram:${path}: longer than ${MAX_SOCKET_PATH_BYTES} bytes` };
  let socket: BoundDatagramSocket;
  try {
    socket = bindDatagramSocket({ create: addon.create, path, mode: 0o600, bufferBytes: LOCAL_BUFFER_BYTES });
  } catch (err) {
    return bindFailure(spec, err);
  }
  const label = `unixgram:${path}`;
  socket.onFailure((reason) => say(`error: listener ${label}: ${reason}`));
  // A sender that left, or does not read, loses its answer, as UDP's would be lost.
  const answer = (to: string) => (payload: Buffer) => socket.send(payload, to, () => undefined);
  return {
    ok: true,
    local: {
      label,
      onDatagram(receive) {
        socket.onDatagram((payload, from) => receive(payload, from.startsWith('/') ? { key: from, reply: answer(from) } : { key: UNBOUND_SENDERS }));
      },
      stopReceiving: () => socket.stopReceiving(),
      close() {
        socket.close();
        return Promise.resolve();
      },
    },
  };
}

export function bindLocalDatagrams(spec: Extract<ForwardSpec, { kind: 'udp' | 'unixgram' }>, say: (line: string) => void): Promise<LocalDatagramsResult> {
  return spec.kind === 'udp' ? bindUdp(spec, say) : bindUnixgram(spec, say);
}
