// publish.publishersPerUser and servicesPerUser held by three real `gatehouse serve` instances on one real
// PostgreSQL: a `gatehouse publish` process counts once however many instances it holds, and no more.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerPublisher, type Registration } from '../src/client/publishConnection.ts';
import { runPublisherFleet } from '../src/client/publisherFleet.ts';
import { makeRootKey } from './support/gatewayHarness.ts';
import { carriersOf, leasesUntil, publishedHome, startClusterInstance, type ClusterInstance, type Lease, type PublishedHome } from './support/clusterPeers.ts';
import { makeTestPki, type TestClientCertificate, type TestPki } from './support/pki.ts';
import { postgresSkipReason, startMigratedPostgres, type TestPostgres } from './support/postgres.ts';
import { startPublisher, type PublisherProcess } from './support/publishPeers.ts';
import { cleanEnv } from './support/tunnelClient.ts';

const LEASE_SECONDS = 3;
const limits = '  publishersPerUser: 2\n  servicesPerUser: 2\n';

let db: TestPostgres;
let pki: TestPki;
let work: string;
let alice: TestClientCertificate;
let home: PublishedHome;
const instances: ClusterInstance[] = [];
const running: PublisherProcess[] = [];
const servers: Server[] = [];
const rootKey = makeRootKey();

const at = (i: number) => instances[i] as ClusterInstance;
const gatewayFlag = (i: ClusterInstance) => ['--gateway', `https://localhost:${i.h.port}`];
const configOf = () => join(at(0).h.dir, 'routes.yaml');

/** `gatehouse publish` as alice through `through`, publishing `services` (NAME=TARGET). */
function publish(through: ClusterInstance[], services: string[]): PublisherProcess {
  const p = startPublisher([...through.flatMap(gatewayFlag), '--ca', pki.caCertPath, '--cert', alice.certPath, '--key', alice.keyPath, '--token-file', home.tokenFile, ...services], cleanEnv(home.home));
  running.push(p);
  return p;
}
const [web, echo] = [() => home.services[0] as string, () => home.services[1] as string];
const other = () => `other=unix:${join(home.home, 'private', 'web.sock')}`;

/**
 * A registration whose session takes its error handler at once: the cluster may close one admitted before its
 * instance heard of the others (an error on this side) while the registrations beside it are still under way.
 */
async function register(endpoint: Parameters<typeof registerPublisher>[0], services: string[], identity = randomBytes(16).toString('base64url')): Promise<Registration> {
  const t = await registerPublisher(endpoint, services, { identity });
  if (t.ok) t.session.on('error', () => undefined);
  return t;
}

let limitsNow = limits;
/** Rewrites the publish limits of every instance's routes.yaml and reloads each (SIGHUP); resolves once all applied it. */
async function setLimits(next: string): Promise<void> {
  for (const i of instances) {
    const config = join(i.h.dir, 'routes.yaml');
    const applied = () => i.h.audit().filter((r) => r.event === 'config.reload' && r.decision === 'allow').length;
    const before = applied();
    writeFileSync(config, readFileSync(config, 'utf8').replace(limitsNow, next));
    i.h.proc.kill('SIGHUP');
    await i.h.waitForAudit(() => applied() > before, 10_000);
  }
  limitsNow = next;
}

/** Alice's live leases of `service`: how many publisher connections carry it, on which instances. */
const aliceLeases = (service: string, done: (instances: string[], rows: number) => boolean) =>
  leasesUntil(configOf(), (all) => {
    const rows = all.filter((l) => l.user === 'alice' && l.service === service);
    return done(carriersOf(all, 'alice', service), rows.length);
  });

beforeAll(async () => {
  if (postgresSkipReason) return;
  db = await startMigratedPostgres();
  work = mkdtempSync(join(tmpdir(), 'gatehouse-climits-'));
  pki = await makeTestPki(join(work, 'pki'));
  alice = await pki.client('alice');
  for (const name of ['gw1', 'gw2', 'gw3']) instances.push(await startClusterInstance(name, { db, pki, dir: work, rootKey, leaseSeconds: LEASE_SECONDS, publishLimits: limits }));
  home = await publishedHome(work, at(0).h, 'alice');
  servers.push(...home.servers);
}, 120_000);

