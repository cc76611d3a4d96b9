// Three real instances behind real HAProxy (TCP, health checks, retries) and one real `gatehouse publish`
// given only the balancer's name: it keeps 2 connections to distinct instances (k of N); one carrying
// instance killed (SIGKILL) under HTTP load, with tunnels open through the others. Figures are printed.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeRootKey, type Harness } from './support/gatewayHarness.ts';
import { carriersOf, leasesUntil, publishedHome, startClusterInstance, type ClusterInstance, type Lease } from './support/clusterPeers.ts';
import { clientAgent, getStatus } from './support/faultPeers.ts';
import { freePort, waitForPort } from './support/localServices.ts';
import { makeTestPki, type TestClientCertificate, type TestPki } from './support/pki.ts';
import { postgresSkipReason, startMigratedPostgres, type TestPostgres } from './support/postgres.ts';
import { startPublisher, type PublisherProcess } from './support/publishPeers.ts';
import { cleanEnv } from './support/tunnelClient.ts';
import { connectTunnel, type TunnelEnd } from './support/tunnelPeers.ts';

const hasHaproxy = spawnSync('haproxy', ['-v'], { stdio: 'ignore' }).status === 0;
const skipReason = postgresSkipReason || (hasHaproxy ? '' : ' [skipped: haproxy not installed]');
const LEASE_SECONDS = 3;

let db: TestPostgres;
let pki: TestPki;
let work: string;
let alice: TestClientCertificate;
let token: string;
let publisher: PublisherProcess;
let haproxy: ChildProcess | undefined;
let balancerPort = 0;
const instances: ClusterInstance[] = [];
const servers: Server[] = [];
const rootKey = makeRootKey();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const config = () => join((instances[0] as ClusterInstance).h.dir, 'routes.yaml');
const carriers = (all: Lease[]) => carriersOf(all, 'alice', 'web');
/** The balancer as a harness: the same CA and client certificates, its own port. */
const balancer = (): Harness => ({ ...(instances[0] as ClusterInstance).h, port: balancerPort, base: `https://localhost:${balancerPort}` });

beforeAll(async () => {
  if (skipReason) return;
  db = await startMigratedPostgres();
  work = mkdtempSync(join(tmpdir(), 'gatehouse-balancer-'));
  pki = await makeTestPki(join(work, 'pki'));
  alice = await pki.client('alice');
  for (const name of ['gw1', 'gw2', 'gw3']) instances.push(await startClusterInstance(name, { db, pki, dir: work, rootKey, leaseSeconds: LEASE_SECONDS }));
  balancerPort = await freePort();
  const cfg = join(work, 'haproxy.cfg');
  // TLS passes through (mTLS ends at the instances); a failed connect is retried on another server.
  writeFileSync(
    cfg,
    `global\n  maxconn 512\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n  retries 3\n  option redispatch\n` +
      `frontend fe\n  bind 127.0.0.1:${balancerPort}\n  default_backend gw\nbackend gw\n  balance roundrobin\n` +
      instances.map((i) => `  server ${i.name} 127.0.0.1:${i.h.port} check inter 500 fall 1 rise 2\n`).join(''),
  );
  haproxy = spawn('haproxy', ['-db', '-f', cfg], { stdio: 'ignore' });
  await waitForPort(balancerPort);
  const published = await publishedHome(work, (instances[0] as ClusterInstance).h, 'alice');
  servers.push(...published.servers);
  token = published.token;
  // The balancer's name only: k = 2 (the default) connections to distinct instances.
  publisher = startPublisher(['--gateway', `https://localhost:${balancerPort}`, '--ca', pki.caCertPath, '--cert', alice.certPath, '--key', alice.keyPath, '--token-file', published.tokenFile, ...published.services], cleanEnv(published.home));
}, 120_000);

afterAll(async () => {
  await publisher?.stop('SIGKILL');
  haproxy?.kill('SIGTERM');
  for (const i of instances) await i.h.stop();
  for (const s of servers) s.close();
  await db?.remove();
});

/** `workers` clients sending GETs through the balancer one after another until stopped; each status with its time. */
function timedLoad(workers: number) {
  const results: Array<{ at: number; status: number | 'error' }> = [];
  let running = true;
  const done = Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      const agent = clientAgent(balancer(), alice);
      for (let i = 0; running; i++) results.push({ at: Date.now(), status: await getStatus(balancer(), agent, `/~alice/web/${w}/${i}`, token) });
      agent.destroy();
    }),
  );
  return { results, stop: async () => ((running = false), await done, results) };
}

