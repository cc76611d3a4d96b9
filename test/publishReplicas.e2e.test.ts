// Replicas of a published service, all real processes: several `gatehouse publish` of the same user and
// service are one service. Requests spread over them; one stopping drains, one killed leaves the rest serving.
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { curl, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { cleanEnv, gatewayFlags, writeToken } from './support/tunnelClient.ts';
import { connectTunnel } from './support/tunnelPeers.ts';
import { failedCount, httpLoad as startLoad } from './support/faultPeers.ts';
import { echoService, httpAndWebSocketService, publishedRoute, publishTop, startPublisher, type PublisherProcess } from './support/publishPeers.ts';

let h: Harness;
let alice: TestClientCertificate;
let home: string;
let tokenFile: string;
let aliceToken: string;
const servers: Server[] = [];
const publishers: PublisherProcess[] = [];

function publish(...services: string[]): PublisherProcess {
  const flags = gatewayFlags(h, alice, tokenFile).slice(0, -2);
  // echo is a raw TCP service (NAME/tcp=): the portal offers `tunnel -L` for it, never a web link.
  const p = startPublisher([...flags, ...services.map((s) => (s === 'echo' ? `echo/tcp=unix:${join(home, 'private', 'echo.sock')}` : `${s}=unix:${join(home, 'private', 'web.sock')}`))], cleanEnv(home));
  publishers.push(p);
  return p;
}

async function published(p: PublisherProcess): Promise<string> {
  return (await p.waitForStderr(/published as alice through \S+ \(publisher ([0-9a-f]+)\)/))[1] as string;
}

/** `workers` clients sending GETs one after another until `stop()`. */
const httpLoad = (workers: number) => startLoad(h, alice, aliceToken, workers, (i) => `/~alice/web/${i}`);

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  // The load below runs as fast as the machine allows from one certificate: its request rate is not what is tested.
  const top = publishTop.replace('  streamsPerPublisher: 400\n', '  streamsPerPublisher: 400\n  servicesPerUser: 2\n').replace('requestsPerSecond: 1000', 'requestsPerSecond: 100000');
  // Beside the web route, one that carries raw TCP only: the portal shows its services as `tunnel -L`, not as links.
  const rawRoute = publishedRoute.replace('name: published', 'name: published-raw').replace(/ {4}path: .*\n/, '').replace('"{service}.{user}"', '"{service}.{user}.raw"').replace('[http, websocket, tcp]', '[tcp]');
  h = await startHarness({ routes: publishedRoute + rawRoute, extraTop: top });
  alice = await h.pki.client('alice');
  home = mkdtempSync(join(tmpdir(), 'gatehouse-publish-replicas-'));
  mkdirSync(join(home, 'private'), { mode: 0o700 });
  servers.push((await httpAndWebSocketService(join(home, 'private', 'web.sock'))) as unknown as Server, await echoService(join(home, 'private', 'echo.sock')));
  tokenFile = writeToken(h, join(home, 'alice.token'), 'alice');
  aliceToken = readFileSync(tokenFile, 'utf8').trim();
}, 60_000);

afterAll(async () => {
  for (const p of publishers) await p.stop('SIGKILL');
  for (const s of servers) s.close();
  await h?.stop();
});

