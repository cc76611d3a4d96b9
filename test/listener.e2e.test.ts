// The front door under slow, silent and hostile clients, through a real `gatehouse serve`: sockets that
// never finish TLS are destroyed and their fds freed, header/body/idle timeouts fire near the configured
// time, tunnels are not cut by the HTTP idle timeout, and TLS 1.2 renegotiation is refused.
import { mkdirSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curl, inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { eventually, fdCount, hasProcFd, rawTcp, responseHead, sleep, tlsClient } from './support/rawClients.ts';
import { connectTunnel, webSocketTunnel, type Opened, type Refusal } from './support/tunnelPeers.ts';

const HANDSHAKE_S = 1;
const HEADERS_S = 2;
const REQUEST_S = 3;
const IDLE_S = 1;

const routes = `  - name: web
    path: /web/
    upstream: unix:run/web.sock
    policy: |
      allow if user($u);
  - name: echo
    protocols: [tcp]
    upstream: unix:run/echo.sock
    policy: |
      allow if user($u), protocol("tcp");
`;

let h: Harness;
let alice: TestClientCertificate;
let token: string;
let web: Server;
let echo: NetServer;
/** How the upstream's one `/big` response ended: finished, or closed under it (and when). */
let bigEndedNow: (outcome: { finished: boolean; atMs: number }) => void = () => {};
const bigEnded = new Promise<{ finished: boolean; atMs: number }>((resolve) => (bigEndedNow = resolve));

async function listenUnix(server: Server | NetServer, path: string): Promise<void> {
  mkdirSync(join(h.dir, 'run'), { recursive: true });
  rmSync(path, { force: true });
  await new Promise<void>((resolve) => server.listen(path, () => resolve()));
}

beforeAll(async () => {
  h = await startHarness({
    routes,
    extraTop: `limits:\n  handshakeTimeoutSeconds: ${HANDSHAKE_S}\n  headersTimeoutSeconds: ${HEADERS_S}\n  requestTimeoutSeconds: ${REQUEST_S}\n  idleTimeoutSeconds: ${IDLE_S}\n`,
  });
  alice = await h.pki.client('alice');
  token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
  web = createHttpServer((req, res) => {
    if (req.url === '/big') {
      // 256 MiB, written as fast as the gateway takes it: a client that never reads stalls it.
      const started = performance.now();
      let finished = false;
      res.once('close', () => bigEndedNow({ finished, atMs: performance.now() - started }));
      const chunk = Buffer.alloc(1 << 20, 0x61);
      let left = 256;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(left * chunk.length) });
      const pump = () => {
        while (left > 0) {
          left -= 1;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end(() => (finished = true));
      };
      pump();
      return;
    }
    let length = 0;
    req.on('data', (d: Buffer) => (length += d.length));
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end(`got ${length}\n`));
  });
  await listenUnix(web, join(h.dir, 'run', 'web.sock'));
  echo = createNetServer((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  await listenUnix(echo, join(h.dir, 'run', 'echo.sock'));
});

afterAll(async () => {
  web?.close();
  echo?.close();
  await h?.stop();
});

describe('sockets that never finish the TLS handshake', () => {
  it.runIf(hasProcFd)(`100 silent clients that hang up after the handshake timeout leave no fd behind`, async () => {
    const pid = h.proc.pid!;
    await sleep(500);
    const baseline = fdCount(pid);
    const clients = await Promise.all(Array.from({ length: 100 }, () => rawTcp(h.port)));
    expect(await eventually(() => fdCount(pid) >= baseline + 90, 3000)).toBe(true);
    const held = fdCount(pid);
    await sleep(HANDSHAKE_S * 1000 + 500);
    for (const c of clients) c.socket.destroy();
    const back = await eventually(() => fdCount(pid) <= baseline + 2, 5000);
    const after = fdCount(pid);
    console.info(`fds: baseline ${baseline}, with 100 silent sockets ${held}, after ${after}`);
    expect({ baseline, held, after, back }).toMatchObject({ back: true });
  }, 20_000);

  it('silent clients that keep their end open are disconnected at the handshake timeout', async () => {
    const clients = await Promise.all(Array.from({ length: 20 }, () => rawTcp(h.port)));
    const closedAfter = await Promise.race([Promise.all(clients.map((c) => c.closed)), sleep(HANDSHAKE_S * 1000 + 2500).then(() => null)]);
    for (const c of clients) c.socket.destroy();
    expect(closedAfter).not.toBeNull();
    for (const ms of closedAfter ?? []) {
      expect(ms).toBeGreaterThanOrEqual(HANDSHAKE_S * 1000 - 100);
      expect(ms).toBeLessThan(HANDSHAKE_S * 1000 + 2500);
    }
    // Nothing was ever said to them: no HTTP error written into a TLS stream that never started.
    expect(clients.every((c) => c.received() === '')).toBe(true);
  });

  it('clients that send plain HTTP instead of TLS are closed at once, without an HTTP answer', async () => {
    const pid = h.proc.pid!;
    const baseline = hasProcFd ? fdCount(pid) : 0;
    const clients = await Promise.all(Array.from({ length: 10 }, () => rawTcp(h.port)));
    for (const c of clients) c.socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const closedAfter = await Promise.race([Promise.all(clients.map((c) => c.closed)), sleep(3000).then(() => null)]);
    for (const c of clients) c.socket.destroy();
    expect(closedAfter).not.toBeNull();
    for (const ms of closedAfter ?? []) expect(ms).toBeLessThan(HANDSHAKE_S * 1000);
    for (const c of clients) expect(c.received()).not.toContain('HTTP/1.1');
    if (hasProcFd) expect(await eventually(() => fdCount(pid) <= baseline + 2, 3000)).toBe(true);
  });
});

describe('request timeouts', () => {
  it(`headers trickled slower than headersTimeoutSeconds get 408 and a closed socket near ${HEADERS_S} s`, async () => {
    const c = await tlsClient(h, alice);
    c.socket.write('GET /web/slow-headers HTTP/1.1\r\nHost: localhost\r\n');
    const trickle = setInterval(() => c.socket.writable && c.socket.write('x-slow: 1\r\n'), 400);
    const closedMs = await Promise.race([c.closed, sleep(HEADERS_S * 1000 + 5000).then(() => -1)]);
    clearInterval(trickle);
    c.socket.destroy();
    expect(c.received()).toMatch(/^HTTP\/1\.1 408 /);
    expect(c.received().toLowerCase()).toContain('connection: close');
    expect(closedMs).toBeGreaterThanOrEqual(HEADERS_S * 1000 - 100);
    expect(closedMs).toBeLessThan(HEADERS_S * 1000 + 2500);
    const r = await h.waitForAudit((a) => a.event === 'request' && a.status === 408 && /header/i.test(a.reason ?? ''));
    expect(r).toMatchObject({ decision: 'deny', client: { cn: 'alice' } });
  }, 15_000);

  it(`a body still incomplete after requestTimeoutSeconds gets 408 and a closed socket near ${REQUEST_S} s`, async () => {
    const c = await tlsClient(h, alice);
    c.socket.write(`POST /web/upload HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nContent-Length: 100000\r\n\r\n`);
    // A byte every 300 ms: never idle, never done.
    const trickle = setInterval(() => c.socket.writable && c.socket.write('a'), 300);
    const closedMs = await Promise.race([c.closed, sleep(REQUEST_S * 1000 + 5000).then(() => -1)]);
    clearInterval(trickle);
    c.socket.destroy();
    expect(c.received()).toMatch(/^HTTP\/1\.1 408 /);
    expect(closedMs).toBeGreaterThanOrEqual(REQUEST_S * 1000 - 100);
    expect(closedMs).toBeLessThan(REQUEST_S * 1000 + 2500);
    const r = await h.waitForAudit((a) => a.event === 'request' && a.status === 408 && /body|request/i.test(a.reason ?? '') && !/header/i.test(a.reason ?? ''));
    // The request was admitted and forwarded: its one record keeps the decision and says how it ended.
    expect(r).toMatchObject({ decision: 'allow', route: 'web', path: '/web/upload', client: { cn: 'alice' } });
    expect(h.audit().filter((a) => a.event === 'request' && a.path === '/web/upload')).toHaveLength(1);
  }, 15_000);
});

describe('idle connections', () => {
  it(`a keep-alive connection with nothing in flight is closed after idleTimeoutSeconds`, async () => {
    const c = await tlsClient(h, alice);
    c.socket.write(`GET /web/once HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    expect(await eventually(() => c.received().includes('got 0'), 5000)).toBe(true);
    const answeredAt = performance.now();
    const closedMs = await Promise.race([c.closed, sleep(IDLE_S * 1000 + 5000).then(() => -1)]);
    c.socket.destroy();
    expect(c.received()).toMatch(/^HTTP\/1\.1 200 /);
    expect(closedMs).toBeGreaterThan(0);
    const idleMs = c.openedAt + closedMs - answeredAt;
    expect(idleMs).toBeGreaterThanOrEqual(IDLE_S * 1000 - 100);
    expect(idleMs).toBeLessThan(IDLE_S * 1000 + 2500);
  }, 15_000);

  it('a client that never reads its response cannot hold the connection: the gateway drops it and the upstream sees it', async () => {
    const c = await tlsClient(h, alice);
    c.socket.pause();
    c.socket.removeAllListeners('data');
    c.socket.write(`GET /web/big HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    const ended = await Promise.race([bigEnded, sleep(15_000).then(() => null)]);
    c.socket.destroy();
    expect(ended).not.toBeNull();
    expect(ended?.finished).toBe(false);
    // The stall begins once the buffers between upstream and client fill; then idleTimeoutSeconds.
    expect(ended?.atMs).toBeLessThan(IDLE_S * 1000 + 5000);
  }, 20_000);

  for (const transport of ['connect', 'websocket'] as const) {
    it(`a ${transport} tunnel silent for 3 s outlives idleTimeoutSeconds (${IDLE_S} s): tunnels have their own idle timeout`, async () => {
      const opened: Opened | Refusal = transport === 'connect'
        ? await connectTunnel(h, alice, 'echo:443', { 'Proxy-Authorization': `Bearer ${token}` })
        : await webSocketTunnel(h, alice, 'echo', token);
      if (!opened.ok) throw new Error(`tunnel refused: ${opened.status} ${opened.body}`);
      let heard = '';
      opened.end.onData((d) => (heard += d.toString()));
      let closed = false;
      void opened.end.closed.then(() => (closed = true));
      await opened.end.write(Buffer.from('before;'));
      expect(await eventually(() => heard === 'before;', 3000)).toBe(true);
      await sleep(3000);
      expect(closed).toBe(false);
      await opened.end.write(Buffer.from('after;'));
      expect(await eventually(() => heard === 'before;after;', 3000)).toBe(true);
      opened.end.destroy();
    }, 15_000);
  }
});

describe('TLS renegotiation', () => {
  async function renegotiationOutcome(): Promise<Error | null> {
    const c = await tlsClient(h, alice, { maxVersion: 'TLSv1.2' });
    expect(c.socket.getProtocol()).toBe('TLSv1.2');
    c.socket.write(`GET /web/before-renegotiation HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    expect((await responseHead(c)).status).toBe(200);
    const outcome = await new Promise<Error | null>((resolve) => {
      const accepted = c.socket.renegotiate({ rejectUnauthorized: true }, (err) => resolve(err ?? null));
      if (!accepted) resolve(new Error('renegotiate() refused locally'));
      c.socket.once('close', () => resolve(new Error('closed')));
      setTimeout(() => resolve(null), 5000);
    });
    c.socket.destroy();
    return outcome;
  }

  it('a TLS 1.2 client that asks to renegotiate is refused, after its request on the same connection worked', async () => {
    expect(await renegotiationOutcome()).toBeInstanceOf(Error);
  });

  it('is still refused after a configuration reload replaced the TLS context', async () => {
    const reloads = () => h.audit().filter((r) => r.event === 'config.reload').length;
    const before = reloads();
    h.proc.kill('SIGHUP');
    expect(await eventually(() => reloads() > before, 5000)).toBe(true);
    expect(h.audit().filter((r) => r.event === 'config.reload').at(-1)).toMatchObject({ decision: 'allow' });
    expect(await renegotiationOutcome()).toBeInstanceOf(Error);
  });
});

describe('header size', () => {
  it('a header block over limits.maxHeaderBytes gets 431 with connection: close and an audit record', async () => {
    const c = await tlsClient(h, alice);
    c.socket.write(`GET /web/huge HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nx-filler: ${'a'.repeat(20_000)}\r\n\r\n`);
    const { status, head } = await responseHead(c);
    const closedMs = await Promise.race([c.closed, sleep(3000).then(() => -1)]);
    c.socket.destroy();
    expect(status).toBe(431);
    expect(head.toLowerCase()).toContain('connection: close');
    expect(closedMs).toBeGreaterThan(0);
    const r = await h.waitForAudit((a) => a.event === 'request' && a.status === 431);
    expect(r.reason).toMatch(/maxHeaderBytes/);
  });
});

describe('Expect and Host reach the request handler', () => {
  it('Expect: 100-continue without a token gets the final 401, never a 100 first', async () => {
    const c = await tlsClient(h, alice);
    c.socket.write('POST /web/upload HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n');
    const { status } = await responseHead(c);
    c.socket.destroy();
    expect(status).toBe(401);
  });

  it('HTTP/1.1 without Host gets 400 with an audit record naming Host', async () => {
    const c = await tlsClient(h, alice);
    c.socket.write(`GET /web/no-host HTTP/1.1\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    const { status } = await responseHead(c);
    c.socket.destroy();
    expect(status).toBe(400);
    await h.waitForAudit((a) => a.event === 'request' && a.status === 400 && /host/i.test(a.reason ?? ''));
  });

  it('still serves an ordinary request with curl', async () => {
    const res = await curl(h, '/web/plain', { client: alice, token });
    expect(res.status).toBe(200);
  });
});

// Last: it stops the gateway.
describe('shutdown', () => {
  it('SIGTERM with 5 silent sockets past the handshake timeout exits 0 within the grace period and writes gateway.stop', async () => {
    const clients = await Promise.all(Array.from({ length: 5 }, () => rawTcp(h.port)));
    await sleep(HANDSHAKE_S * 1000 + 500);
    const started = performance.now();
    const code = await Promise.race([h.stop('SIGTERM'), sleep(12_000).then(() => 'still running')]);
    const tookMs = performance.now() - started;
    console.info(`SIGTERM exit after ${Math.round(tookMs)} ms`);
    for (const c of clients) c.socket.destroy();
    expect(code).toBe(0);
    expect(tookMs).toBeLessThan(5000);
    // The audit log's closing checkpoint follows the gateway's last record.
    expect(h.audit().filter((r) => r.event !== 'audit.checkpoint').at(-1)).toMatchObject({ event: 'gateway.stop' });
  }, 20_000);
});
