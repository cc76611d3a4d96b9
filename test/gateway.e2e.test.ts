// End to end through a real `gatehouse serve` with real curl: who gets in, who does not, what
// reaches the UNIX-socket service, and the one audit record each attempt leaves behind.
import { chownSync, mkdirSync, appendFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { join } from 'node:path';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEchoService, type EchoReply } from '../src/demo/echoService.ts';
import type { AuditRecord } from '../src/audit/auditRecord.ts';
import { curl, inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import { makeTestPki, type TestClientCertificate } from './support/pki.ts';

const isRoot = process.getuid?.() === 0;

let h: Harness;
let alice: TestClientCertificate;
let stranger: TestClientCertificate;
let echo: Server;
let nobodyEcho: Server;
let upstreamHits = 0;
let aliceToken: string;
let truncating: NetServer;

const routes = `  - name: demo
    path: /demo/
    upstream: unix:run/demo.sock
    policy: |
      allow if user($u);
  - name: other
    path: /other/
    upstream: unix:run/demo.sock
    policy: |
      allow if user($u);
  - name: hostcheck
    path: /hostcheck/
    upstream: unix:run/demo.sock
    policy: |
      allow if user($u), host("localhost");
  - name: truncating
    path: /truncated/
    upstream: unix:run/truncating.sock
    policy: |
      allow if user($u);
  - name: users
    path: /~{user}/{service}/
    upstream: unix:run/users/{user}/{service}.sock
    socketOwner: user
    policy: |
      allow if user($u), param("user", $u);
`;

const token = (user: string, extra = '') => mintRaw(h.rootKey.privateKey, `user("${user}"); check if time($t), $t <= ${inOneHour()}; ${extra}`);

/** The audit records of requests, newest last. */
const requests = () => h.audit().filter((r) => r.event === 'request');

function expectAuditFields(r: AuditRecord & { time: string }) {
  expect(r.time).toMatch(/^\d{4}-\d\d-\d\dT/);
  expect(r.conn).toMatch(/^[0-9a-f]{12}$/);
  expect(r.source).toMatch(/^127\.0\.0\.1:\d+$/);
  expect(r.client?.cn).toBe('alice');
  expect(r.client?.fingerprint).toBe(alice.fingerprint);
  expect(r.client?.serial).toMatch(/^[0-9a-f]+$/);
  expect(r.client?.issuer).toContain('CN=gatehouse dev CA');
  expect(typeof r.durationMs).toBe('number');
}

beforeAll(async () => {
  h = await startHarness({ routes });
  alice = await h.pki.client('alice');
  stranger = await (await makeTestPki(join(h.dir, 'other-ca'))).client('alice');
  echo = await startEchoService(join(h.dir, 'run', 'demo.sock'), 'demo');
  echo.on('request', () => upstreamHits++);
  mkdirSync(join(h.dir, 'run', 'users', 'nobody'), { recursive: true });
  nobodyEcho = await startEchoService(join(h.dir, 'run', 'users', 'nobody', 'svc.sock'), 'nobody-svc');
  nobodyEcho.on('request', () => upstreamHits++);
  aliceToken = token('alice');
  // An upstream that promises 100 bytes, sends 5 and dies.
  truncating = createNetServer((sock) => sock.once('data', () => sock.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello', () => sock.destroy())));
  await new Promise<void>((ok) => truncating.listen(join(h.dir, 'run', 'truncating.sock'), ok));
});

afterAll(async () => {
  echo?.close();
  nobodyEcho?.close();
  truncating?.close();
  await h?.stop();
});

describe('gateway core, end to end with curl', () => {
  it('forwards an allowed request to the UNIX socket with the verified identity', async () => {
    const res = await curl(h, '/demo/hello?x=1', { client: alice, token: aliceToken });
    expect(res.status).toBe(200);
    const reply = JSON.parse(res.body) as EchoReply;
    expect(reply.url).toBe('/hello?x=1');
    expect(reply.identity.user).toBe('alice');
    expect(reply.identity['client-subject']).toContain('CN=alice');
    expect(reply.identity['client-fingerprint']).toBe(alice.fingerprint);
    expect(reply.headers.authorization).toBeUndefined();
    const r = await h.waitForAudit((a) => a.event === 'request' && a.decision === 'allow' && a.path === '/demo/hello');
    expectAuditFields(r);
    expect(r).toMatchObject({ route: 'demo', protocol: 'http', method: 'GET', status: 200, token: { user: 'alice' } });
    expect(r.upstream).toMatch(/^unix:\/.*run\/demo\.sock$/);
    expect(r.token?.revocationIds?.[0]).toMatch(/^[0-9a-f]{64,}$/);
    expect(r.bytesOut).toBe(Buffer.byteLength(res.body));
  });

  it('counts request body bytes', async () => {
    const res = await curl(h, '/demo/upload', { client: alice, token: aliceToken, args: ['--data-binary', 'x'.repeat(12345)] });
    expect(res.status).toBe(200);
    expect((JSON.parse(res.body) as EchoReply).bodyBytes).toBe(12345);
    const r = await h.waitForAudit((a) => a.event === 'request' && a.path === '/demo/upload' && a.status === 200);
    expect(r.bytesIn).toBe(12345);
  });

  it('refuses a client without a certificate at the handshake', async () => {
    const before = upstreamHits;
    const res = await curl(h, '/demo/x', { token: aliceToken });
    expect(res.status).toBe(0);
    expect(res.exitCode).not.toBe(0);
    expect(upstreamHits).toBe(before);
    const r = await h.waitForAudit((a) => a.event === 'tls.reject' && /certificate/i.test(a.reason ?? ''));
    expect(r).toMatchObject({ decision: 'deny' });
    expect(r.source).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it('refuses a certificate from another CA at the handshake', async () => {
    const rejects = h.audit().filter((a) => a.event === 'tls.reject').length;
    const res = await curl(h, '/demo/x', { client: stranger, token: aliceToken });
    expect(res.status).toBe(0);
    await h.waitForAudit(() => h.audit().filter((a) => a.event === 'tls.reject').length > rejects);
    const r = h.audit().filter((a) => a.event === 'tls.reject').at(-1);
    expect(r?.reason).toMatch(/certificate|unknown ca|verify/i);
  });

  it('answers 401 without a token', async () => {
    const res = await curl(h, '/demo/no-token', { client: alice });
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body)).toEqual({ error: 'missing bearer token' });
    const r = await h.waitForAudit((a) => a.event === 'request' && a.path === '/demo/no-token');
    expectAuditFields(r);
    expect(r).toMatchObject({ decision: 'deny', status: 401, route: 'demo' });
    expect(r.reason).toMatch(/no Authorization/);
  });

  it('answers 403 for a token restricted to another route, naming the failing check in the audit log', async () => {
    const t = token('alice', 'check if route("other");');
    expect((await curl(h, '/other/ok', { client: alice, token: t })).status).toBe(200);
    const res = await curl(h, '/demo/wrong-route', { client: alice, token: t });
    expect(res.status).toBe(403);
    expect(res.body).not.toMatch(/check if/);
    const r = await h.waitForAudit((a) => a.event === 'request' && a.path === '/demo/wrong-route');
    expectAuditFields(r);
    expect(r).toMatchObject({ decision: 'deny', status: 403, route: 'demo', token: { user: 'alice' } });
    expect(r.reason).toContain('check if route("other")');
  });

  it('answers 403 for an expired token', async () => {
    const t = mintRaw(h.rootKey.privateKey, 'user("alice"); check if time($t), $t <= 2020-01-01T00:00:00Z;');
    const res = await curl(h, '/demo/expired', { client: alice, token: t });
    expect(res.status).toBe(403);
    const r = await h.waitForAudit((a) => a.event === 'request' && a.path === '/demo/expired');
    expectAuditFields(r);
    expect(r).toMatchObject({ decision: 'deny', status: 403 });
    expect(r.reason).toContain('2020-01-01T00:00:00Z');
  });

  it('answers 403 for a revoked token once its id is in the revocation list', async () => {
    const t = token('alice');
    expect((await curl(h, '/demo/before-revoke', { client: alice, token: t })).status).toBe(200);
    const id = biscuit.Biscuit.fromBase64(t, biscuit.PublicKey.fromString(h.rootKey.publicKey.replace(/^ed25519\//, ''), biscuit.SignatureAlgorithm.Ed25519)).getRevocationIdentifiers()[0] as string;
    appendFileSync(h.revocationList, `${id}\n`);
    h.proc.kill('SIGHUP');
    let res;
    for (let i = 0; i < 50; i++) {
      res = await curl(h, '/demo/revoked', { client: alice, token: t });
      if (res.status === 403) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(res?.status).toBe(403);
    const r = await h.waitForAudit((a) => a.event === 'request' && a.path === '/demo/revoked' && a.status === 403);
    expectAuditFields(r);
    expect(r.reason).toContain(id);
    expect(r.token?.revocationIds).toContain(id);
  });

  it.each([
    ['/demo/%2e%2e/%2e%2e/etc/passwd', 400],
    ['/demo/..%2f..%2fetc', 400],
    ['/~..%2f..%2fnobody/svc/', 400],
    ['/~nobody/%2e%2e/', 404],
    ['/~.nobody/svc/', 400],
    ['/~nobody/svc%00/', 400],
  ])('never contacts an upstream for the traversal attempt %s', async (path, status) => {
    const before = upstreamHits;
    const t = token('nobody');
    const res = await curl(h, path, { client: alice, token: t });
    expect(res.status).toBe(status);
    expect(upstreamHits).toBe(before);
    const r = await h.waitForAudit((a) => a.event === 'request' && (a.target ?? a.path) === path);
    expect(r).toMatchObject({ decision: 'deny', status });
    expect(r.upstream).toBeUndefined();
  });

  it('never passes client-supplied identity or forwarding headers to the upstream', async () => {
    const spoof = ['X-Gatehouse-User: root', 'X-Gatehouse-Client-Fingerprint: sha256:00', 'X-Forwarded-For: 10.9.9.9', 'Forwarded: for=10.9.9.9', 'X-Real-IP: 10.9.9.9', 'Proxy-Authorization: Bearer x'];
    const res = await curl(h, '/demo/spoof', { client: alice, token: aliceToken, args: spoof.flatMap((s) => ['-H', s]) });
    expect(res.status).toBe(200);
    const reply = JSON.parse(res.body) as EchoReply;
    expect(reply.identity.user).toBe('alice');
    expect(reply.identity['client-fingerprint']).toBe(alice.fingerprint);
    expect(reply.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(reply.headers.forwarded).toBeUndefined();
    expect(reply.headers['x-real-ip']).toBeUndefined();
    expect(reply.headers['proxy-authorization']).toBeUndefined();
    const r = await h.waitForAudit((a) => a.event === 'request' && a.path === '/demo/spoof');
    expectAuditFields(r);
  });

  it('gives policies the host that routing matched (lowercase, without the port)', async () => {
    const res = await curl(h, '/hostcheck/x', { client: alice, token: aliceToken, args: ['-H', `Host: LocalHost:${h.port}`] });
    expect(res.status).toBe(200);
  });

  it('drops underscore variants of identity headers, rewrite headers and headers the client marks hop-by-hop', async () => {
    const spoof = ['X-Gatehouse_User: root', 'X_Forwarded_For: 10.9.9.9', 'X-Original-URL: /admin', 'X-Rewrite-URL: /admin', 'Connection: keep-alive, X-Custom', 'X-Custom: 1', 'X-Kept: yes'];
    const res = await curl(h, '/demo/spoof2', { client: alice, token: aliceToken, args: spoof.flatMap((s) => ['-H', s]) });
    expect(res.status).toBe(200);
    const headers = (JSON.parse(res.body) as EchoReply).headers;
    expect(Object.keys(headers).filter((k) => k.includes('_'))).toEqual([]);
    expect(headers['x-original-url']).toBeUndefined();
    expect(headers['x-rewrite-url']).toBeUndefined();
    expect(headers['x-custom']).toBeUndefined();
    expect(headers['x-kept']).toBe('yes');
    expect(headers['x-gatehouse-user']).toBe('alice');
  });

  it('cuts the client off when the upstream dies mid-response, and records why', async () => {
    const res = await curl(h, '/truncated/x', { client: alice, token: aliceToken });
    expect(res.exitCode).not.toBe(0);
    const r = await h.waitForAudit((a) => a.event === 'request' && a.path === '/truncated/x');
    expect(r).toMatchObject({ decision: 'allow', route: 'truncating', reason: 'upstream closed before the response was complete' });
  });

  it('refuses a socket owned by another user than the one the path names', async () => {
    const before = upstreamHits;
    const t = token('nobody');
    const res = await curl(h, '/~nobody/svc/x', { client: alice, token: t });
    expect(res.status).toBe(502);
    expect(res.body).not.toContain('uid');
    expect(upstreamHits).toBe(before);
    const r = await h.waitForAudit((a) => a.event === 'request' && a.path === '/~nobody/svc/x');
    expectAuditFields(r);
    expect(r).toMatchObject({ decision: 'deny', status: 502, route: 'users', token: { user: 'nobody' } });
    expect(r.reason).toMatch(/owned by uid \d+, not nobody/);
  });

  it.skipIf(!isRoot)('forwards to a socket owned by the user the path names (needs root to chown)', async () => {
    chownSync(join(h.dir, 'run', 'users', 'nobody', 'svc.sock'), 65534, 65534);
    const res = await curl(h, '/~nobody/svc/x', { client: alice, token: token('nobody') });
    expect(res.status).toBe(200);
    expect((JSON.parse(res.body) as EchoReply).service).toBe('nobody-svc');
    const denied = await curl(h, '/~nobody/svc/x', { client: alice, token: token('alice') });
    expect(denied.status).toBe(403);
  });

  it('never treats a numeric user name as a uid: a token for user "<my uid>" cannot reach my socket', async () => {
    const uid = String(process.getuid?.() ?? 0);
    mkdirSync(join(h.dir, 'run', 'users', uid), { recursive: true });
    const mine = await startEchoService(join(h.dir, 'run', 'users', uid, 'svc.sock'), 'numeric');
    let hits = 0;
    mine.on('request', () => hits++);
    try {
      const res = await curl(h, `/~${uid}/svc/x`, { client: alice, token: token(uid) });
      expect(res.status).toBe(502);
      expect(hits).toBe(0);
      const r = await h.waitForAudit((a) => a.event === 'request' && a.path === `/~${uid}/svc/x`);
      expect(r).toMatchObject({ decision: 'deny', status: 502, route: 'users' });
      expect(r.reason).toMatch(/not a valid user name/);
    } finally {
      mine.close();
    }
  });

  it('answers 404 for an unknown route, with an audit record', async () => {
    const res = await curl(h, '/nowhere', { client: alice, token: aliceToken });
    expect(res.status).toBe(404);
    const r = await h.waitForAudit((a) => a.event === 'request' && a.path === '/nowhere');
    expectAuditFields(r);
    expect(r).toMatchObject({ decision: 'deny', status: 404 });
  });

  it('writes exactly one record per attempt: one request per connection, one tls.reject per refused handshake', async () => {
    await new Promise((r) => setTimeout(r, 200));
    const records = h.audit();
    const opened = records.filter((r) => r.event === 'connection.open');
    // Every curl above is one connection carrying one request (revocation polling included).
    for (const c of opened) expect(records.filter((r) => r.event === 'request' && r.conn === c.conn)).toHaveLength(1);
    expect(requests()).toHaveLength(opened.length);
    expect(records.filter((r) => r.event === 'tls.reject')).toHaveLength(2);
  });
});
