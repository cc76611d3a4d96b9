// Connection limits at the front door of a real `gatehouse serve`: over limits.connections or
// limits.connectionsPerSource a connection is closed at once, before TLS, with a rate-limited
// `connection.reject` record and a metric; other sources keep working; shutdown does not wait on
// clients that never finished TLS.
import { createServer as createHttpServer, type Server } from 'node:http';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Socket } from 'node:net';
import { curl, inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { rawTcp, rawUnix, sleep, type Watched } from './support/rawClients.ts';

const PER_SOURCE = 3;
const OVERALL = 8;

let h: Harness;
let alice: TestClientCertificate;
let token: string;
let web: Server;
let metricsBase = '';

const unixListener = () => join(h.dir, 'run', 'gatehouse.sock');
const rejects = (sourcePrefix: string) => h.audit().filter((r) => r.event === 'connection.reject' && (r.source ?? '').startsWith(sourcePrefix));

/** Opens `n` silent connections from `source` and checks the gateway keeps them (they are within the limit). */
async function hold(n: number, source: string): Promise<Array<Watched<Socket>>> {
  const held = await Promise.all(Array.from({ length: n }, () => rawTcp(h.port, source)));
  await sleep(200);
  expect(held.some((c) => c.isClosed())).toBe(false);
  return held;
}

/** A connection the gateway closes at once, saying nothing. */
async function expectRefused(open: () => Promise<Watched<Socket>>): Promise<void> {
  const c = await open();
  const closedMs = await Promise.race([c.closed, sleep(2000).then(() => -1)]);
  c.socket.destroy();
  expect(closedMs).toBeGreaterThanOrEqual(0);
  expect(closedMs).toBeLessThan(500);
  expect(c.received()).toBe('');
}

async function metric(line: RegExp): Promise<number> {
  const text = await (await fetch(`${metricsBase}/metrics`)).text();
  const hit = text.split('\n').find((l) => line.test(l));
  return hit ? Number(hit.split(' ').pop()) : 0;
}

/** Closes the sockets and gives the gateway a moment to see them go. */
async function release(sockets: Array<Watched<Socket>>): Promise<void> {
  await Promise.all(sockets.map((c) => (c.socket.destroy(), c.closed)));
  await sleep(200);
}

beforeAll(async () => {
  h = await startHarness({
    routes: '  - name: web\n    path: /web/\n    upstream: unix:run/web.sock\n    policy: |\n      allow if user($u);\n',
    extraListen: '  - unix: run/gatehouse.sock\n',
    extraTop: `metrics:\n  listen: 127.0.0.1:0\nlimits:\n  connections: ${OVERALL}\n  connectionsPerSource: ${PER_SOURCE}\n  handshakeTimeoutSeconds: 30\n`,
  });
  alice = await h.pki.client('alice');
  token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
  web = createHttpServer((_req, res) => res.end('ok\n'));
  mkdirSync(join(h.dir, 'run'), { recursive: true });
  rmSync(join(h.dir, 'run', 'web.sock'), { force: true });
  await new Promise<void>((resolve) => web.listen(join(h.dir, 'run', 'web.sock'), () => resolve()));
  const start = await h.waitForAudit((r) => r.event === 'gateway.start');
  metricsBase = `http://${String(start.detail?.metrics)}`;
});

afterAll(async () => {
  web?.close();
  await h?.stop();
});

it(`the ${PER_SOURCE + 1}th connection from one address is closed at once; another address keeps working`, async () => {
  const held = await hold(PER_SOURCE, '127.0.0.2');
  await expectRefused(() => rawTcp(h.port, '127.0.0.2'));
  const other = await curl(h, '/web/meanwhile', { client: alice, token });
  expect(other.status).toBe(200);
  const r = await h.waitForAudit((a) => a.event === 'connection.reject' && (a.source ?? '').startsWith('127.0.0.2:'));
  expect(r).toMatchObject({ decision: 'deny', detail: { limit: 'connectionsPerSource' } });
  expect(r.reason).toMatch(/connectionsPerSource is 3/);
  // A freed slot is a slot again.
  await release(held.slice(0, 1));
  const again = await hold(1, '127.0.0.2');
  await release([...held.slice(1), ...again]);
});

it('UNIX-socket clients are one source', async () => {
  const held = await Promise.all(Array.from({ length: PER_SOURCE }, () => rawUnix(unixListener())));
  await expectRefused(() => rawUnix(unixListener()));
  await h.waitForAudit((a) => a.event === 'connection.reject' && a.source === 'unix');
  expect(held.some((c) => c.isClosed())).toBe(false);
  await release(held);
});

it(`past ${OVERALL} connections in all, everyone is refused until one closes`, async () => {
  const held = [...(await hold(3, '127.0.0.3')), ...(await hold(3, '127.0.0.4')), ...(await hold(2, '127.0.0.5'))];
  await expectRefused(() => rawTcp(h.port, '127.0.0.7'));
  const refused = await curl(h, '/web/over-the-limit', { client: alice, token });
  expect(refused.status).toBe(0);
  const r = await h.waitForAudit((a) => a.event === 'connection.reject' && (a.source ?? '').startsWith('127.0.0.7:'));
  expect(r).toMatchObject({ decision: 'deny', detail: { limit: 'connections' } });
  await release(held.slice(0, 1));
  expect((await curl(h, '/web/after', { client: alice, token })).status).toBe(200);
  await release(held.slice(1));
});

it('refusals from one address leave at most 10 records per 10 s, then one record counting the rest; every refusal is counted in metrics', async () => {
  const before = await metric(/^gatehouse_limit_refusals_total\{limit="connectionsPerSource"\}/);
  const held = await hold(PER_SOURCE, '127.0.0.6');
  expect(await metric(/^gatehouse_open_connections /)).toBe(PER_SOURCE);
  for (let i = 0; i < 25; i += 1) await expectRefused(() => rawTcp(h.port, '127.0.0.6'));
  expect(await metric(/^gatehouse_limit_refusals_total\{limit="connectionsPerSource"\}/)).toBe(before + 25);
  await sleep(300);
  expect(rejects('127.0.0.6:')).toHaveLength(10);
  await sleep(10_000);
  await expectRefused(() => rawTcp(h.port, '127.0.0.6'));
  const last = await h.waitForAudit((a) => a.event === 'connection.reject' && (a.source ?? '').startsWith('127.0.0.6:') && a.detail?.suppressedBefore !== undefined);
  expect(last.detail?.suppressedBefore).toBe(15);
  await release(held);
}, 30_000);

it('SIGTERM with clients stuck before the TLS handshake exits at once, writing gateway.stop', async () => {
  // handshakeTimeoutSeconds is 30 here: only shutdown itself can end these.
  const stuck = [...(await hold(PER_SOURCE, '127.0.0.8')), ...(await hold(2, '127.0.0.9'))];
  const started = performance.now();
  const code = await Promise.race([h.stop('SIGTERM'), sleep(9000).then(() => 'still running')]);
  const tookMs = performance.now() - started;
  for (const c of stuck) c.socket.destroy();
  expect(code).toBe(0);
  expect(tookMs).toBeLessThan(3000);
  // The audit log's closing checkpoint follows the gateway's last record.
    expect(h.audit().filter((r) => r.event !== 'audit.checkpoint').at(-1)).toMatchObject({ event: 'gateway.stop' });
}, 15_000);
