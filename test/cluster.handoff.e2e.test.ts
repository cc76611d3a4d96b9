// One-time sign-in codes in the cluster database: a sign-in started on one instance finishes on another
// (no sticky balancing), every code works once across instances (also when two race for it), and the
// database holds nothing a reader could sign in with. Real PostgreSQL, real gateways, real curl.
import { mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEchoService } from '../src/demo/echoService.ts';
import { databaseHandoffStore } from '../src/cluster/sharedHandoffs.ts';
import type { Handoff } from '../src/portal/handoffCodes.ts';
import { curlReply, inOneHour, makeRootKey, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { postgresSkipReason, startMigratedPostgres, type TestPostgres } from './support/postgres.ts';

const routes = `  - name: services
    host: "{service}--{user}.apps.test"
    upstream: unix:run/{user}-{service}.sock
    policy: |
      allow if user($u), param("user", $u);
`;

let db: TestPostgres;
const gateways: Harness[] = [];
const services: Server[] = [];
let alice: TestClientCertificate;

const sample: Handoff = { token: 'session-token-secret', maxAgeSeconds: 60, fingerprint: 'sha256:aa', host: 'app--alice.apps.test:8443', next: '/x', user: 'alice', revocationIds: ['ab'] };

beforeAll(async () => {
  if (postgresSkipReason) return;
  db = await startMigratedPostgres();
  const rootKey = makeRootKey();
  for (const name of ['gw-a', 'gw-b', 'gw-c']) {
    const first = gateways[0];
    const h = await startHarness({ routes, rootKey, serverNames: ['*.apps.test'], ...(first && { pki: first.pki }), extraTop: `browser:\n  portalHost: localhost\ncluster:\n  postgres: ${db.url}\n  instance: ${name}\n` });
    mkdirSync(join(h.dir, 'run'), { recursive: true });
    services.push(await startEchoService(join(h.dir, 'run', 'alice-app.sock'), name));
    gateways.push(h);
  }
  alice = await (gateways[0] as Harness).pki.client('alice');
}, 90_000);

afterAll(async () => {
  for (const h of gateways) await h.stop();
  for (const s of services) s.close();
  await db?.remove();
});

describe.skipIf(postgresSkipReason !== '')(`sign-in codes across instances${postgresSkipReason}`, () => {
  /** The host name the balancer would serve: the URL keeps A's port, curl connects to `to`. */
  const serviceHost = () => `app--alice.apps.test:${gateways[0]?.port}`;
  const via = (to: Harness) => ['--connect-to', `${serviceHost()}:127.0.0.1:${to.port}`];

  /** Signs in on the portal as the balancer's address names it (A's port), connected to `h`; the hand-off URL. */
  async function signInAt(h: Harness): Promise<string> {
    const token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
    const portal = `localhost:${gateways[0]?.port}`;
    const reply = await curlReply(h, alice, `https://${portal}/.well-known/gatehouse/session`, ['--connect-to', `${portal}:127.0.0.1:${h.port}`, '--data-urlencode', `token=${token}`, '--data-urlencode', `next=https://${serviceHost()}/x`]);
    expect(reply.status).toBe(303);
    return reply.headers.location?.[0] ?? '';
  }

  it('signed in through A, the hand-off is redeemed on B and the session works on B and C; the code works once, anywhere', async () => {
    const [a, b, c] = gateways as [Harness, Harness, Harness];
    const url = await signInAt(a);
    expect(url).toMatch(/\/\.well-known\/gatehouse\/session\/handoff\?code=/);
    const landed = await curlReply(b, alice, url, via(b));
    expect(landed.status).toBe(200);
    const cookie = (landed.headers['set-cookie']?.[0] ?? '').split(';')[0] as string;
    expect(cookie).toMatch(/^__Host-gatehouse-session=/);
    for (const h of [b, c]) {
      const page = await curlReply(h, alice, `https://${serviceHost()}/x`, [...via(h), '-H', `Cookie: ${cookie}`]);
      expect(page.status).toBe(200);
    }
    for (const h of [a, c, b]) expect((await curlReply(h, alice, url, via(h))).status).toBe(403);
    const refused = await c.waitForAudit((r) => r.event === 'session.start' && r.method === 'GET' && r.decision === 'deny');
    expect(refused.reason).toBe('unknown or already used sign-in code');
    await b.waitForAudit((r) => r.event === 'session.start' && r.method === 'GET' && r.decision === 'allow');
  });

  it('10 of 10 sign-ins started on one instance finish on another', async () => {
    let redeemed = 0;
    for (let i = 0; i < 10; i++) {
      const from = gateways[i % 3] as Harness;
      const to = gateways[(i + 1) % 3] as Harness;
      if ((await curlReply(to, alice, await signInAt(from), via(to))).status === 200) redeemed++;
    }
    expect(redeemed).toBe(10);
  });

  it('two instances racing for one code: exactly one gets it', async () => {
    const stores = [databaseHandoffStore({ postgres: db.url, instance: 'x', staleSeconds: 10, whenStale: 'deny' }), databaseHandoffStore({ postgres: db.url, instance: 'y', staleSeconds: 10, whenStale: 'deny' })];
    try {
      for (let round = 0; round < 5; round++) {
        const issued = await stores[0]?.issue(sample);
        if (!issued?.ok) throw new Error('not issued');
        const takes = await Promise.all(Array.from({ length: 8 }, (_, i) => stores[i % 2]?.take(issued.code, sample.fingerprint, sample.host.toUpperCase())));
        expect(takes.filter((t) => t?.ok).length).toBe(1);
      }
      // The other checks hold as for codes kept in memory.
      const issued = await stores[1]?.issue(sample);
      if (!issued?.ok) throw new Error('not issued');
      expect(await stores[0]?.take(issued.code, 'sha256:bb', sample.host)).toEqual({ ok: false, reason: 'sign-in code issued to another certificate', kind: 'foreign' });
      expect(await stores[0]?.take(issued.code, sample.fingerprint, sample.host)).toEqual({ ok: false, reason: 'unknown or already used sign-in code', kind: 'unknown' });
    } finally {
      for (const s of stores) await s?.close();
    }
  });

  it('the database holds no session token and no code: its rows are sealed with a key only the code gives', async () => {
    const store = databaseHandoffStore({ postgres: db.url, instance: 'x', staleSeconds: 10, whenStale: 'deny' });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const issued = await store.issue(sample);
      if (!issued.ok) throw new Error('not issued');
      const rows = await client.query<{ id: string; sealed: Buffer }>('SELECT id, sealed FROM gatehouse_handoffs');
      const dump = JSON.stringify(rows.rows.map((r) => ({ id: r.id, sealed: r.sealed.toString('latin1') })));
      expect(dump).not.toContain(sample.token);
      expect(dump).not.toContain(issued.code);
      // A row planted by someone with database access but without the code's key is refused.
      const planted = await store.issue(sample);
      if (!planted.ok) throw new Error('not issued');
      await client.query(`UPDATE gatehouse_handoffs SET sealed = (SELECT sealed FROM gatehouse_handoffs ORDER BY expires_at LIMIT 1) WHERE expires_at = (SELECT max(expires_at) FROM gatehouse_handoffs)`);
      expect(await store.take(planted.code, sample.fingerprint, sample.host)).toEqual({ ok: false, reason: 'unknown or already used sign-in code', kind: 'unknown' });
      // Expired by the database's clock.
      const late = await store.issue(sample);
      if (!late.ok) throw new Error('not issued');
      await client.query(`UPDATE gatehouse_handoffs SET expires_at = now() - interval '1 second'`);
      expect(await store.take(late.code, sample.fingerprint, sample.host)).toEqual({ ok: false, reason: 'sign-in code expired', kind: 'unknown' });
    } finally {
      await client.end();
      await store.close();
    }
  });

  it('with the database down a sign-in fails closed with a reason, and works again when it is back', async () => {
    const [a, b] = gateways as [Harness, Harness];
    await db.stop();
    try {
      const token = mintRaw(a.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
      const reply = await curlReply(a, alice, '/.well-known/gatehouse/session', ['--data-urlencode', `token=${token}`, '--data-urlencode', `next=https://${serviceHost()}/x`]);
      expect(reply.status).not.toBe(303);
      const refused = await a.waitForAudit((r) => r.event === 'session.start' && r.decision === 'deny' && /sign-in codes unavailable/.test(r.reason ?? ''));
      expect(refused.reason).toMatch(/^sign-in codes unavailable: cluster database: /);
    } finally {
      await db.start();
    }
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      const url = await curlReply(a, alice, '/.well-known/gatehouse/session', ['--data-urlencode', `token=${mintRaw(a.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`)}`, '--data-urlencode', `next=https://${serviceHost()}/x`]);
      ok = url.status === 303 && (await curlReply(b, alice, url.headers.location?.[0] ?? '', via(b))).status === 200;
      if (!ok) await new Promise((r) => setTimeout(r, 200));
    }
    expect(ok).toBe(true);
  });
});
