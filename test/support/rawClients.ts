// Hand-written clients for the listener tests: raw TCP and UNIX sockets that send nothing or garbage,
// TLS clients that speak HTTP/1.1 byte by byte, and the gateway's open file descriptors.
import { existsSync, readdirSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { Harness } from './gatewayHarness.ts';
import type { TestClientCertificate } from './pki.ts';

export const hasProcFd = existsSync(`/proc/${process.pid}/fd`);

/** Open file descriptors of a process (Linux). */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns true or `timeoutMs` passes; returns whether it did. */
export async function eventually(probe: () => boolean, timeoutMs: number, everyMs = 50): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (probe()) return true;
    if (Date.now() > until) return false;
    await sleep(everyMs);
  }
}

/** A socket the test watches: what it received and when the gateway closed it. */
export interface Watched<S extends Socket> {
  socket: S;
  openedAt: number;
  received(): string;
  /** Resolves with the ms from `openedAt` to the socket's close. */
  closed: Promise<number>;
  isClosed(): boolean;
}

function watch<S extends Socket>(socket: S, openedAt: number): Watched<S> {
  let data = '';
  let done = false;
  socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
  socket.on('error', () => {});
  const closed = new Promise<number>((resolve) =>
    socket.once('close', () => {
      done = true;
      resolve(performance.now() - openedAt);
    }),
  );
  return { socket, openedAt, received: () => data, closed, isClosed: () => done };
}

/** A raw TCP connection to the gateway (no TLS); `localAddress` picks the source, e.g. 127.0.0.2. */
export function rawTcp(port: number, localAddress = '127.0.0.1'): Promise<Watched<Socket>> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port, localAddress }, () => resolve(watch(socket, performance.now())));
    socket.once('error', reject);
  });
}

/** A raw connection to a UNIX-socket listener. */
export function rawUnix(path: string): Promise<Watched<Socket>> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ path }, () => resolve(watch(socket, performance.now())));
    socket.once('error', reject);
  });
}

/** A TLS client with `client`'s certificate; `openedAt` is when the handshake finished. */
export function tlsClient(h: Harness, client: TestClientCertificate, extra: Partial<ConnectionOptions> = {}): Promise<Watched<TLSSocket>> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: h.port, servername: 'localhost', ca: h.pki.caCert, cert: client.cert, key: client.key, ...extra }, () =>
      resolve(watch(socket, performance.now())),
    );
    socket.once('error', reject);
  });
}

/** Resolves when `w` has received a complete HTTP response head (the status line and headers). */
export async function responseHead(w: Watched<Socket>, timeoutMs = 10_000): Promise<{ status: number; head: string }> {
  const ok = await eventually(() => w.received().includes('\r\n\r\n') || w.isClosed(), timeoutMs, 20);
  const head = w.received().split('\r\n\r\n')[0] ?? '';
  if (!ok || !head.startsWith('HTTP/1.1 ')) return { status: 0, head };
  return { status: Number(head.slice(9, 12)), head };
}
