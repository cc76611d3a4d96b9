// Datagram UNIX sockets (SOCK_DGRAM, AF_UNIX), which Node lacks: the node-unix-socket addon, loaded on first
// use so a gateway or tunnel without unixgram routes or forwards starts without it (and on platforms it lacks).
import { createRequire } from 'node:module';

/** The part of node-unix-socket's `DgramSocket` used here (bind, sendTo a path, 'data' with the sender's path). */
export interface UnixDatagramSocket {
  bind(path: string): void;
  sendTo(buf: Buffer, offset: number, length: number, destPath: string, onWrite?: (err: Error | undefined) => void): void;
  on(event: 'data', listener: (payload: Buffer, from: string) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  removeAllListeners(event: 'data'): this;
  setRecvBufferSize(size: number): void;
  setSendBufferSize(size: number): void;
  close(): void;
}

export type UnixDatagramModule = { ok: true; create(): UnixDatagramSocket } | { ok: false; reason: string };

let loaded: UnixDatagramModule | undefined;

/** The addon, loaded once; on failure the reason (an unsupported platform, a missing build) says what to do. */
export function unixDatagramModule(): UnixDatagramModule {
  if (loaded) return loaded;
  try {
    const { DgramSocket } = createRequire(import.meta.url)('node-unix-socket') as { DgramSocket: new () => UnixDatagramSocket };
    loaded = { ok: true, create: () => new DgramSocket() };
  } catch (err) {
    const why = (err as Error).message.split('\n')[0] ?? String(err);
    loaded = { ok: false, reason: `datagram UNIX sockets need the node-unix-socket module, which does not load here (${process.platform}-${process.arch}): ${why}` };
  }
  return loaded;
}

/** Linux sun_path holds 107 bytes plus the terminator: a longer path cannot be bound or sent to. */
export const MAX_SOCKET_PATH_BYTES = 107;
