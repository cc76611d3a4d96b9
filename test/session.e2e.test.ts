// Browser sessions through a real `gatehouse serve` and real curl (with a cookie jar): signing in binds
// the session to the certificate, revocation ends it, the upstream never sees the gateway's cookie,
// cross-origin requests and WebSocket upgrades carrying the cookie are refused before the upstream.
import { appendFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { join } from 'node:path';
import { startEchoService } from '../src/demo/echoService.ts';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { curlReply, inOneHour, mintRaw, startHarness, type CurlReply, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';

const COOKIE = '__Host-gatehouse-session';
const routes = `  - name: app
    path: /app/
    protocols: [http, websocket]
    upstream: unix:run/app.sock
    policy: |
      allow if user($u);
  - name: kept
    path: /kept/
    stripPrefix: false
    upstream: unix:run/app.sock
    policy: |
      allow if user($u);
  - name: mine
    path: /~{user}/{service}/
    upstream: unix:run/users/{user}/{service}.sock
    policy: |
      allow if user($u), param("user", $u);
      allow if user("bob"), param("service", "shared");
`;

let h: Harness;
let alice: TestClientCertificate;
let bob: TestClientCertificate;
let app: Server;
const seen: Array<{ url: string; headers: IncomingHttpHeaders }> = [];
let upgrades = 0;
let shared: Server;

type Reply = CurlReply;
const curlRaw = (client: TestClientCertificate, path: string, args: string[] = []): Promise<Reply> => curlReply(h, client, path, args);

const token = (user: string, extra = '') => mintRaw(h.rootKey.privateKey, `user("${user}"); check if time($t), $t <= ${inOneHour()}; ${extra}`);
const rootPublic = () => biscuit.PublicKey.fromString(h.rootKey.publicKey.replace(/^ed25519\//, ''), biscuit.SignatureAlgorithm.Ed25519);
const revocationIds = (t: string) => biscuit.Biscuit.fromBase64(t, rootPublic()).getRevocationIdentifiers().map(String);

/** Signs in with curl; returns the reply and the cookie jar file curl wrote. */
async function signIn(client: TestClientCertificate, tokenText: string, next?: string): Promise<{ reply: Reply; jar: string }> {
  const jar = join(h.dir, `jar-${Math.random().toString(36).slice(2)}.txt`);
  const form = ['--data-urlencode', `token=${tokenText}`, ...(next !== undefined ? ['--data-urlencode', `next=${next}`] : [])];
  const reply = await curlRaw(client, '/.well-known/gatehouse/session', ['-c', jar, ...form]);
  return { reply, jar };
}

/** The session cookie's value as curl stored it in the jar. */
function cookieFromJar(jar: string): string {
  const line = readFileSync(jar, 'utf8').split('\n').find((l) => l.includes(`\t${COOKIE}\t`));
  if (!line) throw new Error(`no ${COOKIE} in the jar`);
  return line.split('\t')[6] as string;
}

function openWebSocket(path: string, client: TestClientCertificate, headers: Record<string, string>): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://localhost:${h.port}${path}`, { ca: h.pki.caCert, cert: client.cert, key: client.key, headers, perMessageDeflate: false });
    ws.once('open', () => {
      ws.close();
      resolve({ status: 101 });
    });
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      ws.on('error', () => {});
      ws.terminate();
      resolve({ status: res.statusCode ?? 0 });
    });
    ws.once('error', reject);
  });
}

