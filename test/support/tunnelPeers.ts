// Both ends of a gateway tunnel for tests: raw UNIX-socket services (counting their connections) and
// hand-written clients for CONNECT and the WebSocket tunnel endpoint, behind one byte-stream interface.
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { EOF_MESSAGE, TUNNEL_HIGH_WATER, TUNNEL_PATH, TUNNEL_SUBPROTOCOL, controlType } from '../../src/tunnel/tunnelProtocol.ts';
import type { Harness } from './gatewayHarness.ts';
import type { TestClientCertificate } from './pki.ts';

/** Two routes for any user with a token: HTTP `demo` to run/demo.sock and the tcp tunnel `raw` to run/raw.sock. */
export const demoAndRawRoutes = `  - name: demo
    path: /demo/
    upstream: unix:run/demo.sock
    policy: |
      allow if user($u);
  - name: raw
    protocols: [tcp]
    upstream: unix:run/raw.sock
    policy: |
      allow if user($u);
`;

export interface UnixService {
  server: Server;
  /** Connections accepted so far. */
  connections(): number;
  close(): void;
}

/** A raw stream service on a UNIX socket; every connection may half-close. */
export async function unixService(path: string, onConnection: (socket: Socket) => void): Promise<UnixService> {
  mkdirSync(dirname(path), { recursive: true });
  rmSync(path, { force: true });
  let count = 0;
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    count += 1;
    socket.on('error', () => {});
    onConnection(socket);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, () => resolve()));
  return { server, connections: () => count, close: () => server.close() };
}

/** The client end of a tunnel, whichever way it travels. */
export interface TunnelEnd {
  /** Resolves once the bytes are queued and the transport is below its high-water mark. */
  write(chunk: Buffer): Promise<void>;
  /** Half-close: no more bytes from this side. */
  end(): void;
  onData(listener: (chunk: Buffer) => void): void;
  /** Resolves when the gateway says the upstream finished writing. */
  readonly peerEnded: Promise<void>;
  /** Resolves when the tunnel is gone; for WebSocket with the close code and reason. */
  readonly closed: Promise<{ code?: number; reason?: string }>;
  pause(): void;
  resume(): void;
  destroy(): void;
}

export type Refusal = { ok: false; status: number; body: string };
export type Opened = { ok: true; end: TunnelEnd };

function tlsOptions(h: Harness, client: TestClientCertificate) {
  return { host: 'localhost', port: h.port, servername: 'localhost', ca: h.pki.caCert, cert: client.cert, key: client.key };
}

/** `socket` arrives paused with nothing lost; it flows once someone listens, unless the test paused it. */
function socketEnd(socket: TLSSocket): TunnelEnd {
  let held = false;
  const peerEnded = new Promise<void>((resolve) => socket.once('end', () => resolve()));
  const closed = new Promise<{ code?: number; reason?: string }>((resolve) => socket.once('close', () => resolve({})));
  return {
    write: (chunk) => new Promise((resolve) => (socket.write(chunk) ? resolve() : socket.once('drain', () => resolve()))),
    end: () => {
      socket.end();
      if (!held) socket.resume(); // nobody may be listening, but the upstream's eof must still be read
    },
    onData: (listener) => {
      socket.on('data', listener);
      if (!held) socket.resume();
    },
    peerEnded,
    closed,
    pause: () => {
      held = true;
      socket.pause();
    },
    resume: () => {
      held = false;
      socket.resume();
    },
    destroy: () => socket.destroy(),
  };
}

/** CONNECT `target` with the given headers; on 200 the socket carries the tunnel. */
export function connectTunnel(h: Harness, client: TestClientCertificate, target: string, headers: Record<string, string>, head?: Buffer): Promise<Opened | Refusal> {
  return new Promise((resolve, reject) => {
    // tls.connect passes allowHalfOpen on to the socket, though its type does not list it.
    const socket = tlsConnect({ ...tlsOptions(h, client), allowHalfOpen: true } as ConnectionOptions, () => {
      const lines = [`CONNECT ${target} HTTP/1.1`, `Host: ${target}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
      socket.write(lines.join('\r\n') + '\r\n\r\n');
      if (head) socket.write(head);
    });
    socket.on('error', reject);
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const cut = buffered.indexOf('\r\n\r\n');
      if (cut < 0) return;
      socket.removeListener('data', onData);
      socket.pause();
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(buffered.subarray(0, cut).toString())?.[1] ?? 0);
      const rest = buffered.subarray(cut + 4);
      if (status !== 200) {
        let body = rest.toString();
        socket.on('data', (d: Buffer) => (body += d.toString()));
        socket.on('end', () => socket.end()); // half-open: the gateway closed its side, now close ours
        socket.on('close', () => resolve({ ok: false, status, body }));
        socket.resume();
        return;
      }
      if (rest.length > 0) socket.unshift(rest);
      resolve({ ok: true, end: socketEnd(socket) });
    };
    socket.on('data', onData);
  });
}

function webSocketEnd(ws: WebSocket): TunnelEnd {
  let drained: (() => void) | undefined;
  const listeners: Array<(chunk: Buffer) => void> = [];
  let signalEnd!: () => void;
  const peerEnded = new Promise<void>((resolve) => (signalEnd = resolve));
  const early: Buffer[] = []; // bytes that came before anyone listened
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary) {
      if (controlType(data) === 'eof') signalEnd();
      return;
    }
    if (listeners.length === 0) early.push(data);
    for (const l of listeners) l(data);
  });
  const closed = new Promise<{ code?: number; reason?: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  return {
    write: (chunk) =>
      new Promise((resolve) => {
        ws.send(chunk, { binary: true }, () => {
          if (drained && ws.bufferedAmount < TUNNEL_HIGH_WATER) {
            const d = drained;
            drained = undefined;
            d();
          }
        });
        if (ws.bufferedAmount < TUNNEL_HIGH_WATER) resolve();
        else drained = resolve;
      }),
    end: () => ws.send(EOF_MESSAGE),
    onData: (listener) => {
      listeners.push(listener);
      for (const chunk of early.splice(0)) listener(chunk);
    },
    peerEnded,
    closed,
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    destroy: () => ws.terminate(),
  };
}

/** Opens the WebSocket tunnel endpoint for `route`; `token` goes in Authorization. */
export function webSocketTunnel(h: Harness, client: TestClientCertificate, route: string, token: string | undefined, protocols: string[] = [TUNNEL_SUBPROTOCOL]): Promise<(Opened & { ws: WebSocket }) | Refusal> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://localhost:${h.port}${TUNNEL_PATH}${route}`, protocols, {
      ...tlsOptions(h, client),
      headers: token ? { authorization: `Bearer ${token}` } : {},
      perMessageDeflate: false,
    });
    ws.once('open', () => resolve({ ok: true, end: webSocketEnd(ws), ws }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        ws.on('error', () => {}); // tearing down a refused handshake reports one more error
        ws.terminate();
        resolve({ ok: false, status: res.statusCode ?? 0, body });
      });
    });
    ws.once('error', reject);
  });
}

/** Resident memory of a process in MB, from /proc. */
export function rssMb(pid: number): number {
  const kb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  return kb / 1024;
}
