// What a soak run opened and what went wrong, kept by client source address (`ip:port`) so that
// the gateway's audit log can be checked connection by connection afterwards.
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

/** What the audit log must show for one client connection. */
export type Expectation = 'connection' | 'reject';

export class Ledger {
  /** source -> connections expecting one connection.open and one connection.close each. */
  readonly connections = new Map<string, number>();
  /** source -> connections expecting one tls.reject each (and no connection.open). */
  readonly rejects = new Map<string, number>();
  /** source -> tunnels expecting one tunnel.open and one tunnel.close each. */
  readonly tunnels = new Map<string, number>();
  readonly errors = new Map<string, number>();
  readonly examples: string[] = [];
  readonly counts = new Map<string, number>();

  expect(kind: Expectation | 'tunnel', source: string): void {
    const map = kind === 'connection' ? this.connections : kind === 'reject' ? this.rejects : this.tunnels;
    map.set(source, (map.get(source) ?? 0) + 1);
  }

  /** An unexpected event: an echo mismatch, a dropped tunnel, a 5xx, a hostile client served. */
  error(kind: string, detail = ''): void {
    this.errors.set(kind, (this.errors.get(kind) ?? 0) + 1);
    if (this.examples.length < 20) this.examples.push(`${new Date().toISOString()} ${kind}${detail ? `: ${detail}` : ''}`);
  }

  count(what: string, n = 1): void {
    this.counts.set(what, (this.counts.get(what) ?? 0) + n);
  }

  get errorTotal(): number {
    let n = 0;
    for (const v of this.errors.values()) n += v;
    return n;
  }
}

export interface ClientCredentials {
  ca: string;
  cert?: string;
  key?: string;
}

export const sourceOf = (socket: Socket): string => `${socket.localAddress}:${socket.localPort}`;

/** A TCP connection to the gateway from `localAddress`, with its source known once connected. */
export function tcpTo(port: number, localAddress: string): Promise<{ socket: Socket; source: string }> {
  return new Promise((ok, fail) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress });
    socket.once('error', fail);
    socket.once('connect', () => {
      socket.off('error', fail);
      ok({ socket, source: sourceOf(socket) });
    });
  });
}

/** TLS over an already connected socket; resolves at `secureConnect`. */
export function tlsOver(socket: Socket, creds: ClientCredentials): Promise<TLSSocket> {
  return new Promise((ok, fail) => {
    const tls = tlsConnect({ socket, servername: 'localhost', ca: creds.ca, ...(creds.cert !== undefined && { cert: creds.cert, key: creds.key }) });
    tls.once('error', fail);
    tls.once('secureConnect', () => {
      tls.off('error', fail);
      ok(tls);
    });
  });
}

/** Reads an HTTP response head from a raw stream: its status, or undefined if the stream ended first. */
export function readStatus(stream: TLSSocket | Socket, timeoutMs: number): Promise<{ status: number | undefined; rest: Buffer }> {
  return new Promise((ok) => {
    let head = Buffer.alloc(0);
    const done = (status: number | undefined, rest = Buffer.alloc(0)) => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('close', onClose);
      ok({ status, rest });
    };
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head.subarray(0, end).toString('latin1'));
      done(m ? Number(m[1]) : undefined, head.subarray(end + 4));
    };
    const onClose = () => done(undefined);
    const timer = setTimeout(() => done(undefined), timeoutMs);
    stream.on('data', onData);
    stream.once('close', onClose);
    stream.on('error', () => {});
  });
}

/** Resolves when `socket` closes, with whether it did within `timeoutMs`. */
export function closedWithin(socket: Socket, timeoutMs: number): Promise<boolean> {
  if (socket.closed) return Promise.resolve(true);
  return new Promise((ok) => {
    const timer = setTimeout(() => ok(false), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      ok(true);
    });
  });
}
