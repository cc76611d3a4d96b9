// Faults for the publish tests and the WAN bench: a userspace TCP relay that can freeze (a network
// partition: nothing forwarded, nothing closed), reset every connection it accepts, or delay every chunk.
import { spawn } from 'node:child_process';
import { Agent, request } from 'node:https';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { cli, type Harness } from './gatewayHarness.ts';
import type { TestClientCertificate } from './pki.ts';

/** What one direction of a delaying relay holds in the air at most (a link's buffer). */
const MAX_IN_FLIGHT = 64 << 20;

export type RelayMode = 'forward' | 'freeze' | 'reset';

export interface TcpRelay {
  port: number;
  /** forward: carry bytes; freeze: hold everything (a partition); reset: reset or close each new connection once it sends a byte. */
  mode: RelayMode;
  /** Connections accepted so far. */
  accepted: number;
  /** Resets every connection open now, both sides (a middlebox dropping its state). */
  resetOpen(): void;
  close(): Promise<void>;
}

/**
 * Relays 127.0.0.1:<port> to 127.0.0.1:`targetPort`. `delayMs` holds every chunk that long in each
 * direction (RTT/2), as a WAN would: a window update arrives a round trip after the data that caused it.
 */
export async function tcpRelay(targetPort: number, delayMs = 0): Promise<TcpRelay> {
  const open = new Set<Socket>();
  const relay: TcpRelay = { port: 0, mode: 'forward', accepted: 0, resetOpen: () => open.forEach((s) => s.resetAndDestroy()), close: async () => {} };
  const server: Server = createServer({ allowHalfOpen: true }, (inbound) => {
    relay.accepted += 1;
    inbound.on('error', () => {});
    if (relay.mode === 'reset') {
      // What an L4 balancer does with no healthy backend: the TLS handshake meets a reset, or a close
      // (every other connection), once the client has sent its hello.
      const close = relay.accepted % 2 === 0 ? () => inbound.end() : () => inbound.resetAndDestroy();
      inbound.once('data', close);
      return;
    }
    const outbound = connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true, noDelay: true });
    outbound.on('error', () => {});
    inbound.setNoDelay(true);
    open.add(inbound).add(outbound);
    const pipe = (from: Socket, to: Socket) => {
      // Frozen bytes are kept, not dropped: a partition that heals delivers them, like TCP would.
      const held: Buffer[] = [];
      let inFlight = 0;
      let flushing = false;
      const flush = () => {
        if (relay.mode === 'freeze' || flushing) return;
        flushing = true;
        while (held.length > 0 && !to.destroyed) to.write(held.shift() as Buffer);
        flushing = false;
      };
      const thaw = setInterval(flush, 20);
      thaw.unref();
      from.on('data', (chunk: Buffer) => {
        if (delayMs > 0) {
          // Keep reading while chunks are in the air (a link holds its bandwidth-delay product), bounded.
          inFlight += chunk.length;
          if (inFlight > MAX_IN_FLIGHT) from.pause();
          setTimeout(() => {
            inFlight -= chunk.length;
            held.push(chunk);
            flush();
            if (from.isPaused() && inFlight < MAX_IN_FLIGHT / 2 && relay.mode !== 'freeze') from.resume();
          }, delayMs);
          return;
        }
        held.push(chunk);
        flush();
        if (to.writableLength > 4 << 20) {
          from.pause();
          to.once('drain', () => from.resume());
        }
      });
      // A partition carries no FIN or reset either: they pass once it heals, after the bytes before them.
      const afterHeld = (then: () => void) => {
        const tryNow = () => (relay.mode === 'freeze' || held.length > 0 ? setTimeout(tryNow, 20) : then());
        setTimeout(tryNow, delayMs);
      };
      from.on('end', () => afterHeld(() => to.end()));
      from.on('close', () => afterHeld(() => {
        clearInterval(thaw);
        to.destroy();
      }));
    };
    pipe(inbound, outbound);
    pipe(outbound, inbound);
    inbound.once('close', () => open.delete(inbound));
    outbound.once('close', () => open.delete(outbound));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  relay.port = (server.address() as { port: number }).port;
  relay.close = () => {
    for (const s of open) s.destroy();
    return new Promise((resolve) => server.close(() => resolve()));
  };
  return relay;
}

