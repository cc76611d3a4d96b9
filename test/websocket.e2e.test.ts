// WebSocket proxying on HTTP routes through a real `gatehouse serve`: a real `ws` service on a UNIX
// socket, admission with protocol("websocket"), identity headers, refusals that never reach it, audit.
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdirSync, rmSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';

const routes = `  - name: chat
    path: /chat/
    protocols: [http, websocket]
    upstream: unix:run/chat.sock
    policy: |
      allow if user($u), protocol("websocket");
  - name: plain
    path: /plain/
    upstream: unix:run/chat.sock
    policy: |
      allow if user($u);
  - name: refusing
    path: /refusing/
    protocols: [websocket]
    upstream: unix:run/refusing.sock
    policy: |
      allow if user($u);
  - name: silent
    path: /silent/
    protocols: [websocket]
    upstream: unix:run/silent.sock
    connectTimeoutSeconds: 1
    policy: |
      allow if user($u);
  - name: gone
    path: /gone/
    protocols: [websocket]
    upstream: unix:run/gone.sock
    policy: |
      allow if user($u);
`;

let h: Harness;
let alice: TestClientCertificate;
let aliceToken: string;
const upstreams: Array<{ close(): unknown }> = [];
let chatConnections = 0;

interface Greeting {
  user: string | undefined;
  url: string | undefined;
  authorization: string | undefined;
}

/** An HTTP server with a WebSocket service on a UNIX socket. */
async function wsService(path: string, options: ConstructorParameters<typeof WebSocketServer>[0] = {}): Promise<{ server: Server; wss: WebSocketServer }> {
  mkdirSync(join(path, '..'), { recursive: true });
  rmSync(path, { force: true });
  const server = createServer((_req, res) => res.writeHead(200).end('plain http\n'));
  const wss = new WebSocketServer({ server, perMessageDeflate: false, ...options });
  await new Promise<void>((resolve) => server.listen(path, () => resolve()));
  upstreams.push(server);
  return { server, wss };
}

const token = (user: string, extra = '') => mintRaw(h.rootKey.privateKey, `user("${user}"); check if time($t), $t <= ${inOneHour()}; ${extra}`);

/** Opens a WebSocket through the gateway; resolves with the socket or the refusal. */
function connect(path: string, headers: Record<string, string>): Promise<{ ws: WebSocket; first: Promise<string> } | { status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://localhost:${h.port}${path}`, { ca: h.pki.caCert, cert: alice.cert, key: alice.key, headers, perMessageDeflate: false });
    const first = new Promise<string>((r) => ws.once('message', (d: Buffer) => r(d.toString())));
    ws.once('open', () => resolve({ ws, first }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        ws.on('error', () => {});
        ws.terminate();
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    ws.once('error', reject);
  });
}

/** Bytes of one frame on the wire: client frames carry a 4-byte mask key. */
const frame = (payload: number, masked: boolean) => payload + 2 + (payload >= 126 ? (payload > 65535 ? 8 : 2) : 0) + (masked ? 4 : 0);

const nextMessage = (ws: WebSocket) => new Promise<Buffer>((resolve) => ws.once('message', (d: Buffer) => resolve(d)));

beforeAll(async () => {
  h = await startHarness({ routes });
  alice = await h.pki.client('alice');
  aliceToken = token('alice');
  const chat = await wsService(join(h.dir, 'run', 'chat.sock'));
  chat.server.on('connection', () => chatConnections++);
  chat.wss.on('connection', (ws, req) => {
    const greeting: Greeting = { user: req.headers['x-gatehouse-user'] as string | undefined, url: req.url, authorization: req.headers.authorization };
    ws.send(JSON.stringify(greeting));
    ws.on('message', (data: Buffer, isBinary) => {
      if (!isBinary && data.toString() === 'please close') return ws.close(1000, 'bye');
      ws.send(data, { binary: isBinary });
    });
  });
  await wsService(join(h.dir, 'run', 'refusing.sock'), { verifyClient: (_info, cb) => cb(false, 418, 'no tea here') });
  // Accepts connections and never answers.
  const silent = createNetServer((s) => s.on('error', () => {}));
  await new Promise<void>((resolve) => silent.listen(join(h.dir, 'run', 'silent.sock'), () => resolve()));
  upstreams.push(silent);
});

afterAll(async () => {
  for (const s of upstreams) s.close();
  await h?.stop();
});

