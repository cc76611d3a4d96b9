// `gatehouse publish` end to end, all real processes: alice publishes an HTTP/WebSocket service and a raw
// echo from UNIX sockets in a 0700 directory; users reach them by path, WebSocket and `gatehouse tunnel`.
import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { userInfo } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { cli, curl, mintRaw, inOneHour, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { cleanEnv, gatewayFlags, startTunnel, writeToken, type TunnelProcess } from './support/tunnelClient.ts';
import { connectTunnel, webSocketTunnel } from './support/tunnelPeers.ts';
import { echoService, echoThrough, httpAndWebSocketService, publishedRoute, publishTop, restartGateway, startPublisher, type PublisherProcess } from './support/publishPeers.ts';

const MiB = 1 << 20;

/** Routes beside the one above: a policy that pins the publisher's certificate, and a templated unix: tcp route. */
const pinnedRoute = (fingerprint: string) => `  - name: pinned
    path: /pinned/{user}/{service}/
    tunnel: "{service}.{user}.pinned"
    protocols: [http, tcp]
    upstream: published:{user}/{service}
    policy: |
      allow if user($u), param("user", $u), publisher_fingerprint("${fingerprint}");
`;
const socketsRoute = (dir: string) => `  - name: user-sockets
    protocols: [tcp]
    tunnel: "{service}.{user}.local"
    upstream: unix:${dir}/{user}/{service}.sock
    socketOwner: user
    policy: |
      allow if user($u), param("user", $u);
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
/** The gateway after a restart (the harness knows only the first one). */
let restarted: ChildProcess | undefined;
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
  restarted?.kill('SIGKILL');
  for (const s of servers) s.close();
  if (!restarted) await h?.stop();
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

  it("lists what alice publishes on her portal page, with a link to open it", async () => {
    const jar = join(home, 'portal-cookies.txt');
    const signIn = await curl(h, '/.well-known/gatehouse/session', { client: alice, args: ['-c', jar, '--data-urlencode', `token=${aliceToken}`] });
    expect(signIn.status).toBe(303);
    const portal = await curl(h, '/.well-known/gatehouse/', { client: alice, args: ['-b', jar] });
    expect(portal.status).toBe(200);
    const published = /<table id="published">([\s\S]*?)<\/table>/.exec(portal.body)?.[1] ?? '';
    expect(published).toContain('<td>web</td>');
    expect(published).toContain('<td>echo</td>');
    expect(published).toContain(`<td>${publisherId}</td>`);
    expect(portal.body).toContain('href="/~alice/web/"');
  });

  it('carries a request body (8 MiB POST) to the published service', async () => {
    const file = join(home, 'upload.bin');
    const data = randomBytes(8 * MiB);
    writeFileSync(file, data);
    const res = await curl(h, '/~alice/web/upload', { client: alice, token: aliceToken, args: ['-X', 'POST', '--data-binary', `@${file}`] });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ path: '/upload', user: 'alice', received: 8 * MiB, sha256: createHash('sha256').update(data).digest('hex') });
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

  it('carries a tunnel over the WebSocket tunnel endpoint to the same published service', async () => {
    const opened = await webSocketTunnel(h, alice, 'echo.alice', aliceToken);
    if (!opened.ok) throw new Error(`refused: ${opened.status} ${opened.body}`);
    const echoed = new Promise<string>((resolve) => opened.end.onData((d) => resolve(d.toString())));
    await opened.end.write(Buffer.from('over websocket'));
    expect(await echoed).toBe('over websocket');
    opened.end.destroy();
    await h.waitForAudit((r) => r.event === 'tunnel.close' && r.publisher === publisherId && (r.detail as { transport?: string } | undefined)?.transport === 'websocket-tunnel');
  });

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
    // A token narrowed to publishing `jupyter` for 8 h (as a batch job gets it) cannot publish `web` (exit 4,
    // the reason on stderr), nor be used for requests.
    execFileSync(process.execPath, [cli, 'token', 'attenuate', '--pubkey', join(h.dir, 'certs', 'token-root.pub'), '--token-file', join(bobHome, 'bob.token'), '--publish', 'jupyter', '--ttl', '8h', '--out', join(bobHome, 'narrow.token')]);
    expect((await curl(h, '/~bob/web/x', { client: bob, token: readFileSync(join(bobHome, 'narrow.token'), 'utf8').trim() })).status).toBe(403);
    const narrowFlags = bobFlags.map((f) => (f.endsWith('bob.token') ? join(bobHome, 'narrow.token') : f));
    const narrow = startPublisher([...narrowFlags, `web=unix:${sock}`], cleanEnv(bobHome));
    expect(await new Promise((r) => narrow.proc.once('exit', r))).toBe(4);
    expect(narrow.stderr()).toMatch(/403.*not allowed to publish web/);
    await h.waitForAudit((r) => r.event === 'publish.open' && r.decision === 'deny' && r.status === 403 && /publish web/.test(r.reason ?? ''));
  }, 30_000);

  it('takes a second publisher of the same service as a replica (no 409), which leaves cleanly on SIGTERM', async () => {
    const dup = startPublisher([...aliceFlags(), `web=unix:${join(home, 'private', 'web.sock')}`], cleanEnv(home));
    const dupId = (await dup.waitForStderr(/published as alice through \S+ \(publisher ([0-9a-f]+)\)/))[1] as string;
    expect(await dup.stop('SIGTERM')).toBe(0);
    expect((await h.waitForAudit((r) => r.event === 'publish.close' && r.publisher === dupId)).reason).toBe('publisher said goodbye');
  });
});

describe('policy facts, templates, metrics', () => {
  let userSockets: string;
  it('gives route policies publisher_fingerprint(), so a route can require the publisher\'s certificate (survives a reload)', async () => {
    userSockets = mkdtempSync(join(tmpdir(), 'gatehouse-user-sockets-'));
    appendFileSync(join(h.dir, 'routes.yaml'), pinnedRoute(alice.fingerprint) + pinnedRoute('sha256:' + '0'.repeat(64)).replace(/pinned/g, 'pinned-other') + socketsRoute(userSockets));
    h.proc.kill('SIGHUP');
    await h.waitForAudit((r) => r.event === 'config.reload' && r.decision === 'allow');
    expect((await curl(h, '/pinned/alice/web/a', { client: alice, token: aliceToken })).status).toBe(200);
    expect((await curl(h, '/pinned-other/alice/web/a', { client: alice, token: aliceToken })).status).toBe(403);
    const denied = await h.waitForAudit((r) => r.event === 'request' && r.route === 'pinned-other');
    expect(denied.decision).toBe('deny');
  });

  it('reaches a templated unix: tcp route by tunnel name, with socketOwner checked on the captured user', async () => {
    const me = userInfo().username;
    const sockets = userSockets;
    mkdirSync(join(sockets, me), { recursive: true });
    servers.push(await echoService(join(sockets, me, 'db.sock')));
    const mine = token(me);
    const tunnel = await connectTunnel(h, alice, `db.${me}.local:443`, { 'Proxy-Authorization': `Bearer ${mine}` });
    if (!tunnel.ok) throw new Error(`refused: ${tunnel.status} ${tunnel.body}`);
    const echoed = new Promise<string>((resolve) => tunnel.end.onData((d) => resolve(d.toString())));
    await tunnel.end.write(Buffer.from('ping'));
    expect(await echoed).toBe('ping');
    tunnel.end.destroy();
    const open = await h.waitForAudit((r) => r.event === 'tunnel.open' && r.route === 'user-sockets');
    expect(open.upstream).toBe(`unix:${sockets}/${me}/db.sock`);
    // Another user's token on the same name: the policy's param("user") check refuses it.
    const other = await connectTunnel(h, alice, `db.${me}.local:443`, { 'Proxy-Authorization': `Bearer ${aliceToken}` });
    expect(other.ok ? 200 : other.status).toBe(403);
  });

  it('exports publishers, services and streams as metrics', async () => {
    const start = h.audit().find((r) => r.event === 'gateway.start');
    const address = (start?.detail as { metrics?: string } | undefined)?.metrics as string;
    const text = await (await fetch(`http://${address}/metrics`)).text();
    expect(text).toMatch(/^gatehouse_publishers_connected 1$/m);
    expect(text).toMatch(/^gatehouse_published_services 2$/m);
    expect(text).toMatch(/^gatehouse_published_streams_open \d+$/m);
  });
});