beforeAll(async () => {
  h = await startHarness({ routes });
  alice = await h.pki.client('alice');
  bob = await h.pki.client('bob');
  const socket = join(h.dir, 'run', 'app.sock');
  mkdirSync(join(h.dir, 'run'), { recursive: true });
  rmSync(socket, { force: true });
  app = createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    req.resume();
    const host = req.headers.host ?? '';
    if (req.url === '/redirect') return void res.writeHead(302, { location: '/tree?x=1' }).end();
    if (req.url === '/absolute') return void res.writeHead(302, { location: `http://${host}/tree` }).end();
    if (req.url === '/elsewhere') return void res.writeHead(302, { location: 'https://example.org/tree' }).end();
    if (req.url === '/relative') return void res.writeHead(302, { location: 'tree' }).end();
    if (req.url === '/cookies') {
      return void res.writeHead(200, { 'set-cookie': ['theme=dark; Path=/; HttpOnly', 'lang=en; Path=/settings', 'nopath=1', `${COOKIE}=planted; Path=/; Secure`] }).end('ok');
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello ${req.headers['x-gatehouse-user']}\n`);
  });
  const wss = new WebSocketServer({ server: app, perMessageDeflate: false });
  wss.on('connection', (ws) => {
    upgrades++;
    ws.send('hi');
  });
  await new Promise<void>((resolve) => app.listen(socket, () => resolve()));
  shared = await startEchoService(join(h.dir, 'run', 'users', 'alice', 'shared.sock'), 'shared');
});

afterAll(async () => {
  app?.close();
  shared?.close();
  await h?.stop();
});

describe('signing in', () => {
  it('shows who the certificate says you are, as a strict, uncached page without script', async () => {
    const page = await curlRaw(alice, '/.well-known/gatehouse/');
    expect(page.status).toBe(200);
    expect(page.body).toContain('id="client-cn">alice<');
    expect(page.body).toContain('action="/.well-known/gatehouse/session"');
    expect(page.body).not.toMatch(/<script|https?:\/\/(?!www\.w3)/);
    expect(page.headers['cache-control']).toEqual(['no-store']);
    expect(page.headers['content-security-policy']?.[0]).toMatch(/^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/=]+'; form-action 'self'; frame-ancestors 'none'/);
  });

  it('sets a __Host- cookie (Secure, HttpOnly, SameSite=Strict) and sends the browser to `next`', async () => {
    const { reply, jar } = await signIn(alice, token('alice'), '/app/notebook?x=1');
    expect(reply.status).toBe(303);
    expect(reply.headers.location).toEqual(['/app/notebook?x=1']);
    const setCookie = reply.headers['set-cookie']?.[0] ?? '';
    expect(setCookie).toMatch(new RegExp(`^${COOKIE}=[A-Za-z0-9_=-]+; Max-Age=(\\d+); Path=/; Secure; HttpOnly; SameSite=Strict$`));
    // The token expires within the hour: the session never outlives it.
    expect(Number(/Max-Age=(\d+)/.exec(setCookie)?.[1])).toBeLessThanOrEqual(3600);
    const start = await h.waitForAudit((r) => r.event === 'session.start' && r.decision === 'allow');
    expect(start).toMatchObject({ status: 303, client: { cn: 'alice' }, token: { user: 'alice' }, detail: { next: '/app/notebook?x=1' } });

    const page = await curlRaw(alice, '/app/hello', ['-b', jar]);
    expect(page.status).toBe(200);
    expect(page.body).toBe('hello alice\n');
    const record = await h.waitForAudit((r) => r.event === 'request' && r.route === 'app' && r.path === '/app/hello');
    expect(record).toMatchObject({ decision: 'allow', auth: 'session', token: { user: 'alice' } });

    const portal = await curlRaw(alice, '/.well-known/gatehouse/', ['-b', jar]);
    expect(portal.body).toContain('id="user">alice<');
  });

  it('refuses a `next` that leaves the gateway, and sets no cookie', async () => {
    for (const next of ['//evil.example/x', 'https://evil.example/', '/\\evil.example', 'javascript:alert(1)', '/ok\r\nx: y']) {
      const { reply } = await signIn(alice, token('alice'), next);
      expect(reply.status, next).toBe(400);
      expect(reply.headers['set-cookie'], next).toBeUndefined();
      expect(reply.headers.location, next).toBeUndefined();
    }
  });

  it('refuses tokens that cannot be used with this certificate, expired, or badly signed', async () => {
    const boundToBob = token('alice', `check if client_fingerprint("${bob.fingerprint}");`);
    const past = mintRaw(h.rootKey.privateKey, 'user("alice"); check if time($t), $t <= 2020-01-01T00:00:00Z;');
    const forged = mintRaw(new biscuit.KeyPair(biscuit.SignatureAlgorithm.Ed25519).getPrivateKey().toString(), `user("alice"); check if time($t), $t <= ${inOneHour()};`);
    expect((await signIn(alice, boundToBob)).reply.status).toBe(403);
    expect((await signIn(alice, past)).reply.status).toBe(403);
    expect((await signIn(alice, forged)).reply.status).toBe(401);
    // A token limited to a route is still usable here: sign-in cannot know which route comes next.
    expect((await signIn(alice, token('alice', 'check if route("app");'))).reply.status).toBe(303);
    const denied = h.audit().filter((r) => r.event === 'session.start' && r.decision === 'deny');
    expect(denied.map((r) => r.status)).toEqual(expect.arrayContaining([403, 403, 401]));
    expect(denied.find((r) => r.status === 403)?.reason).toMatch(/client_fingerprint|time/);
  });

  it('signs out: the cookie is cleared and the event is recorded', async () => {
    const { jar } = await signIn(alice, token('alice'));
    const out = await curlRaw(alice, '/.well-known/gatehouse/session/end', ['-X', 'POST', '-b', jar]);
    expect(out.status).toBe(303);
    expect(out.headers['set-cookie']?.[0]).toMatch(new RegExp(`^${COOKIE}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Strict$`));
    expect(await h.waitForAudit((r) => r.event === 'session.end')).toMatchObject({ decision: 'allow', token: { user: 'alice' } });
  });
});

describe('what the session may do', () => {
  it('does not work with another certificate: a cookie from certificate A fails with certificate B', async () => {
    const { jar } = await signIn(alice, token('alice'));
    expect((await curlRaw(alice, '/app/a', ['-b', jar])).status).toBe(200);
    const stolen = await curlRaw(bob, '/app/b', ['-b', jar]);
    expect(stolen.status).toBe(403);
    expect(seen.some((s) => s.url === '/b')).toBe(false);
    const record = await h.waitForAudit((r) => r.event === 'request' && r.path === '/app/b');
    expect(record).toMatchObject({ decision: 'deny', auth: 'session', client: { cn: 'bob' } });
    expect(record.reason).toContain(alice.fingerprint);
  });

  it('never forwards the gateway cookie upstream, keeps the application cookies, and drops the ones an upstream plants', async () => {
    const { jar } = await signIn(alice, token('alice'));
    const value = cookieFromJar(jar);
    const reply = await curlRaw(alice, '/app/cookies', ['-H', `Cookie: theme=light; ${COOKIE}=${value}; lang=fr`]);
    expect(reply.status).toBe(200);
    const got = seen.find((s) => s.url === '/cookies');
    expect(got?.headers.cookie).toBe('theme=light; lang=fr');
    expect(JSON.stringify(seen)).not.toContain(value.slice(0, 40));
    expect(JSON.stringify(seen)).not.toContain(COOKIE);
    // Set-Cookie paths go under the stripped prefix; the upstream cannot set the gateway's cookie.
    expect(reply.headers['set-cookie']).toEqual(['theme=dark; Path=/app/; HttpOnly', 'lang=en; Path=/app/settings', 'nopath=1']);
  });

  it('lets Bearer win over the cookie', async () => {
    const { jar } = await signIn(alice, token('alice'));
    const reply = await curlRaw(alice, '/app/bearer', ['-b', jar, '-H', `Authorization: Bearer ${token('carol')}`]);
    expect(reply.body).toBe('hello carol\n');
    expect(await h.waitForAudit((r) => r.event === 'request' && r.path === '/app/bearer')).toMatchObject({ auth: 'bearer', token: { user: 'carol' } });
  });

  it('refuses a state-changing request with the cookie unless Origin is the route\'s own, before the upstream', async () => {
    const { jar } = await signIn(alice, token('alice'));
    const own = `https://localhost:${h.port}`;
    const cross = await curlRaw(alice, '/app/post-cross', ['-b', jar, '-X', 'POST', '-d', 'x=1', '-H', 'Origin: https://evil.example']);
    const none = await curlRaw(alice, '/app/post-none', ['-b', jar, '-X', 'POST', '-d', 'x=1']);
    const same = await curlRaw(alice, '/app/post-same', ['-b', jar, '-X', 'POST', '-d', 'x=1', '-H', `Origin: ${own}`]);
    const bearer = await curlRaw(alice, '/app/post-bearer', ['-X', 'POST', '-d', 'x=1', '-H', 'Origin: https://evil.example', '-H', `Authorization: Bearer ${token('alice')}`]);
    expect([cross.status, none.status, same.status, bearer.status]).toEqual([403, 403, 200, 200]);
    expect(seen.map((s) => s.url)).not.toContain('/post-cross');
    expect(seen.map((s) => s.url)).not.toContain('/post-none');
    expect((await h.waitForAudit((r) => r.target === '/app/post-cross')).reason).toContain('evil.example');
  });

  it('refuses a cross-origin WebSocket upgrade with a valid cookie; it never reaches the upstream', async () => {
    const { jar } = await signIn(alice, token('alice'));
    const cookie = `${COOKIE}=${cookieFromJar(jar)}`;
    const before = upgrades;
    expect(await openWebSocket('/app/ws-cross', alice, { cookie, origin: 'https://evil.example' })).toEqual({ status: 403 });
    expect(await openWebSocket('/app/ws-none', alice, { cookie })).toEqual({ status: 403 });
    expect(upgrades).toBe(before);
    expect(seen.map((s) => s.url)).not.toContain('/ws-cross');
    expect(await openWebSocket('/app/ws-same', alice, { cookie, origin: `https://localhost:${h.port}` })).toEqual({ status: 101 });
    await new Promise((r) => setTimeout(r, 100));
    expect(upgrades).toBe(before + 1);
    expect(await h.waitForAudit((r) => r.target === '/app/ws-cross')).toMatchObject({ decision: 'deny', status: 403, auth: 'session', protocol: 'websocket' });
  });

  it('sends a browser without a session to sign in, and a program gets 401', async () => {
    const browser = await curlRaw(alice, '/app/tree?x=1', ['-H', 'Accept: text/html', '-H', 'Sec-Fetch-Mode: navigate']);
    expect(browser.status).toBe(303);
    expect(browser.headers.location).toEqual([`/.well-known/gatehouse/?next=${encodeURIComponent('/app/tree?x=1')}`]);
    expect((await curlRaw(alice, '/app/tree')).status).toBe(401);
  });

  it('ends the session as soon as its token is revoked, without a restart', async () => {
    const original = token('alice');
    const { jar } = await signIn(alice, original);
    expect((await curlRaw(alice, '/app/before-revoke', ['-b', jar])).status).toBe(200);
    appendFileSync(h.revocationList, `${revocationIds(original)[0]}\n`);
    let status = 0;
    for (let i = 0; i < 50 && status !== 403; i++) {
      status = (await curlRaw(alice, '/app/after-revoke', ['-b', jar])).status;
      if (status !== 403) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(403);
    const portal = await curlRaw(alice, '/.well-known/gatehouse/', ['-b', jar]);
    expect(portal.body).toContain('token revoked');
    expect((await signIn(alice, original)).reply.status).toBe(403);
  });
});