/** A tunnel through `i` to alice's echo service not relayed to `avoid` (which is about to be killed). */
async function tunnelAvoiding(i: ClusterInstance, avoid: string): Promise<TunnelEnd> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const opened = await connectTunnel(i.h, alice, 'echo.alice:443', { 'Proxy-Authorization': `Bearer ${token}` });
    if (!opened.ok) throw new Error(`tunnel through ${i.name} refused: ${opened.status}`);
    const echoed = new Promise<void>((resolve) => opened.end.onData(() => resolve()));
    await opened.end.write(Buffer.from('x'));
    await echoed;
    const open = [...i.h.audit()].reverse().find((r) => r.event === 'tunnel.open' && r.route === 'published');
    if (open?.relay?.to !== avoid) return opened.end;
    opened.end.destroy();
  }
  throw new Error(`every tunnel through ${i.name} went to ${avoid}`);
}

describe.skipIf(skipReason !== '')(`k of N behind HAProxy${skipReason}`, () => {
  it('given only the balancer, the publisher holds 2 distinct instances; the third relays', async () => {
    const all = await leasesUntil(config(), (l) => carriers(l).length === 2);
    expect(carriers(all)).toHaveLength(2);
    const said = publisher.stderr();
    console.log(`k of N: publisher connections land on ${carriers(all).join(', ')}; ${(said.match(/reconnecting for another/g) ?? []).length} landing(s) on a taken instance`);
    const agent = clientAgent(balancer(), alice);
    const statuses = [];
    for (let i = 0; i < 9; i++) statuses.push(await getStatus(balancer(), agent, `/~alice/web/warm/${i}`, token));
    agent.destroy();
    expect(statuses).toEqual(statuses.map(() => 200));
  });

  it('acceptance: SIGKILL of a carrying instance under HTTP load, tunnels open through the others: failures counted, the publisher keeps its other connection and finds a new instance, the leases lapse', async () => {
    const before = await leasesUntil(config(), (l) => carriers(l).length === 2);
    const victim = instances.find((i) => i.name === carriers(before)[0]) as ClusterInstance;
    const survivors = instances.filter((i) => i !== victim);
    const keptConnection = before.filter((l) => l.instance !== victim.name && l.service === 'web').map((l) => l.publisher);
    // One tunnel through each surviving instance, to alice's echo service.
    const tunnels: TunnelEnd[] = [];
    for (const i of survivors) tunnels.push(await tunnelAvoiding(i, victim.name));
    const load = timedLoad(6);
    await sleep(1500);
    const killedAt = Date.now();
    await victim.h.stop('SIGKILL');
    // Watched from the kill on, while the load runs: when the victim's leases are gone, when k is held again.
    const lapsing = leasesUntil(config(), (l) => !l.some((x) => x.instance === victim.name)).then((l) => ({ l, ms: Date.now() - killedAt }));
    const returning = leasesUntil(config(), (l) => carriers(l).length === 2 && !carriers(l).includes(victim.name), 30_000).then((l) => ({ l, ms: Date.now() - killedAt }));
    await sleep(8000);
    const results = await load.stop();
    const failed = results.filter((r) => r.status !== 200);
    const late = failed.filter((r) => r.at > killedAt + 5000);
    const { l: lapsed, ms: lapsedMs } = await lapsing;
    const { l: back, ms: backMs } = await returning;
    console.log(`k of N: killed ${victim.name} under load (6 clients through HAProxy): ${results.length} requests, ${failed.length} failed (${JSON.stringify(Object.fromEntries(failed.reduce((m, r) => m.set(String(r.status), (m.get(String(r.status)) ?? 0) + 1), new Map<string, number>())))}), ${late.length} failed more than 5 s after the kill; its leases gone from cluster status after ${lapsedMs} ms (lease ${LEASE_SECONDS} s); the publisher on 2 instances again (${carriers(back).join(', ')}) after ${backMs} ms`);
    expect(late).toHaveLength(0);
    expect(lapsed.some((l) => l.instance === victim.name)).toBe(false);
    expect(carriers(back)).toHaveLength(2);
    // The publisher's connection to the instance that lived was never dropped.
    expect(back.filter((l) => l.service === 'web' && keptConnection.includes(l.publisher))).toHaveLength(1);
    // The tunnels through the surviving instances still carry bytes, both ways.
    for (const end of tunnels) {
      const echoed = new Promise<Buffer>((resolve) => end.onData(resolve));
      await end.write(Buffer.from('still here'));
      expect((await echoed).toString()).toBe('still here');
      end.destroy();
    }
  }, 90_000);
});