describe('limits', () => {
  it('refuses past publishersPerUser (429) and streamsPerPublisher (503 service busy), each with its reason, as the reloaded config says', async () => {
    const config = join(h.dir, 'routes.yaml');
    const original = readFileSync(config, 'utf8');
    writeFileSync(config, original.replace('  streamsPerPublisher: 400\n', '  streamsPerPublisher: 1\n  publishersPerUser: 1\n'));
    const reloads = h.audit().filter((r) => r.event === 'config.reload').length;
    h.proc.kill('SIGHUP');
    await h.waitForAudit(() => h.audit().filter((r) => r.event === 'config.reload' && r.decision === 'allow').length > reloads);
    try {
      const second = startPublisher([...aliceFlags(), `other=unix:${join(home, 'private', 'echo.sock')}`], cleanEnv(home));
      await second.waitForStderr(/429 .*"too many publishers"; retrying/);
      await second.stop('SIGKILL');
      await h.waitForAudit((r) => r.event === 'publish.open' && r.status === 429 && /publish.publishersPerUser 1/.test(r.reason ?? ''));
      const first = await connectTunnel(h, alice, 'echo.alice:443', { 'Proxy-Authorization': `Bearer ${aliceToken}` });
      if (!first.ok) throw new Error(`refused: ${first.status}`);
      const busy = await connectTunnel(h, alice, 'echo.alice:443', { 'Proxy-Authorization': `Bearer ${aliceToken}` });
      expect(busy.ok ? 200 : busy.status).toBe(503);
      expect(busy.ok ? '' : busy.body).toMatch(/service busy/);
      await h.waitForAudit((r) => r.route === 'published' && r.status === 503 && /streams open \(publish.streamsPerPublisher 1\)/.test(r.reason ?? ''));
      // HTTP says the same (its keep-alive connections are streams too), not a generic 502.
      const request = await curl(h, '/~alice/web/busy', { client: alice, token: aliceToken });
      expect(request.status).toBe(503);
      expect(request.body).toMatch(/service busy/);
      first.end.destroy();
    } finally {
      writeFileSync(config, original);
      const now = h.audit().filter((r) => r.event === 'config.reload').length;
      h.proc.kill('SIGHUP');
      await h.waitForAudit(() => h.audit().filter((r) => r.event === 'config.reload').length > now);
    }
  }, 30_000);
});

