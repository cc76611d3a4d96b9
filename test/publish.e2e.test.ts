// `gatehouse publish` end to end, all real processes: alice publishes an HTTP/WebSocket service and a raw
// echo from UNIX sockets in a 0700 directory; users reach them by path, WebSocket and `gatehouse tunnel`.
import { chmodSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { curl, mintRaw, inOneHour, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { cleanEnv, gatewayFlags, startTunnel, writeToken, type TunnelProcess } from './support/tunnelClient.ts';
import { connectTunnel } from './support/tunnelPeers.ts';
import { echoService, echoThrough, httpAndWebSocketService, restartGateway, startPublisher, type PublisherProcess } from './support/publishPeers.ts';

const MiB = 1 << 20;

export const publishedRoute = `  - name: published
    path: /~{user}/{service}/
    tunnel: "{service}.{user}"
    protocols: [http, websocket, tcp]
    upstream: published:{user}/{service}
    policy: |
      allow if user($u), param("user", $u);
`;
export const publishTop = `publish:
  policy: |
    allow if user($u);
  streamsPerPublisher: 400
limits:
  tunnelsPerIdentity: 400
  requestsPerSecond: 1000
  requestBurst: 2000
`;

let h: Harness;
let alice: TestClientCertificate;
let bob: TestClientCertificate;
let aliceToken: string;
let bobToken: string;
let home: string;
let publisher: PublisherProcess;
let publisherId: string;
const servers: Array<Server | HttpServer> = [];
const tunnels: TunnelProcess[] = [];

const token = (user: string, extra = '') => mintRaw(h.rootKey.privateKey, `user("${user}"); check if time($t), $t <= ${inOneHour()}; ${extra}`);
const aliceFlags = () => gatewayFlags(h, alice, join(home, 'alice.token')).filter((f, i, all) => f !== '--transport' && all[i - 1] !== '--transport');

function webSocketEcho(path: string, tok: string, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://localhost:${h.port}${path}`, { ca: h.pki.caCert, cert: alice.cert, key: alice.key, headers: { authorization: `Bearer ${tok}` } });
    ws.on('open', () => ws.send(message));
    ws.on('message', (data) => {
      resolve(data.toString());
      ws.close();
    });
    ws.on('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.on('error', reject);
  });
}

beforeAll(async () => {
  h = await startHarness({ routes: publishedRoute, extraTop: publishTop });
  alice = await h.pki.client('alice');
  bob = await h.pki.client('bob');
  aliceToken = token('alice');
  bobToken = token('bob');
  home = mkdtempSync(join(tmpdir(), 'gatehouse-publish-'));
  // alice's sockets live in a directory only she can enter.
  const sockets = join(home, 'private');
  mkdirSync(sockets, { mode: 0o700 });
  chmodSync(sockets, 0o700);
  servers.push(await httpAndWebSocketService(join(sockets, 'web.sock')), await echoService(join(sockets, 'echo.sock')));
  writeToken(h, join(home, 'alice.token'), 'alice');
  publisher = startPublisher([...aliceFlags(), `web=unix:${sockets}/web.sock`, `echo=unix:${sockets}/echo.sock`], cleanEnv(home));
  publisherId = (await publisher.waitForStderr(/published as alice through \S+ \(publisher ([0-9a-f]+)\)/))[1] as string;
}, 60_000);

afterAll(async () => {
  for (const t of tunnels) await t.stop('SIGKILL');
  await publisher?.stop('SIGKILL');
  for (const s of servers) s.close();
  await h?.stop();
});

describe('a published service', () => {
  it('answers HTTP at /~alice/<service>/, with the publisher named in the audit record', async () => {
    const res = await curl(h, '/~alice/web/hello?x=1', { client: alice, token: aliceToken });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ path: '/hello?x=1', user: 'alice' });
    const record = await h.waitForAudit((r) => r.event === 'request' && r.path === '/~alice/web/hello');
    expect(record).toMatchObject({ decision: 'allow', status: 200, route: 'published', upstream: 'published:alice/web', publisher: publisherId });
    const open = h.audit().find((r) => r.event === 'publish.open' && r.decision === 'allow');
    expect(open).toMatchObject({ conn: publisherId, publisher: publisherId, token: { user: 'alice' }, client: { cn: 'alice' }, detail: { services: ['web', 'echo'] } });
  });

  it('carries a WebSocket', async () => {
    expect(await webSocketEcho('/~alice/web/ws', aliceToken, 'hello over ws')).toBe('hello over ws');
    await h.waitForAudit((r) => r.event === 'tunnel.close' && r.protocol === 'websocket' && r.publisher === publisherId);
  });

  it('carries 64 MiB through `gatehouse tunnel -L PORT:echo.alice`, sha256-identical', async () => {
    const tunnel = await startTunnel([...gatewayFlags(h, alice, join(home, 'alice.token')), '-L', '0:echo.alice'], cleanEnv(home));
    tunnels.push(tunnel);
    const port = tunnel.ready[0]?.port;
    expect(port).toBeGreaterThan(0);
    const run = await echoThrough(port as number, 64 * MiB);
    expect(run.got).toBe(64 * MiB);
    expect(run.gotSha).toBe(run.sentSha);
    console.log(`publish e2e: 64 MiB echoed through a published tunnel in ${Math.round(run.ms)} ms (${((128 * MiB) / 1e6 / (run.ms / 1000)).toFixed(0)} MB/s both ways)`);
    const close = await h.waitForAudit((r) => r.event === 'tunnel.close' && r.route === 'published' && r.protocol === 'tcp' && (r.bytesIn ?? 0) === 64 * MiB);
    expect(close).toMatchObject({ publisher: publisherId, upstream: 'published:alice/echo', bytesOut: 64 * MiB });
  }, 60_000);

  it('refuses bob on alice\'s service (403), and an unpublished name with 503', async () => {
    expect((await curl(h, '/~alice/web/', { client: bob, token: bobToken })).status).toBe(403);
    const tunnel = await connectTunnel(h, bob, 'echo.alice:443', { 'Proxy-Authorization': `Bearer ${bobToken}` });
    expect(tunnel.ok ? 200 : tunnel.status).toBe(403);
    const missing = await curl(h, '/~alice/nothing/', { client: alice, token: aliceToken });
    expect(missing.status).toBe(503);
    expect(JSON.parse(missing.body)).toEqual({ error: 'service not published' });
    const missingTunnel = await connectTunnel(h, alice, 'nothing.alice:443', { 'Proxy-Authorization': `Bearer ${aliceToken}` });
    expect(missingTunnel.ok ? 200 : missingTunnel.status).toBe(503);
  });

  it('publishes bob\'s services under bob, whatever he names them; he cannot take alice\'s name', async () => {
    const bobHome = mkdtempSync(join(tmpdir(), 'gatehouse-publish-bob-'));
    writeToken(h, join(bobHome, 'bob.token'), 'bob');
    const bobFlags = gatewayFlags(h, bob, join(bobHome, 'bob.token')).filter((f, i, all) => f !== '--transport' && all[i - 1] !== '--transport');
    const sock = join(bobHome, 'web.sock');
    servers.push(await httpAndWebSocketService(sock));
    // A name with a slash (alice/web) is not a service name: refused before anything connects.
    const claim = startPublisher([...bobFlags, `alice/web=unix:${sock}`], cleanEnv(bobHome));
    expect(await new Promise((r) => claim.proc.once('exit', r))).toBe(2);
    expect(claim.stderr()).toMatch(/service name "alice\/web"/);
    // The same service name as alice's is bob's own: the name space is the token's user.
    const bobs = startPublisher([...bobFlags, `web=unix:${sock}`], cleanEnv(bobHome));
    await bobs.waitForStderr(/published as bob/);
    expect(JSON.parse((await curl(h, '/~alice/web/x', { client: alice, token: aliceToken })).body)).toEqual({ path: '/x', user: 'alice' });
    expect((await curl(h, '/~bob/web/x', { client: bob, token: bobToken })).status).toBe(200);
    expect((await curl(h, '/~bob/web/x', { client: alice, token: aliceToken })).status).toBe(403);
    await bobs.stop();
    // A token that restricts itself to publishing `jupyter` cannot publish `web` (exit 4, the reason on stderr).
    writeToken(h, join(bobHome, 'narrow.token'), 'bob', 'check if service("jupyter");');
    const narrowFlags = bobFlags.map((f) => (f.endsWith('bob.token') ? join(bobHome, 'narrow.token') : f));
    const narrow = startPublisher([...narrowFlags, `web=unix:${sock}`], cleanEnv(bobHome));
    expect(await new Promise((r) => narrow.proc.once('exit', r))).toBe(4);
    expect(narrow.stderr()).toMatch(/403.*not allowed to publish web/);
    await h.waitForAudit((r) => r.event === 'publish.open' && r.decision === 'deny' && r.status === 403 && /publish web/.test(r.reason ?? ''));
  }, 30_000);

  it('refuses a second publisher of the same service with a reason (409)', async () => {
    const dup = startPublisher([...aliceFlags(), `web=unix:${join(home, 'private', 'web.sock')}`], cleanEnv(home));
    await dup.waitForStderr(/409 .*"service web is already published"; retrying/);
    await dup.stop('SIGKILL');
  });
});
