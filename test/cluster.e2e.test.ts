// Three real `gatehouse serve` instances sharing one real PostgreSQL: membership in `cluster status`, a
// revocation written through one refused by all (open tunnels ended), a missed notification caught up,
// and what a database outage does (deny instances fail closed, /readyz, metric, audit; serve ones serve).
import { Server } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEchoService } from '../src/demo/echoService.ts';
import { schemaVersion } from '../src/cluster/migrations.ts';
import { curl, inOneHour, makeRootKey, mintRaw, runGatehouse, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { postgresSkipReason, startMigratedPostgres, type TestPostgres } from './support/postgres.ts';
import { tcpRelay } from './support/faultPeers.ts';
import { connectTunnel, demoAndRawRoutes, unixService, type UnixService } from './support/tunnelPeers.ts';

const routes = demoAndRawRoutes;

interface Instance {
  name: string;
  h: Harness;
  alice: TestClientCertificate;
  metrics: string;
  services: Array<Server | UnixService>;
}

/** Short for a test, long enough that a heartbeat delayed by a loaded machine does not make an instance stale. */
const STALE_SECONDS = 4;

let db: TestPostgres;
const instances: Instance[] = [];
const rootKey = makeRootKey();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const clusterBlock = (name: string, url: string, whenStale: 'deny' | 'serve') => `cluster:\n  postgres: ${url}\n  instance: ${name}\n  peerListen: 127.0.0.1:${9000 + instances.length}\n  staleSeconds: ${STALE_SECONDS}\n  whenStale: ${whenStale}\nmetrics:\n  listen: 127.0.0.1:0\n`;

async function startInstance(name: string, url: string, whenStale: 'deny' | 'serve'): Promise<Instance> {
  const h = await startHarness({ routes, rootKey, extraTop: clusterBlock(name, url, whenStale) });
  const echo = await startEchoService(join(h.dir, 'run', 'demo.sock'), name);
  const raw = await unixService(join(h.dir, 'run', 'raw.sock'), (socket) => socket.pipe(socket));
  const start = await h.waitForAudit((r) => r.event === 'gateway.start');
  const instance = { name, h, alice: await h.pki.client('alice'), metrics: `http://${String(start.detail?.metrics)}`, services: [echo, raw] };
  instances.push(instance);
  return instance;
}

const token = (user: string) => mintRaw(rootKey.privateKey, `user("${user}"); check if time($t), $t <= ${inOneHour()};`);
const revocationIds = (t: string) => biscuit.Biscuit.fromBase64(t, biscuit.PublicKey.fromString(rootKey.publicKey.replace(/^ed25519\//, ''), biscuit.SignatureAlgorithm.Ed25519)).getRevocationIdentifiers().map(String);
const status = async (i: Instance, path: string, t: string) => (await curl(i.h, path, { client: i.alice, token: t })).status;

/** Polls until the instance answers `expected` (up to `ms`); returns the last status. */
async function eventually(i: Instance, path: string, t: string, expected: number, ms = 10_000): Promise<number> {
  const until = Date.now() + ms;
  for (;;) {
    const last = await status(i, path, t);
    if (last === expected || Date.now() > until) return last;
    await sleep(100);
  }
}

const readyz = async (i: Instance) => {
  const response = await fetch(`${i.metrics}/readyz`);
  return { status: response.status, body: (await response.json()) as { ready: boolean; checks: Record<string, boolean> } };
};
/** Polls /readyz until it answers `expected` (up to 10 s); returns the last status. */
async function eventuallyReady(i: Instance, expected: number): Promise<number> {
  const until = Date.now() + 10_000;
  for (;;) {
    const { status: last } = await readyz(i);
    if (last === expected || Date.now() > until) return last;
    await sleep(100);
  }
}
const metric = async (i: Instance, name: string): Promise<number | undefined> => {
  const text = await (await fetch(`${i.metrics}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
};

beforeAll(async () => {
  if (postgresSkipReason) return;
  db = await startMigratedPostgres();
  // gw1 and gw2 fail closed when stale; gw3's site chose to keep serving.
  await startInstance('gw1', db.url, 'deny');
  await startInstance('gw2', db.url, 'deny');
  await startInstance('gw3', db.url, 'serve');
}, 90_000);

afterAll(async () => {
  for (const i of instances) {
    await i.h.stop();
    for (const s of i.services) s.close();
  }
  await db?.remove();
});

describe.skipIf(postgresSkipReason !== '')(`three instances on one PostgreSQL${postgresSkipReason}`, () => {
  it('gatehouse cluster status lists every instance, live, with its peer address and version (table and --json)', async () => {
    const [gw1] = instances as [Instance];
    const json = await runGatehouse(['cluster', 'status', '--config', join(gw1.h.dir, 'routes.yaml'), '--json']);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as { instances: Array<{ name: string; pid: number; peerAddress: string; stale: boolean; configHash: string }>; schema: { version: number } };
    expect(parsed.instances.map((m) => [m.name, m.pid, m.stale])).toEqual(instances.map((i) => [i.name, i.h.proc.pid, false]));
    expect(parsed.instances.map((m) => m.peerAddress)).toEqual(['127.0.0.1:9000', '127.0.0.1:9001', '127.0.0.1:9002']);
    for (const m of parsed.instances) expect(m.configHash).toMatch(/^sha256:[0-9a-f]{16}$/);
    const table = await runGatehouse(['cluster', 'status', '--config', join(gw1.h.dir, 'routes.yaml')]);
    expect(table.stdout).toMatch(new RegExp(`^schema version \\d+; 3 of 3 instance\\(s\\) live \\(heartbeat within ${STALE_SECONDS} s\\); 0 revocation\\(s\\), last seq 0\nINSTANCE +HOST +PID +PEER +VERSION +CONFIG +STARTED +HEARTBEAT +REVOKED +STATE\n`));
    expect(table.stdout.match(/ live\n/g)?.length).toBe(3);
  });

  it('a token revoked through one instance is refused by all three, and its open tunnel on another instance is ended with a record', async () => {
    const [gw1, , gw3] = instances as [Instance, Instance, Instance];
    const t = token('alice');
    for (const i of instances) expect(await status(i, '/demo/before', t)).toBe(200);
    const opened = await connectTunnel(gw3.h, gw3.alice, 'raw:443', { 'Proxy-Authorization': `Bearer ${t}` });
    if (!opened.ok) throw new Error(`tunnel refused: ${opened.status} ${opened.body}`);
    const [id] = revocationIds(t) as [string];
    const revoke = await runGatehouse(['token', 'revoke', '--config', join(gw1.h.dir, 'routes.yaml'), '--id', id]);
    expect(revoke.stdout).toBe(`${id}\n`);
    for (const i of instances) expect(await eventually(i, '/demo/after', t, 403)).toBe(403);
    for (const i of instances) {
      const refused = await i.h.waitForAudit((r) => r.event === 'request' && r.path === '/demo/after' && r.status === 403);
      expect(refused.reason).toBe(`revocation id ${id} (block 0) is revoked`);
      const heard = await i.h.waitForAudit((r) => r.event === 'revocation.reload' && r.detail?.source === 'cluster database' && r.detail.added === 1);
      expect(heard.decision).toBe('allow');
    }
    await Promise.race([Promise.race([opened.end.peerEnded, opened.end.closed]), sleep(10_000).then(() => Promise.reject(new Error('tunnel still open 10 s after the revocation')))]);
    opened.end.destroy();
    const closed = await gw3.h.waitForAudit((r) => r.event === 'tunnel.close' && r.route === 'raw');
    expect(closed.reason).toBe('token revoked');
    // Another user's token is untouched.
    for (const i of instances) expect(await status(i, '/demo/other', token('bob'))).toBe(200);
  });

  it('a revocation whose notification was missed is caught up by sequence number, one committed out of order by the count', async () => {
    const t = token('carol');
    for (const i of instances) expect(await status(i, '/demo/carol', t)).toBe(200);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    // Written without NOTIFY, as if the instances had been disconnected when it was sent.
    await client.query(`INSERT INTO gatehouse_revocations (revocation_id, revoked_by) VALUES ($1, 'test')`, [revocationIds(t)[0]]);
    for (const i of instances) expect(await eventually(i, '/demo/carol-after', t, 403)).toBe(403);
    // And one whose sequence number is below what the instances have read (a transaction that committed
    // late, written around the command): found by the count, read again in full.
    const late = token('frank');
    const later = token('grace');
    for (const i of instances) expect(await status(i, '/demo/frank', late)).toBe(200);
    const gap = await client.query<{ seq: string }>(`SELECT nextval('gatehouse_revocations_seq_seq') AS seq`);
    await client.query(`INSERT INTO gatehouse_revocations (revocation_id, revoked_by) VALUES ($1, 'test')`, [revocationIds(later)[0]]);
    for (const i of instances) expect(await eventually(i, '/demo/grace', later, 403)).toBe(403);
    await client.query(`INSERT INTO gatehouse_revocations (seq, revocation_id, revoked_by) VALUES ($1, $2, 'test')`, [gap.rows[0]?.seq, revocationIds(late)[0]]);
    await client.end();
    for (const i of instances) expect(await eventually(i, '/demo/frank-after', late, 403)).toBe(403);
  });

  it('database stopped: deny instances refuse new authorizations after staleSeconds and say so (/readyz, metric, audit); the serve instance serves; all recover', async () => {
    const [gw1, gw2, gw3] = instances as [Instance, Instance, Instance];
    const fresh = token('dave');
    const revoked = token('erin');
    await runGatehouse(['token', 'revoke', '--config', join(gw1.h.dir, 'routes.yaml'), '--id', revocationIds(revoked)[0] as string]);
    for (const i of instances) expect(await eventually(i, '/demo/erin', revoked, 403)).toBe(403);
    expect(await eventuallyReady(gw1, 200)).toBe(200);

    await db.stop();
    try {
      for (const i of [gw1, gw2]) expect(await eventually(i, '/demo/outage', fresh, 503)).toBe(503);
      const refused = await gw1.h.waitForAudit((r) => r.event === 'request' && r.path === '/demo/outage' && r.status === 503);
      expect(refused.reason).toMatch(new RegExp(`^cluster database not heard from for over ${STALE_SECONDS} s \\(cluster.staleSeconds\\)`));
      expect(await readyz(gw1)).toEqual({ status: 503, body: { ready: false, checks: expect.objectContaining({ clusterDatabase: false }) as Record<string, boolean> } });
      expect(await metric(gw1, 'gatehouse_cluster_database_stale')).toBe(1);
      const stale = await gw1.h.waitForAudit((r) => r.event === 'cluster.database' && r.detail?.state === 'stale');
      expect(stale.decision).toBe('deny');
      expect(stale.reason).toMatch(/refusing new authorizations until it answers$/);
      await gw1.h.waitForAudit((r) => r.event === 'cluster.database' && r.detail?.state === 'lost');

      // whenStale: serve keeps serving, still refusing what it last heard was revoked, and stays ready.
      expect(await status(gw3, '/demo/outage-serve', fresh)).toBe(200);
      expect(await status(gw3, '/demo/outage-serve', revoked)).toBe(403);
      const serving = await gw3.h.waitForAudit((r) => r.event === 'cluster.database' && r.detail?.state === 'stale', 10_000);
      expect(serving.reason).toMatch(/serving with the revocations last heard/);
      expect((await readyz(gw3)).status).toBe(200);
      expect(await metric(gw3, 'gatehouse_cluster_database_stale')).toBe(1);
    } finally {
      await db.start();
    }
    for (const i of instances) expect(await eventually(i, '/demo/back', fresh, 200, 15_000)).toBe(200);
    for (const i of instances) expect(await status(i, '/demo/back', revoked)).toBe(403);
    const back = await gw1.h.waitForAudit((r) => r.event === 'cluster.database' && r.detail?.state === 'connected' && r.detail.staleForMs !== undefined);
    expect(back.decision).toBe('allow');
    expect(await eventuallyReady(gw1, 200)).toBe(200);
    expect(await metric(gw1, 'gatehouse_cluster_database_stale')).toBe(0);
  });

  it('a reload that changes cluster: keeps the running cluster settings and says so', async () => {
    const [, gw2] = instances as [Instance, Instance];
    const file = join(gw2.h.dir, 'routes.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace(`staleSeconds: ${STALE_SECONDS}`, `staleSeconds: ${STALE_SECONDS + 1}`));
    gw2.h.proc.kill('SIGHUP');
    const reload = await gw2.h.waitForAudit((r) => r.event === 'config.reload');
    expect(reload.decision).toBe('allow');
    expect(reload.detail?.note).toBe('cluster: changes only on restart');
  });

  it('database behind a relay that freezes, then resets every connection during its startup handshake: the deny instance lives, refuses, and recovers', async () => {
    const port = Number(new URL(db.url).port);
    const relay = await tcpRelay(port);
    try {
      const url = db.url.replace(`:${port}/`, `:${relay.port}/`);
      const cut = await startInstance('gw-relay', url, 'deny');
      const t = token('alice');
      expect(await eventually(cut, '/demo/x', t, 200)).toBe(200);
      // A partition first: the live connection goes silent mid-query (no FIN, no reset), and so does every
      // new one. Then every connection is reset, and each new one is reset or closed once it sends its
      // startup message (the handshake).
      relay.mode = 'freeze';
      expect(await eventually(cut, '/demo/x', t, 503, (STALE_SECONDS + 6) * 1000)).toBe(503);
      relay.mode = 'reset';
      relay.resetOpen();
      const acceptedBefore = relay.accepted;
      await sleep(2000);
      expect(await status(cut, '/demo/x', t)).toBe(503);
      expect(await eventuallyReady(cut, 503)).toBe(503);
      expect(relay.accepted).toBeGreaterThan(acceptedBefore); // it kept trying, and each try met a reset
      expect(cut.h.proc.exitCode).toBe(null);
      const stale = await cut.h.waitForAudit((r) => r.event === 'cluster.database' && r.detail?.state === 'stale');
      expect(stale.detail?.whenStale).toBe('deny');
      relay.mode = 'forward';
      expect(await eventually(cut, '/demo/x', t, 200, 15_000)).toBe(200);
      expect(await eventuallyReady(cut, 200)).toBe(200);
    } finally {
      await relay.close();
    }
  });

  it('an instance whose database has no schema refuses (fail closed) and its audit log says to migrate', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query('CREATE DATABASE empty');
    await client.end();
    const lone = await startInstance('gw-empty', db.url.replace(/\/postgres$/, '/empty'), 'deny');
    expect(await status(lone, '/demo/x', token('alice'))).toBe(503);
    const lost = await lone.h.waitForAudit((r) => r.event === 'cluster.database');
    expect(lost.reason).toBe(`connection lost: the cluster database's schema is version 0, this gatehouse needs ${schemaVersion}: run gatehouse cluster migrate`);
    expect((await readyz(lone)).status).toBe(503);
  });
});