describe('revocation', () => {
  it('a revoked token ends its publisher (publish.close "token revoked"), which then stops for good', async () => {
    const tokenFile = writeToken(h, join(home, 'revocable.token'), 'alice');
    const flags = aliceFlags().map((f) => (f.endsWith('alice.token') ? tokenFile : f));
    const revocable = startPublisher([...flags, `revocable=unix:${join(home, 'private', 'echo.sock')}`], cleanEnv(home));
    const id = (await revocable.waitForStderr(/published as alice through \S+ \(publisher ([0-9a-f]+)\)/))[1] as string;
    const open = await h.waitForAudit((r) => r.event === 'publish.open' && r.publisher === id);
    appendFileSync(h.revocationList, `${open.token?.revocationIds?.[0]}\n`);
    const closed = await h.waitForAudit((r) => r.event === 'publish.close' && r.publisher === id, 10_000);
    expect(closed.reason).toBe('token revoked');
    expect(await new Promise((r) => revocable.proc.once('exit', r))).toBe(4);
    expect(revocable.stderr()).toMatch(/403/);
    // alice's other publisher, with its own token, is untouched.
    expect((await curl(h, '/~alice/web/still', { client: alice, token: aliceToken })).status).toBe(200);
  }, 30_000);
});

describe('when one end goes away', () => {
  it('publisher killed: in-flight tunnels end with close records, new requests get 503 within 1 s', async () => {
    const inFlight = await connectTunnel(h, alice, 'echo.alice:443', { 'Proxy-Authorization': `Bearer ${aliceToken}` });
    if (!inFlight.ok) throw new Error(`refused: ${inFlight.status}`);
    const echoed = new Promise<string>((resolve) => inFlight.end.onData((d) => resolve(d.toString())));
    await inFlight.end.write(Buffer.from('before'));
    expect(await echoed).toBe('before');
    const killedAt = performance.now();
    await publisher.stop('SIGKILL');
    let firstUnpublished: number | undefined;
    let status = 0;
    while (performance.now() - killedAt < 3000) {
      status = (await curl(h, '/~alice/web/', { client: alice, token: aliceToken })).status;
      if (status === 503) {
        firstUnpublished = performance.now() - killedAt;
        break;
      }
    }
    console.log(`publish e2e: first 503 ${Math.round(firstUnpublished ?? -1)} ms after the publisher was killed`);
    expect(status).toBe(503);
    expect(firstUnpublished).toBeLessThan(1000);
    // The gateway cuts the client's side of the tunnel: a reset, not an end, as the transfer did not complete.
    let ended = false;
    void inFlight.end.peerEnded.then(() => (ended = true));
    await inFlight.end.closed;
    expect(ended).toBe(false);
    const closed = await h.waitForAudit((r) => r.event === 'tunnel.close' && r.publisher === publisherId && r.bytesIn === 6 && r.route === 'published');
    expect(closed.reason).toMatch(/^upstream error: publisher lost/);
    const gone = await h.waitForAudit((r) => r.event === 'publish.close' && r.publisher === publisherId);
    expect(gone).toMatchObject({ token: { user: 'alice' }, detail: { services: ['web', 'echo'] } });
    expect((gone.detail as { streams: number }).streams).toBeGreaterThanOrEqual(1);
  });

  it('gateway killed and restarted: the publisher is back and serving within 10 s', async () => {
    publisher = startPublisher([...aliceFlags(), `web=unix:${join(home, 'private', 'web.sock')}`], cleanEnv(home));
    await publisher.waitForStderr(/published as alice/);
    const before = publisher.stderr().length;
    restarted = await restartGateway(h, 1500);
    const backAt = performance.now();
    await publisher.waitForStderr(/connection to \S+ lost/, 5000);
    let status = 0;
    while (performance.now() - backAt < 10_000) {
      status = (await curl(h, '/~alice/web/again', { client: alice, token: aliceToken })).status;
      if (status === 200) break;
      await wait(100);
    }
    const serving = performance.now() - backAt;
    console.log(`publish e2e: requests work again ${Math.round(serving)} ms after the gateway was back`);
    expect(status).toBe(200);
    expect(serving).toBeLessThan(10_000);
    expect(publisher.stderr().slice(before)).toMatch(/re-registered as alice/);
  }, 30_000);
});
