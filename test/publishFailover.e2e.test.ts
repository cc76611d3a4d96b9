// Two replicas of a published service, one lost under load (killed, or frozen until the ping declares it
// lost): GETs it carried are retried on the other replica (none fails), a POST is not, tunnels elsewhere go on,
// and tunnels opening on it open on the other; /metrics counts the retries.
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import type { AuditRecord } from '../src/audit/auditRecord.ts';
import { curl, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { cleanEnv, gatewayFlags, writeToken } from './support/tunnelClient.ts';
import { connectTunnel, webSocketTunnel, type TunnelEnd } from './support/tunnelPeers.ts';
import { failedCount, httpLoad } from './support/faultPeers.ts';
import { echoService, httpAndWebSocketService, publishedRoute, publishTop, startPublisher, type PublisherProcess } from './support/publishPeers.ts';

let h: Harness;
let alice: TestClientCertificate;
let home: string;
let tokenFile: string;
let aliceToken: string;
const servers: Server[] = [];
let running: PublisherProcess[] = [];
/** Requests received by each replica's `hold` service (which never answers), by replica. */
const held = new Map<string, number>();

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A service that counts the requests it receives and never answers them (`/crash`: drops the connection instead). */
async function holdService(name: string): Promise<HttpServer> {
  held.set(name, 0);
  const server = createHttpServer((req) => {
    held.set(name, (held.get(name) ?? 0) + 1);
    req.resume();
    if (req.url?.includes('crash')) req.socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(join(home, 'private', `hold-${name}.sock`), () => resolve()));
  return server;
}

/** A replica publishing web and echo (shared services) and hold (its own, named `name`); its publisher id. */
async function replica(name: string): Promise<{ p: PublisherProcess; id: string }> {
  const flags = gatewayFlags(h, alice, tokenFile).slice(0, -2);
  const targets = [`web=unix:${join(home, 'private', 'web.sock')}`, `echo=unix:${join(home, 'private', 'echo.sock')}`, `hold=unix:${join(home, 'private', `hold-${name}.sock`)}`];
  const p = startPublisher([...flags, ...targets], cleanEnv(home));
  running.push(p);
  const id = (await p.waitForStderr(/published as alice through \S+ \(publisher ([0-9a-f]+)\)/))[1] as string;
  return { p, id };
}

/** CONNECT tunnels to echo until one is carried by `survivor` (each goes to the replica with fewer streams open). */
async function tunnelOn(survivor: string): Promise<{ end: TunnelEnd; others: TunnelEnd[] }> {
  const ends: TunnelEnd[] = [];
  for (let i = 0; i < 40; i++) {
    const before = h.audit().filter((r) => r.event === 'tunnel.open').length;
    const t = await connectTunnel(h, alice, 'echo.alice:443', { 'Proxy-Authorization': `Bearer ${aliceToken}` });
    if (!t.ok) throw new Error(`tunnel refused: ${t.status}`);
    await h.waitForAudit(() => h.audit().filter((r) => r.event === 'tunnel.open').length > before);
    if (h.audit().filter((r) => r.event === 'tunnel.open').at(-1)?.publisher === survivor) return { end: t.end, others: ends };
    ends.push(t.end);
  }
  throw new Error(`no tunnel landed on ${survivor}`);
}

/** Echoes `bytes` through `end` in two halves, `between` run after the first: the echo must come back intact. */
async function echoAcross(end: TunnelEnd, between: () => Promise<void>): Promise<boolean> {
  const sent = Buffer.alloc(512 << 10);
  for (let i = 0; i < sent.length; i += 4) sent.writeUInt32LE((i * 2654435761) >>> 0, i);
  const got: Buffer[] = [];
  let size = 0;
  const all = new Promise<void>((resolve) =>
    end.onData((d) => {
      got.push(d);
      size += d.length;
      if (size >= sent.length) resolve();
    }),
  );
  await end.write(sent.subarray(0, sent.length / 2));
  await between();
  await end.write(sent.subarray(sent.length / 2));
  await all;
  return Buffer.concat(got).equals(sent);
}

/** The request records written since `from` for the web service: how many, and the retried ones. */
function webRecords(from: number): { all: AuditRecord[]; retried: AuditRecord[] } {
  const all = h.audit().slice(from).filter((r) => r.event === 'request' && r.route === 'published' && r.upstream === 'published:alice/web');
  return { all, retried: all.filter((r) => typeof r.detail?.retried === 'number') };
}

/**
 * GET load (6 clients, answers 20 ms late so requests are in flight on both replicas), then `lose` one of
 * the two replicas: no GET fails; those it carried are retried on the other, and a tunnel there carries on.
 */
async function loseReplicaUnderLoad(lose: (p: PublisherProcess) => Promise<void>, label: string): Promise<void> {
  const survivor = await replica('a');
  const doomed = await replica('b');
  const tunnel = await tunnelOn(survivor.id);
  const from = h.audit().length;
  const load = httpLoad(h, alice, aliceToken, 6, (i) => `/~alice/web/${i}?delay=20`);
  await wait(800);
  const intact = await echoAcross(tunnel.end, async () => {
    await lose(doomed.p);
    await wait(2500);
  });
  const statuses = await load.stop();
  await wait(300);
  const { all, retried } = webRecords(from);
  console.log(`publish failover (${label}): ${all.length} GETs, statuses ${JSON.stringify([...statuses])}, ${retried.length} retried on another replica (slowest ${Math.max(0, ...retried.map((r) => r.durationMs ?? 0))} ms)`);
  expect(failedCount(statuses)).toBe(0);
  expect(intact).toBe(true);
  // The kill did hit requests in flight (else this test proves nothing), and each was served by the survivor.
  expect(retried.length).toBeGreaterThan(0);
  for (const r of retried) {
    expect(r).toMatchObject({ status: 200, publisher: survivor.id, detail: { retried: 1, retriedFrom: [doomed.id] } });
  }
  expect(survivor.p.proc.exitCode).toBeNull();
  for (const t of [tunnel.end, ...tunnel.others]) t.destroy();
  // Each retry is counted on /metrics (the counter also holds the earlier tests' retries).
  expect(await retriesCounted('http')).toBeGreaterThanOrEqual(retried.length);
}

beforeAll(async () => {
  // The load runs as fast as the machine allows from one certificate: its request rate is not what is tested.
  const top = publishTop.replace('requestsPerSecond: 1000', 'requestsPerSecond: 100000').replace('  streamsPerPublisher: 400\n', '  streamsPerPublisher: 400\n  servicesPerUser: 3\n');
  h = await startHarness({ routes: publishedRoute, extraTop: top });
  alice = await h.pki.client('alice');
  home = mkdtempSync(join(tmpdir(), 'gatehouse-publish-failover-'));
  mkdirSync(join(home, 'private'), { mode: 0o700 });
  servers.push((await httpAndWebSocketService(join(home, 'private', 'web.sock'))) as unknown as Server, await echoService(join(home, 'private', 'echo.sock')));
  servers.push((await holdService('a')) as unknown as Server, (await holdService('b')) as unknown as Server);
  tokenFile = writeToken(h, join(home, 'alice.token'), 'alice');
  aliceToken = readFileSync(tokenFile, 'utf8').trim();
}, 60_000);

afterEach(async () => {
  for (const p of running) await p.stop('SIGKILL');
  running = [];
  // Both replicas gone: the next test starts from none.
  await h.waitForAudit(() => h.audit().filter((r) => r.event === 'publish.close').length >= h.audit().filter((r) => r.event === 'publish.open' && r.decision === 'allow').length);
});

afterAll(async () => {
  for (const s of servers) {
    (s as unknown as HttpServer).closeAllConnections?.();
    s.close();
  }
  await h?.stop();
});

it('a replica killed (SIGKILL) under GET load: no GET fails, those it carried are retried on the other replica; a tunnel there is unaffected', async () => {
  await loseReplicaUnderLoad((p) => p.stop('SIGKILL').then(() => {}), 'SIGKILL');
}, 60_000);

it('a replica frozen (SIGSTOP) under GET load: once the ping declares it lost, its GETs are retried on the other replica; none fails', async () => {
  await loseReplicaUnderLoad(async (p) => void p.proc.kill('SIGSTOP'), 'SIGSTOP');
}, 60_000);

it('a POST cut by its replica being killed is not retried: 502, and the service received it once', async () => {
  const a = await replica('a');
  const b = await replica('b');
  const posted = curl(h, '/~alice/hold/', { client: alice, token: aliceToken, args: ['--data', 'once'] });
  const until = Date.now() + 10_000;
  while ((held.get('a') ?? 0) + (held.get('b') ?? 0) === 0 && Date.now() < until) await wait(20);
  const carrier = (held.get('a') ?? 0) > 0 ? a : b;
  await carrier.p.stop('SIGKILL');
  const reply = await posted;
  expect(reply.status).toBe(502);
  expect((held.get('a') ?? 0) + (held.get('b') ?? 0)).toBe(1);
  const record = await h.waitForAudit((r) => r.event === 'request' && r.method === 'POST' && r.upstream === 'published:alice/hold');
  expect(record).toMatchObject({ status: 502, publisher: carrier.id });
  expect(record.detail?.retried).toBeUndefined();
}, 60_000);

it('a GET that fails at a service while its replica stays connected is not retried: 502, received once', async () => {
  await replica('a');
  await replica('b');
  const before = (held.get('a') ?? 0) + (held.get('b') ?? 0);
  const reply = await curl(h, '/~alice/hold/crash', { client: alice, token: aliceToken });
  expect(reply.status).toBe(502);
  expect((held.get('a') ?? 0) + (held.get('b') ?? 0) - before).toBe(1);
  const record = await h.waitForAudit((r) => r.event === 'request' && r.path === '/~alice/hold/crash');
  expect(record.status).toBe(502);
  expect(record.detail?.retried).toBeUndefined();
}, 60_000);

/** The value of `gatehouse_published_retries_total{kind}` on the gateway's /metrics (0 when not yet counted). */
async function retriesCounted(kind: 'http' | 'tunnel'): Promise<number> {
  const address = String((await h.waitForAudit((r) => r.event === 'gateway.start')).detail?.metrics);
  const text = await (await fetch(`http://${address}/metrics`)).text();
  return Number(new RegExp(`^gatehouse_published_retries_total\\{kind="${kind}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
}

it('tunnels (CONNECT and WebSocket) opening on a replica that is frozen, then declared lost, open on the other replica: none fails, the records and /metrics say so', async () => {
  const survivor = await replica('a');
  const doomed = await replica('b');
  const counted = await retriesCounted('tunnel');
  const from = h.audit().length;
  doomed.p.proc.kill('SIGSTOP');
  // Opened together, they are spread over both replicas (least outstanding): those sent to the frozen one wait for its answer.
  const opening = await Promise.all([
    ...[0, 1, 2, 3].map(() => connectTunnel(h, alice, 'echo.alice:443', { 'Proxy-Authorization': `Bearer ${aliceToken}` })),
    ...[0, 1].map(() => webSocketTunnel(h, alice, 'echo.alice', aliceToken)),
  ]);
  const ends: TunnelEnd[] = [];
  for (const t of opening) {
    expect(t.ok ? 200 : t.status).toBe(200);
    if (t.ok) ends.push(t.end);
  }
  for (const end of ends) {
    const echoed = new Promise<string>((resolve) => end.onData((d) => resolve(d.toString())));
    await end.write(Buffer.from('still here'));
    expect(await echoed).toBe('still here');
    end.destroy();
  }
  await h.waitForAudit(() => h.audit().slice(from).filter((r) => r.event === 'tunnel.close').length >= ends.length, 10_000);
  const closes = h.audit().slice(from).filter((r) => r.event === 'tunnel.close');
  const retried = closes.filter((r) => typeof r.detail?.retried === 'number');
  console.log(`publish failover (tunnels): ${closes.length} tunnels opened with one replica frozen, ${retried.length} opened on the other after it was declared lost`);
  // The freeze did hold openings (else this test proves nothing), and each was opened on the survivor.
  expect(retried.length).toBeGreaterThan(0);
  for (const r of retried) expect(r).toMatchObject({ publisher: survivor.id, detail: { retried: 1, retriedFrom: [doomed.id] } });
  expect(await retriesCounted('tunnel')).toBe(counted + retried.length);
}, 60_000);