describe('reverse-proxy conventions for a stripped prefix', () => {
  it('puts Location back under the prefix (paths and the gateway host), leaves relative and foreign ones', async () => {
    const t = token('alice');
    const get = (path: string) => curlRaw(alice, path, ['-H', `Authorization: Bearer ${t}`]);
    expect((await get('/app/redirect')).headers.location).toEqual(['/app/tree?x=1']);
    expect((await get('/app/absolute')).headers.location).toEqual([`https://localhost:${h.port}/app/tree`]);
    expect((await get('/app/elsewhere')).headers.location).toEqual(['https://example.org/tree']);
    expect((await get('/app/relative')).headers.location).toEqual(['tree']);
    // A route that keeps its prefix passes Location unchanged.
    expect((await get('/kept/redirect')).headers.location).toBeUndefined();
  });
});

describe('the portal', () => {
  it('lists what the user can open, their own activity, and who used their services', async () => {
    expect((await curlRaw(bob, '/~alice/shared/from-bob', ['-H', `Authorization: Bearer ${token('bob')}`])).status).toBe(200);
    const { jar } = await signIn(alice, token('alice'));
    expect((await curlRaw(alice, '/~alice/shared/mine', ['-b', jar])).status).toBe(200);
    await h.waitForAudit((r) => r.path === '/~alice/shared/mine');
    const portal = await curlRaw(alice, '/.well-known/gatehouse/', ['-b', jar]);
    const section = (id: string) => new RegExp(`id="${id}">([\\s\\S]*?)</(ul|table|p)>`).exec(portal.body)?.[1] ?? '';
    const links = section('links');
    expect(links).toContain('href="/app/"');
    expect(links).toContain('href="/~alice/shared/"');
    expect(links).not.toContain('/~bob/');
    expect(section('activity')).toContain('/~alice/shared/mine');
    expect(section('activity')).not.toContain('from-bob');
    const usedBy = section('used-by');
    expect(usedBy).toContain('<td>bob</td>');
    expect(usedBy).toContain(bob.fingerprint);
    expect(usedBy).toContain('/~alice/shared/from-bob');
    // bob's portal does not show alice's service's visitors, nor alice's activity.
    const { jar: bobJar } = await signIn(bob, token('bob'));
    const bobs = await curlRaw(bob, '/.well-known/gatehouse/', ['-b', bobJar]);
    expect(bobs.body).toContain('id="user">bob<');
    expect(bobs.body).not.toContain('/~alice/shared/mine');
  });
});
