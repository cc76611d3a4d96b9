// Both ends of a published service for tests: the real `gatehouse publish` child process, the services
// it publishes (HTTP + WebSocket echo, raw echo on UNIX sockets), and a gateway restart on the same port.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { WebSocketServer } from 'ws';
import { cli, cliNode, type Harness } from './gatewayHarness.ts';
import type { TestClientCertificate } from './pki.ts';

/** The one route for every user's published services (docs/admin/configure.md), and a publish block with room for load tests. */
export const publishedRoute = `  - name: published
    path: /~{user}/{service}/
    tunnel: "{service}.{user}"
    protocols: [http, websocket, tcp]
    upstream: published:{user}/{service}
    policy: |
      allow if user($u), param("user", $u);
`;
/** Every user's published UDP services (`NAME=udp:PORT`): `tunnel -L udp:PORT:dns.alice` reaches alice's `dns`. */
export const publishedUdpRoute = `  - name: published-udp
    tunnel: "{service}.{user}"
    protocols: [udp]
    upstream: published:{user}/{service}
    policy: |
      allow if user($u), param("user", $u), protocol("udp");
`;
export const publishTop = `metrics:
  listen: 127.0.0.1:0
publish:
  policy: |
    allow if user($u);
  streamsPerPublisher: 400
limits:
  tunnelsPerIdentity: 400
  requestsPerSecond: 1000
  requestBurst: 2000
`;

/** `gatehouse publish`'s flags to reach `h` (or `url`, another of its listeners) with `client`'s certificate and token file. */
export function publishFlags(h: Harness, client: Pick<TestClientCertificate, 'certPath' | 'keyPath'>, tokenFile: string, url = `https://localhost:${h.port}`): string[] {
  return ['--gateway', url, '--ca', h.pki.caCertPath, '--cert', client.certPath, '--key', client.keyPath, '--token-file', tokenFile];
}

export interface PublisherProcess {
  proc: ChildProcess;
  stderr(): string;
  waitForStderr(pattern: RegExp, timeoutMs?: number, from?: number): Promise<RegExpExecArray>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `gatehouse publish ARGS` (as given: flags and NAME=TARGET). `wrap` runs it under another user. */
export function startPublisher(args: string[], env: NodeJS.ProcessEnv, wrap: string[] = []): PublisherProcess {
  const command = [...wrap, cliNode, cli, 'publish', ...args];
  const proc = spawn(command[0] as string, command.slice(1), { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  return {
    proc,
    stderr: () => err,
    async waitForStderr(pattern, timeoutMs = 15_000, from = 0) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const m = pattern.exec(err.slice(from));
        if (m) return m;
        if (Date.now() > until || proc.exitCode !== null) throw new Error(`publisher stderr never matched ${pattern} (exit ${proc.exitCode}):\n${err}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
      return new Promise((ok) => {
        proc.once('exit', (code) => ok(code));
        proc.kill(signal);
      });
    },
  };
}

/**
 * An HTTP service answering `{path, user}` (the gateway's identity header) and `received` for a body, with a
 * WebSocket echo. `?delay=MS` (at most 1 s) answers that much later, so requests are in flight under load.
 */
export async function httpAndWebSocketService(path: string): Promise<HttpServer> {
  const server = createHttpServer((req, res) => {
    const delay = Math.min(1000, Number(/[?&]delay=(\d+)/.exec(req.url ?? '')?.[1] ?? 0));
    const body = createHash('sha256');
    let received = 0;
    req.on('data', (d: Buffer) => {
      received += d.length;
      body.update(d);
    });
    req.on('end', () => {
      const answer = () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ path: req.url, user: req.headers['x-gatehouse-user'] ?? null, ...(received > 0 && { received, sha256: body.digest('hex') }) }));
      };
      if (delay > 0) setTimeout(answer, delay);
      else answer();
    });
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, () => resolve()));
  return server;
}

/** A raw echo service: every byte back, half-close passed on. */
export async function echoService(path: string): Promise<Server> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, () => resolve()));
  return server;
}

/** Sends `bytes` pseudo-random bytes to 127.0.0.1:port, reads the echo; sha256 of both and the time. */
export function echoThrough(port: number, bytes: number): Promise<{ sentSha: string; gotSha: string; got: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const sent = createHash('sha256');
    const got = createHash('sha256');
    let received = 0;
    socket.on('error', reject);
    socket.on('data', (d: Buffer) => {
      received += d.length;
      got.update(d);
    });
    socket.on('end', () => {
      socket.end();
      resolve({ sentSha: sent.digest('hex'), gotSha: got.digest('hex'), got: received, ms: performance.now() - started });
    });
    const chunk = Buffer.alloc(256 * 1024);
    let left = bytes;
    let n = 0;
    const pump = () => {
      while (left > 0) {
        chunk.fill(n++ & 0xff);
        chunk.writeUInt32LE(n, 0);
        const part = chunk.subarray(0, Math.min(chunk.length, left));
        left -= part.length;
        sent.update(part);
        if (!socket.write(Buffer.from(part))) return void socket.once('drain', pump);
      }
      socket.end();
    };
    socket.once('connect', pump);
  });
}

/** Kills the gateway and starts it again on the same port and config (under `wrap`, e.g. setpriv); resolves once it listens. */
export async function restartGateway(h: Harness, gap = 0, wrap: string[] = []): Promise<ChildProcess> {
  await h.stop('SIGKILL');
  const config = join(h.dir, 'routes.yaml');
  writeFileSync(config, readFileSync(config, 'utf8').replace('tcp: 127.0.0.1:0', `tcp: 127.0.0.1:${h.port}`));
  if (gap > 0) await new Promise((r) => setTimeout(r, gap));
  const command = [...wrap, cliNode, cli, 'serve', '--config', config];
  const proc = spawn(command[0] as string, command.slice(1), { cwd: h.dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`gateway did not restart:\n${err}`)), 20_000);
    proc.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
      if (/listening on https:/.test(err)) {
        clearTimeout(timer);
        ok();
      }
    });
    proc.once('exit', (code) => fail(new Error(`gateway exited with ${code}:\n${err}`)));
  });
  return proc;
}