afterAll(async () => {
  for (const p of running) await p.stop('SIGKILL');
  for (const i of instances) await i.h.stop();
  for (const s of servers) s.close();
  await db?.remove();
});

describe.skipIf(postgresSkipReason !== '')(`publishersPerUser 2 and servicesPerUser 2 on three instances${postgresSkipReason}`, () => {
  let first: PublisherProcess;

  it('services: two published through gw1 and gw2 count on gw3; a third name is refused there, a name already published is a replica', async () => {
    first = publish([at(0), at(1)], [web(), echo()]);
    await first.waitForStderr(/published as alice through[\s\S]*published as alice through/);
    await aliceLeases('echo', (on) => on.length === 2);
    // One id for the process, sent on both connections: each instance's record names it.
    const ids = await Promise.all([at(0), at(1)].map(async (i) => (await i.h.waitForAudit((r) => r.event === 'publish.open' && r.decision === 'allow')).detail?.publisherId));
    expect(ids[0]).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(ids[1]).toBe(ids[0]);
    const third = publish([at(2)], [other()]);
    await third.waitForStderr(/429 .*"too many published services"; retrying/);
    await third.stop();
    const refused = await at(2).h.waitForAudit((r) => r.event === 'publish.open' && r.status === 429);
    expect(refused.reason).toBe('alice publishes 2 services (2 on other instances); 1 more would pass publish.servicesPerUser 2');
    // A service alice publishes elsewhere gains a replica here; the new name beside it is not published.
    const replica = publish([at(2)], [web(), other()]);
    await replica.waitForStderr(/published as alice through.*\n.*not published: other \(alice publishes 2 services \(2 on other instances\)/);
    await aliceLeases('web', (on) => on.length === 3);
    await replica.stop();
  }, 60_000);

  it('publishers: a process with two connections counts once; a third process is refused on whichever instance it lands, and gets in once one leaves', async () => {
    const second = publish([at(1), at(2)], [web()]);
    await second.waitForStderr(/published as alice through[\s\S]*published as alice through/);
    // Two processes, four connections: every instance has heard of both.
    await aliceLeases('web', (_, rows) => rows === 4);
    const third = publish([at(0), at(2)], [web()]);
    await third.waitForStderr(/429 .*"too many publishers"; retrying[\s\S]*429 .*"too many publishers"; retrying/);
    for (const i of [at(0), at(2)]) {
      // Within a lease: under load an instance may admit it before hearing of the others, then close it (settleAcross).
      const refused = await i.h.waitForAudit((r) => r.event === 'publish.open' && r.status === 429 && /publishersPerUser/.test(r.reason ?? ''), 15_000);
      expect(refused.reason).toMatch(/^alice already has 2 publishers connected \(1 on other instances\) \(publish\.publishersPerUser 2\)$/);
    }
    // Two publishers hold alice's leases (a third admitted within a lease, under load, is closed by then).
    const held = await leasesUntil(configOf(), (all) => new Set(all.filter((l) => l.user === 'alice').map((l) => l.identity)).size === 2);
    expect(new Set(held.filter((l) => l.user === 'alice').map((l) => l.identity)).size).toBe(2);
    // The first process leaves: its slot is free on every instance within a lease (its instances drop its leases at once).
    const left = Date.now();
    await first.stop();
    await third.waitForStderr(/published as alice through[\s\S]*published as alice through/, 30_000);
    process.stdout.write(`publishersPerUser across instances: the third process in ${Date.now() - left} ms after the first left (it retries with backoff)\n`);
    await second.stop();
    await third.stop();
  }, 90_000);

  it('hostile: one publisher id sent by six connections (two per instance) gains one connection per instance, and counts once', async () => {
    const bob = await pki.client('bob');
    const bobHome = await publishedHome(work, at(0).h, 'bob');
    servers.push(...bobHome.servers);
    const endpointOf = (i: ClusterInstance) => ({ host: 'localhost', port: i.h.port, label: i.name, cert: Buffer.from(bob.cert), key: Buffer.from(bob.key), ca: readFileSync(pki.caCertPath), token: bobHome.token });
    const registerAt = (i: ClusterInstance, identity: string) => register(endpointOf(i), ['web'], identity);
    const shared = 'AAAAAAAAAAAAAAAAAAAAAA';
    const tries = await Promise.all([0, 1, 2, 0, 1, 2].map((n) => registerAt(at(n), shared)));
    const held = tries.flatMap((t) => (t.ok ? [t] : []));
    for (const t of tries) if (!t.ok) expect(t.failure).toMatchObject({ kind: 'refused', status: 429, reason: 'publisher already connected to this instance' });
    expect(held.map((t) => t.instance).sort()).toEqual(['gw1', 'gw2', 'gw3']);
    // The id counts once: one more publisher fits under publishersPerUser 2, and a third is refused.
    const two = await registerAt(at(0), 'BBBBBBBBBBBBBBBBBBBBBB');
    expect(two.ok).toBe(true);
    await leasesUntil(configOf(), (all) => all.filter((l) => l.user === 'bob').length === 4);
    // gw2 reads the leases within a heartbeat of the database having them.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const three = await registerAt(at(1), 'CCCCCCCCCCCCCCCCCCCCCC');
    expect(three.ok ? 101 : three.failure).toMatchObject({ kind: 'refused', status: 429, reason: 'too many publishers' });
    // Naming the connection it replaces takes its place (the old one is let go), never a second one beside it.
    const gw2 = held.find((t) => t.instance === 'gw2');
    const replacing = await registerAt(at(1), `${shared}; replaces=${gw2?.publisherId}`);
    expect(replacing.ok).toBe(true);
    await at(1).h.waitForAudit((r) => r.event === 'publish.close' && r.publisher === gw2?.publisherId && /replaced by connection/.test(r.reason ?? ''));
    const again = await registerAt(at(1), `${shared}; replaces=${gw2?.publisherId}`);
    expect(again.ok ? 101 : again.failure).toMatchObject({ kind: 'refused', status: 429, reason: 'publisher already connected to this instance' });
    // A malformed id is refused with a record naming it.
    const bad = await registerAt(at(2), 'short!');
    expect(bad.ok ? 101 : bad.failure).toMatchObject({ kind: 'refused', status: 400 });
    const record = await at(2).h.waitForAudit((r) => r.event === 'publish.open' && r.status === 400);
    expect(record.reason).toMatch(/^gatehouse-publisher-id "short!": expected 16 to 64 base64url characters/);
    for (const t of [...held, two, replacing]) if (t.ok) t.session.destroy();
  }, 60_000);

  it('tolerance: six publishers of one user starting at once through the three instances (two each), ten rounds: how many get in, and how many stay', async () => {
    const carol = await pki.client('carol');
    const carolHome = await publishedHome(work, at(0).h, 'carol');
    servers.push(...carolHome.servers);
    const endpointOf = (i: ClusterInstance) => ({ host: 'localhost', port: i.h.port, label: i.name, cert: Buffer.from(carol.cert), key: Buffer.from(carol.key), ca: readFileSync(pki.caCertPath), token: carolHome.token });
    const admitted: number[] = [];
    const settledMs: number[] = [];
    const carols = (all: Lease[]) => new Set(all.filter((l) => l.user === 'carol').map((l) => l.identity)).size;
    for (let round = 0; round < 10; round++) {
      const tries = await Promise.all([0, 1, 2, 0, 1, 2].map((n) => register(endpointOf(at(n)), ['web'])));
      const at0 = Date.now();
      const held = tries.flatMap((t) => (t.ok ? [t] : []));
      admitted.push(held.length);
      // Each instance alone never passes the limit: what passes 2 is what the instances admitted before hearing of each other.
      for (const name of ['gw1', 'gw2', 'gw3']) expect(held.filter((t) => t.instance === name).length).toBeLessThanOrEqual(2);
      for (const t of tries) if (!t.ok) expect(t.failure).toMatchObject({ kind: 'refused', status: 429, reason: 'too many publishers' });
      // Once the instances have read each other's leases, those ranked last leave: two stay, on every instance's word.
      const left = await leasesUntil(configOf(), (all) => carols(all) === 2 && held.filter((t) => !t.session.destroyed).length === 2);
      expect(carols(left)).toBe(2);
      expect(held.filter((t) => !t.session.destroyed).length).toBe(2);
      settledMs.push(Date.now() - at0);
      for (const t of held) t.session.destroy();
      await leasesUntil(configOf(), (all) => !all.some((l) => l.user === 'carol'));
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    // The same six, 100 ms then 20 ms apart: how soon an instance hears of the ones before (a lease write and a notification).
    const spaced: string[] = [];
    for (const gapMs of [100, 100, 100, 20, 20, 20]) {
      const tries = [];
      for (const n of [0, 1, 2, 0, 1, 2]) {
        tries.push(await register(endpointOf(at(n)), ['web']));
        await new Promise((resolve) => setTimeout(resolve, gapMs));
      }
      const held = tries.flatMap((t) => (t.ok ? [t] : []));
      spaced.push(`${held.length} (${gapMs} ms apart)`);
      for (const t of held) t.session.destroy();
      await leasesUntil(configOf(), (all) => !all.some((l) => l.user === 'carol'));
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    process.stdout.write(`publishersPerUser 2, six publishers at once through three instances: admitted per round ${admitted.join(' ')}; back at 2 after ${settledMs.join(' ')} ms; one after the other: ${spaced.join(', ')} admitted\n`);
  }, 200_000);

  it('a renewed token registers again on the instance the publisher holds: the new connection replaces the old one there (no refusal, one connection left)', async () => {
    const dave = await pki.client('dave');
    const daveHome = await publishedHome(work, at(0).h, 'dave');
    servers.push(...daveHome.servers);
    const lines: string[] = [];
    const endpoint = { host: 'localhost', port: at(0).h.port, label: 'gw1', cert: Buffer.from(dave.cert), key: Buffer.from(dave.key), ca: readFileSync(pki.caCertPath), token: daveHome.token };
    const fleet = runPublisherFleet({ endpoints: [endpoint], specs: [{ service: 'web', target: { kind: 'unix', path: join(daveHome.home, 'private', 'web.sock') } }], say: (line) => lines.push(line), verbose: false, connections: 1 });
    const said = async (pattern: RegExp) => {
      for (let i = 0; i < 200 && !lines.some((l) => pattern.test(l)); i++) await new Promise((resolve) => setTimeout(resolve, 50));
      return lines.find((l) => pattern.test(l));
    };
    try {
      const first = /\(publisher ([0-9a-f]+)\)/.exec((await said(/^published as dave/)) ?? '')?.[1];
      expect(first).toBeDefined();
      fleet.tokenRenewed();
      expect(await said(/^re-registered as dave/)).toBeDefined();
      const closed = await at(0).h.waitForAudit((r) => r.event === 'publish.close' && r.publisher === first);
      expect(closed.reason).toMatch(/^replaced by connection [0-9a-f]+ of the same publisher$|^publisher said goodbye$/);
      expect(at(0).h.audit().some((r) => r.event === 'publish.open' && r.token?.user === 'dave' && r.decision === 'deny')).toBe(false);
      expect(lines.join('\n')).not.toMatch(/already connected|retrying/);
    } finally {
      fleet.stop();
      await fleet.done;
    }
  }, 60_000);
  it('tolerance: three publishers of one user with distinct service names starting at once through the three instances (servicesPerUser 2), five rounds: how many names get in, and the last registered leave', async () => {
    const erin = await pki.client('erin');
    const erinHome = await publishedHome(work, at(0).h, 'erin');
    servers.push(...erinHome.servers);
    // Three publishers fit publishersPerUser: only the service names pass a limit.
    await setLimits('  publishersPerUser: 8\n  servicesPerUser: 2\n');
    const endpointOf = (i: ClusterInstance) => ({ host: 'localhost', port: i.h.port, label: i.name, cert: Buffer.from(erin.cert), key: Buffer.from(erin.key), ca: readFileSync(pki.caCertPath), token: erinHome.token });
    const names = (all: Lease[]) => new Set(all.filter((l) => l.user === 'erin').map((l) => l.service));
    const admitted: number[] = [];
    const settledMs: number[] = [];
    try {
      for (let round = 0; round < 5; round++) {
        const tries = await Promise.all([0, 1, 2].map((n) => register(endpointOf(at(n)), [`s${round}n${n}`])));
        const at0 = Date.now();
        const held = tries.flatMap((t) => (t.ok ? [t] : []));
        admitted.push(held.length);
        for (const t of tries) if (!t.ok) expect(t.failure).toMatchObject({ kind: 'refused', status: 429, reason: 'too many published services' });
        const open = () => held.filter((t) => !t.session.closed && !t.session.destroyed);
        // Once the instances have read each other's leases, the name registered last is let go: two names stay.
        const left = await leasesUntil(configOf(), (all) => names(all).size === 2 && open().length === 2);
        expect(names(left).size).toBe(2);
        expect(open().length).toBe(2);
        settledMs.push(Date.now() - at0);
        for (const t of held) t.session.destroy();
        await leasesUntil(configOf(), (all) => !all.some((l) => l.user === 'erin'));
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      // Whatever was let go is recorded with why, on the instance that carried it.
      const dropped = instances.flatMap((i) => i.h.audit().filter((r) => r.event === 'publish.close' && r.token?.user === 'erin' && /servicesPerUser/.test(r.reason ?? '')));
      expect(dropped.length).toBe(admitted.reduce((sum, n) => sum + n, 0) - 2 * admitted.length);
      for (const r of dropped) expect(r.reason).toMatch(/^s\dn\d no longer published: erin publishes 3 services across the cluster \(publish\.servicesPerUser 2\), the last registered leave$/);
    } finally {
      await setLimits(limits);
    }
    process.stdout.write(`servicesPerUser 2, three publishers with distinct names at once through three instances: names admitted per round ${admitted.join(' ')}; back at 2 names after ${settledMs.join(' ')} ms\n`);
  }, 120_000);

  it('servicesPerUser lowered on reload: the names registered last are let go, their publisher told why when it registers again (its other names stay); raised again, a name gets in', async () => {
    await setLimits('  publishersPerUser: 2\n  servicesPerUser: 3\n');
    const first = publish([at(0), at(1)], [web()]);
    await first.waitForStderr(/published as alice through[\s\S]*published as alice through/);
    await aliceLeases('web', (on) => on.length === 2);
    // One connection: through one instance's address a second one would only be turned away there.
    const second = publish([at(2)], ['--connections', '1', echo(), other()]);
    await second.waitForStderr(/published as alice through/);
    await aliceLeases('other', (on) => on.length === 1);
    const names = (all: Lease[]) => [...new Set(all.filter((l) => l.user === 'alice').map((l) => l.service))].sort();
    const closedFor = (limit: number) => at(2).h.waitForAudit((r) => r.event === 'publish.close' && r.token?.user === 'alice' && new RegExp(`servicesPerUser ${limit}\\)`).test(r.reason ?? ''), 15_000);
    try {
      // Down to 2: gw3 lets `other` go (echo and other were registered together, after web; ties go by name).
      let mark = second.stderr().length;
      await setLimits(limits);
      expect((await closedFor(2)).reason).toBe('other no longer published: alice publishes 3 services across the cluster (publish.servicesPerUser 2), the last registered leave');
      // The publisher registers again at once: echo is published, other is named with why, as at any registration.
      await second.waitForStderr(/going away[\s\S]*re-registered as alice through.*\n.*not published: other \(alice publishes 1 services \(1 on other instances\) \(publish\.servicesPerUser 2\)\)/, 15_000, mark);
      expect(names(await leasesUntil(configOf(), (all) => names(all).join() === 'echo,web'))).toEqual(['echo', 'web']);
      // Down to 1: echo goes too; a publisher left with no name is refused and retries.
      mark = second.stderr().length;
      await setLimits('  publishersPerUser: 2\n  servicesPerUser: 1\n');
      expect((await closedFor(1)).reason).toBe('echo no longer published: alice publishes 2 services across the cluster (publish.servicesPerUser 1), the last registered leave');
      await second.waitForStderr(/429 .*"too many published services"; retrying/, 15_000, mark);
      const held = await leasesUntil(configOf(), (all) => names(all).join() === 'web');
      expect(names(held)).toEqual(['web']);
      expect(carriersOf(held, 'alice', 'web')).toEqual(['gw1', 'gw2']);
      // The first publisher, registered first, was never touched.
      expect(first.stderr()).not.toMatch(/reconnecting/);
    } finally {
      await setLimits(limits);
    }
    // Back at 2: the publisher's retry gets echo in (other still past the limit).
    await aliceLeases('echo', (on) => on.length === 1);
    await second.stop();
    await first.stop();
  }, 120_000);
});