describe('WebSocket on an HTTP route', () => {
  it('proxies an allowed upgrade with the verified identity, and records open and close with exact bytes', async () => {
    const opened = await connect('/chat/room?x=1', { authorization: `Bearer ${aliceToken}`, 'x-gatehouse-user': 'mallory' });
    if (!('ws' in opened)) throw new Error(`refused: ${opened.status} ${opened.body}`);
    const { ws } = opened;
    const greetingText = await opened.first;
    expect(JSON.parse(greetingText)).toEqual({ user: 'alice', url: '/room?x=1' });
    ws.send('hello');
    expect((await nextMessage(ws)).toString()).toBe('hello');
    const blob = Buffer.alloc(1000, 9);
    ws.send(blob);
    expect(await nextMessage(ws)).toEqual(blob);
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.close(1000);
    expect(await closed).toBe(1000);

    const close = await h.waitForAudit((r) => r.event === 'tunnel.close' && r.route === 'chat');
    expect(close).toMatchObject({
      protocol: 'websocket',
      status: 101,
      reason: 'client closed',
      path: '/chat/room',
      target: '/chat/room?x=1',
      bytesIn: frame(5, true) + frame(1000, true) + frame(2, true),
      bytesOut: frame(Buffer.byteLength(greetingText), false) + frame(5, false) + frame(1000, false) + frame(2, false),
    });
    const open = h.audit().find((r) => r.event === 'tunnel.open' && r.req === close.req);
    expect(open).toMatchObject({ decision: 'allow', protocol: 'websocket', method: 'GET', token: { user: 'alice' }, client: { cn: 'alice' }, upstream: expect.stringMatching(/chat\.sock$/) });
    expect(h.audit().filter((r) => r.req === close.req).map((r) => r.event)).toEqual(['tunnel.open', 'tunnel.close']);
  });

  it('says the upstream closed when the service ends the conversation', async () => {
    const opened = await connect('/chat/', { authorization: `Bearer ${aliceToken}` });
    if (!('ws' in opened)) throw new Error('refused');
    await opened.first;
    const closed = new Promise<[number, string]>((resolve) => opened.ws.once('close', (code, reason) => resolve([code, reason.toString()])));
    opened.ws.send('please close');
    expect(await closed).toEqual([1000, 'bye']);
    const records = await h.waitForAudit((r) => r.event === 'tunnel.close' && r.route === 'chat' && r.path === '/chat/');
    expect(records.reason).toBe('upstream closed');
  });

  it('refuses denied upgrades with a JSON error, and the service never sees a connection', async () => {
    const before = chatConnections;
    const cases: Array<[string, Record<string, string>, number]> = [
      ['/chat/', {}, 401],
      ['/chat/', { authorization: `Bearer ${token('alice', 'check if route("plain");')}` }, 403],
      ['/chat/', { authorization: 'Bearer not-a-token' }, 401],
      ['/plain/', { authorization: `Bearer ${aliceToken}` }, 404], // the route does not allow websocket
    ];
    for (const [path, headers, status] of cases) {
      const res = await connect(path, headers);
      expect('status' in res && res.status, `${path} ${JSON.stringify(headers)}`).toBe(status);
      expect(JSON.parse((res as { body: string }).body)).toHaveProperty('error');
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(chatConnections).toBe(before);
    const denials = h.audit().filter((r) => r.event === 'request' && r.protocol === 'websocket');
    expect(denials.map((r) => [r.decision, r.status])).toEqual(cases.map(([, , s]) => ['deny', s]));
    expect(denials[1]?.reason).toMatch(/route\("plain"\)/);
  });

  it('authorizes plain HTTP on the same route with protocol("http"), which this policy refuses', async () => {
    const status = await new Promise<string>((resolve) =>
      execFile('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', h.pki.caCertPath, '--cert', alice.certPath, '--key', alice.keyPath, '-H', `Authorization: Bearer ${aliceToken}`, `https://localhost:${h.port}/chat/`], (_e, out) => resolve(out)),
    );
    expect(status).toBe('403');
  });

  it("passes the service's own refusal of the upgrade back to the client", async () => {
    const res = await connect('/refusing/', { authorization: `Bearer ${aliceToken}` });
    expect(res).toMatchObject({ status: 418 });
    expect(await h.waitForAudit((r) => r.event === 'tunnel.close' && r.route === 'refusing')).toMatchObject({ status: 418, reason: 'upstream refused the upgrade with 418', bytesIn: 0, bytesOut: 0 });
  });

  it('gives up on a service that does not answer the upgrade within connectTimeoutSeconds', async () => {
    const res = await connect('/silent/', { authorization: `Bearer ${aliceToken}` });
    expect(res).toMatchObject({ status: 502 });
    const close = await h.waitForAudit((r) => r.event === 'tunnel.close' && r.route === 'silent');
    expect(close).toMatchObject({ status: 502, reason: 'upstream error: no answer to the upgrade within 1000 ms' });
    expect(close.durationMs).toBeGreaterThanOrEqual(1000);
  });

  it('answers 502 when the service is not there', async () => {
    const res = await connect('/gone/', { authorization: `Bearer ${aliceToken}` });
    expect(res).toMatchObject({ status: 502, body: '{"error":"upstream unavailable"}\n' });
    expect(await h.waitForAudit((r) => r.event === 'tunnel.close' && r.route === 'gone')).toMatchObject({ status: 502, reason: 'upstream error: ENOENT' });
  });

  it('refuses upgrades to anything but websocket', async () => {
    const status = await new Promise<string>((resolve) =>
      execFile('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', h.pki.caCertPath, '--cert', alice.certPath, '--key', alice.keyPath, '-H', `Authorization: Bearer ${aliceToken}`, '-H', 'Connection: Upgrade', '-H', 'Upgrade: h2c', `https://localhost:${h.port}/chat/`], (_e, out) => resolve(out)),
    );
    expect(status).toBe('400');
  });
});

// Last: it stops the gateway.
describe('shutdown', () => {
  it('tells a proxied WebSocket that sits between two frames that the gateway is going away (close 1001), not a bare cut, never 1000', async () => {
    const opened = await connect('/chat/room', { authorization: `Bearer ${aliceToken}` });
    if (!('ws' in opened)) throw new Error(`refused: ${opened.status} ${opened.body}`);
    const { ws } = opened;
    await opened.first;
    ws.send('hello');
    expect((await nextMessage(ws)).toString()).toBe('hello');
    const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    const stopped = h.stop('SIGTERM');
    expect(await closed).toEqual({ code: 1001, reason: 'gateway shutting down' });
    expect(await stopped).toBe(0);
    expect(h.audit().findLast((r) => r.event === 'tunnel.close' && r.path === '/chat/room')).toMatchObject({ status: 101, reason: 'gateway shutting down' });
  });
});