it('a second publisher of the same service is a replica (no 409): requests spread over both, the portal lists both', async () => {
  const first = await published(publish('web', 'echo'));
  // A third service would pass servicesPerUser 2: that one is refused with why, the others are published.
  const second = publish('web', 'echo', 'extra');
  const secondId = await published(second);
  await second.waitForStderr(/not published: extra \(alice publishes 2 services \(publish.servicesPerUser 2\)\)/);
  const open = await h.waitForAudit((r) => r.event === 'publish.open' && r.publisher === secondId && r.decision === 'allow');
  expect(open.detail).toMatchObject({ services: ['web', 'echo'], rawTcp: ['echo'], refused: [{ service: 'extra' }] });
  const load = httpLoad(4);
  await wait(1500);
  const statuses = await load.stop();
  expect(failedCount(statuses)).toBe(0);
  const served = new Map<string, number>();
  for (const r of h.audit()) if (r.event === 'request' && r.route === 'published' && r.publisher) served.set(r.publisher, (served.get(r.publisher) ?? 0) + 1);
  console.log(`publish replicas: ${statuses.get(200)} requests, by publisher ${JSON.stringify([...served])}`);
  expect(served.get(first)).toBeGreaterThan(0);
  expect(served.get(secondId)).toBeGreaterThan(0);
  const jar = join(home, 'portal-cookies.txt');
  await curl(h, '/.well-known/gatehouse/session', { client: alice, args: ['-c', jar, '--data-urlencode', `token=${aliceToken}`] });
  const portal = await curl(h, '/.well-known/gatehouse/', { client: alice, args: ['-b', jar] });
  const table = /<table id="published">([\s\S]*?)<\/table>/.exec(portal.body)?.[1] ?? '';
  expect(table).toContain(`<td>${first}</td>`);
  expect(table).toContain(`<td>${secondId}</td>`);
  // Counters per service and replica: the load went to web only, so no echo row has served a stream.
  const rows = [...table.matchAll(/<tr><td>(\w+)<\/td><td>[0-9a-f]+<\/td><td>[^<]*<\/td><td>(\d+)<\/td><td>(\d+)<\/td><\/tr>/g)].map((m) => [m[1], Number(m[3])] as const);
  expect(rows.filter(([service]) => service === 'echo')).toEqual([['echo', 0], ['echo', 0]]);
  expect(rows.filter(([service, served]) => service === 'web' && served > 0)).toHaveLength(2);
  // Link kinds: the web route's services are links; the TCP-only route's are `gatehouse tunnel -L` lines.
  const links = /<ul id="links">([\s\S]*?)<\/ul>/.exec(portal.body)?.[1] ?? '';
  // One link per service, however many replicas publish it.
  expect(links.match(/<a href="\/~alice\/web\/">/g)).toHaveLength(1);
  expect(links).toContain('<li>raw TCP: <code>gatehouse tunnel -L 8888:echo.alice.raw</code></li>');
  expect(links).not.toMatch(/href="[^"]*\.raw/);
  // A raw TCP service on a route that also carries HTTP: the tunnel line, not a web link that cannot work.
  expect(links).toContain('<li>raw TCP: <code>gatehouse tunnel -L 8888:echo.alice</code></li>');
  expect(links).not.toContain('/~alice/echo/');
  expect(links).not.toContain('8888:web.alice<');
}, 60_000);

it('one replica stopping (SIGTERM) under HTTP load drains: no request fails', async () => {
  const [, second] = publishers as [PublisherProcess, PublisherProcess];
  const load = httpLoad(4);
  await wait(500);
  expect(await second.stop('SIGTERM')).toBe(0);
  await wait(700);
  const statuses = await load.stop();
  console.log(`publish replicas: a replica stopped under load: ${JSON.stringify([...statuses])}`);
  expect(failedCount(statuses)).toBe(0);
}, 60_000);

it('one replica killed (SIGKILL) under HTTP load: no GET fails (those it carried are retried on the other); a tunnel on the other is unaffected', async () => {
  const survivor = publishers[0] as PublisherProcess;
  const doomed = publish('web', 'echo');
  const doomedId = await published(doomed);
  // Tunnels until each replica carries one (each goes to the replica with fewer streams open; pooled
  // keep-alive streams of the HTTP load before count too).
  const tunnels: Array<Awaited<ReturnType<typeof connectTunnel>>> = [];
  const carriers: Array<string | undefined> = [];
  while (new Set(carriers).size < 2 && tunnels.length < 40) {
    const t = await connectTunnel(h, alice, 'echo.alice:443', { 'Proxy-Authorization': `Bearer ${aliceToken}` });
    tunnels.push(t);
    const open = await h.waitForAudit(() => h.audit().filter((r) => r.event === 'tunnel.open' && r.route === 'published').length >= tunnels.length);
    expect(open).toBeDefined();
    carriers.push(h.audit().filter((r) => r.event === 'tunnel.open' && r.route === 'published').at(-1)?.publisher);
  }
  const kept = tunnels[carriers.findIndex((p) => p !== doomedId)];
  if (!kept?.ok) throw new Error('tunnel refused');
  const load = httpLoad(4);
  await wait(500);
  await doomed.stop('SIGKILL');
  await wait(1000);
  const statuses = await load.stop();
  console.log(`publish replicas: a replica killed under load (4 clients): ${JSON.stringify([...statuses])}`);
  expect(failedCount(statuses)).toBe(0);
  const echoed = new Promise<string>((resolve) => kept.end.onData((d) => resolve(d.toString())));
  await kept.end.write(Buffer.from('still here'));
  expect(await echoed).toBe('still here');
  expect(survivor.proc.exitCode).toBeNull();
  for (const t of tunnels) if (t.ok) t.end.destroy();
}, 60_000);