/** A UNIX-socket service: reads `<bytes>\n`, then sends that many bytes at about `bytesPerSecond` and ends. */
export function throttledSource(bytesPerSecond: number): (socket: Socket) => void {
  return (socket) => {
    socket.on('error', () => {});
    let line = '';
    const onData = (d: Buffer) => {
      line += d.toString('latin1');
      if (!line.includes('\n')) return;
      socket.off('data', onData);
      socket.resume();
      let left = Number(line.slice(0, line.indexOf('\n')));
      const chunk = Buffer.alloc(64 << 10, 0x61);
      const every = Math.max(1, Math.round((chunk.length / bytesPerSecond) * 1000));
      const timer = setInterval(() => {
        if (socket.destroyed) return clearInterval(timer);
        if (socket.writableLength > 1 << 20) return;
        const part = chunk.subarray(0, Math.min(chunk.length, left));
        left -= part.length;
        socket.write(part);
        if (left === 0) {
          clearInterval(timer);
          socket.end();
        }
      }, every);
    };
    socket.on('data', onData);
  };
}

export interface StdioRun {
  /** Resolves when the process exits: its code, the bytes it wrote to stdout, its stderr. */
  exited: Promise<{ code: number | null; got: number; stderr: string; at: number }>;
  /** Bytes on stdout so far. */
  got(): number;
  kill(): void;
}

/** `gatehouse tunnel --stdio ROUTE` with `input` on stdin (kept open unless `endInput`); stdout counted, not kept. */
export function stdioTunnel(args: string[], env: NodeJS.ProcessEnv, input: Buffer | string, endInput = true): StdioRun {
  const proc = spawn(process.execPath, [cli, 'tunnel', ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let got = 0;
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (got += d.length));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  proc.stdin.on('error', () => {});
  if (endInput) proc.stdin.end(input);
  else proc.stdin.write(input);
  return {
    exited: new Promise((resolve) => proc.once('close', (code) => resolve({ code, got, stderr, at: performance.now() }))),
    got: () => got,
    kill: () => void proc.kill('SIGKILL'),
  };
}

/** A keep-alive HTTPS agent of one connection, as `client`. */
export function clientAgent(h: Harness, client: TestClientCertificate): Agent {
  return new Agent({ keepAlive: true, maxSockets: 1, ca: h.pki.caCert, cert: client.cert, key: client.key });
}

/** One GET to the gateway with a bearer token: its status, or 'error' when the connection broke. */
export function getStatus(h: Harness, agent: Agent, path: string, token: string): Promise<number | 'error'> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: h.port, servername: 'localhost', path, agent, headers: { host: 'localhost', authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve('error'));
    });
    req.on('error', () => resolve('error'));
    req.end();
  });
}

/** `workers` clients as `client` sending GETs to `path` + a counter, one after another until `stop()`; every status counted ('error' for a broken connection). */
export function httpLoad(h: Harness, client: TestClientCertificate, token: string, workers: number, path: (i: number) => string) {
  const statuses = new Map<number | 'error', number>();
  let running = true;
  const done = Promise.all(
    Array.from({ length: workers }, async () => {
      const agent = clientAgent(h, client);
      for (let i = 0; running; i++) {
        const status = await getStatus(h, agent, path(i), token);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
      agent.destroy();
    }),
  );
  return {
    statuses,
    async stop() {
      running = false;
      await done;
      return statuses;
    },
  };
}

/** How many of the counted statuses are not 200. */
export const failedCount = (statuses: Map<number | 'error', number>) => [...statuses].filter(([s]) => s !== 200).reduce((n, [, c]) => n + c, 0);
