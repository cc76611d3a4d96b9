// Many streams through one publisher: 200 concurrent tunnels, one of them a reader that never reads.
// The others must finish, and neither the gateway nor the publisher may buffer what the stalled one refuses.
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { cleanEnv, gatewayFlags, writeToken } from './support/tunnelClient.ts';
import { connectTunnel, rssMb } from './support/tunnelPeers.ts';
import { publishedRoute, startPublisher, type PublisherProcess } from './support/publishPeers.ts';

const MiB = 1 << 20;
const TUNNELS = 200;
const EACH = 2 * MiB;
const STALLED_OFFER = 512 * MiB;

let h: Harness;
let alice: TestClientCertificate;
let publisher: PublisherProcess;
let service: Server;
/** Bytes the service got off its hands (write callbacks) towards the stalled reader. */
let stalledTaken = 0;
/** The service's side of the stalled stream: it must be closed once the user leaves. */
let stalledSocket: import('node:net').Socket | undefined;
let aliceToken: string;

/** Reads "<bytes>\n", then sends that many bytes (with backpressure) and ends. */
async function sourceService(path: string): Promise<Server> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    let line = '';
    const onData = (d: Buffer) => {
      line += d.toString('latin1');
      if (!line.includes('\n')) return;
      socket.off('data', onData);
      let left = Number(line.slice(0, line.indexOf('\n')));
      const stalled = left === STALLED_OFFER;
      if (stalled) stalledSocket = socket;
      const chunk = Buffer.alloc(64 * 1024, 0x5a);
      const pump = () => {
        while (left > 0 && !socket.destroyed) {
          const part = chunk.subarray(0, Math.min(chunk.length, left));
          left -= part.length;
          const ok = socket.write(part, () => {
            if (stalled) stalledTaken += part.length;
          });
          if (!ok) return void socket.once('drain', pump);
        }
        socket.end();
      };
      pump();
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, () => resolve()));
  return server;
}

beforeAll(async () => {
  h = await startHarness({
    routes: publishedRoute,
    extraTop: `publish:\n  policy: |\n    allow if user($u);\n  streamsPerPublisher: 400\nlimits:\n  tunnelsPerIdentity: 400\n  connectionsPerSource: 1000\n  requestsPerSecond: 1000\n  requestBurst: 2000\n`,
  });
  alice = await h.pki.client('alice');
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-publish-load-'));
  mkdirSync(join(home, 'private'), { mode: 0o700 });
  service = await sourceService(join(home, 'private', 'source.sock'));
  const tokenFile = writeToken(h, join(home, 'alice.token'), 'alice');
  aliceToken = readFileSync(tokenFile, 'utf8').trim();
  const flags = gatewayFlags(h, alice, tokenFile).slice(0, -2);
  publisher = startPublisher([...flags, `source=unix:${join(home, 'private', 'source.sock')}`], cleanEnv(home));
  await publisher.waitForStderr(/published as alice/);
}, 60_000);

afterAll(async () => {
  await publisher?.stop('SIGKILL');
  service?.close();
  await h?.stop();
});

it(`${TUNNELS} concurrent tunnels through one publisher, one reader stalled: the others finish, memory stays bounded`, async () => {
  const gatewayPid = h.proc.pid as number;
  const publisherPid = publisher.proc.pid as number;
  const baseline = { gateway: rssMb(gatewayPid), publisher: rssMb(publisherPid) };
  const peak = { ...baseline };
  const sampler = setInterval(() => {
    peak.gateway = Math.max(peak.gateway, rssMb(gatewayPid));
    peak.publisher = Math.max(peak.publisher, rssMb(publisherPid));
  }, 50);
  const started = performance.now();
  const open = async (bytes: number) => {
    const t = await connectTunnel(h, alice, 'source.alice:443', { 'Proxy-Authorization': `Bearer ${aliceToken}` });
    if (!t.ok) throw new Error(`tunnel refused: ${t.status} ${t.body}`);
    await t.end.write(Buffer.from(`${bytes}\n`));
    return t.end;
  };
  const stalled = await open(STALLED_OFFER);
  stalled.pause();
  const results = await Promise.all(
    Array.from({ length: TUNNELS - 1 }, async () => {
      const end = await open(EACH);
      let got = 0;
      end.onData((d) => (got += d.length));
      await end.peerEnded;
      end.end();
      return got;
    }),
  );
  const othersMs = performance.now() - started;
  // Give the stalled stream time to fill every buffer it can, then look at what it cost.
  await new Promise((r) => setTimeout(r, 1500));
  clearInterval(sampler);
  console.log(
    `publish load: ${TUNNELS - 1} tunnels x ${EACH / MiB} MiB finished in ${Math.round(othersMs)} ms beside a stalled reader; ` +
      `the stalled stream's service got ${(stalledTaken / MiB).toFixed(1)} MiB of ${STALLED_OFFER / MiB} MiB off its hands; ` +
      `RSS gateway ${baseline.gateway.toFixed(0)} -> peak ${peak.gateway.toFixed(0)} MB, publisher ${baseline.publisher.toFixed(0)} -> peak ${peak.publisher.toFixed(0)} MB`,
  );
  expect(results.every((n) => n === EACH)).toBe(true);
  expect(stalledTaken).toBeLessThan(32 * MiB);
  expect(peak.gateway - baseline.gateway).toBeLessThan(200);
  expect(peak.publisher - baseline.publisher).toBeLessThan(200);
  // The user leaves: the publisher must close the service's connection, not read the rest into the void.
  stalled.destroy();
  const until = Date.now() + 2000;
  while (!stalledSocket?.destroyed && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  expect(stalledSocket?.destroyed).toBe(true);
  expect(stalledTaken).toBeLessThan(32 * MiB);
  const closes = await h.waitForAudit(() => h.audit().filter((r) => r.event === 'tunnel.close' && r.route === 'published').length >= TUNNELS, 10_000);
  expect(closes).toBeDefined();
}, 120_000);

it('a gateway shutdown with a publisher connected: publish.close before gateway.stop, exit 0, the publisher hears a goodbye (not a loss) and reconnects', async () => {
  const from = publisher.stderr().length;
  expect(await h.stop('SIGTERM')).toBe(0);
  const records = h.audit();
  const close = records.findIndex((r) => r.event === 'publish.close' && r.reason === 'gateway shutting down');
  expect(close).toBeGreaterThan(-1);
  expect(records.findIndex((r) => r.event === 'gateway.stop')).toBeGreaterThan(close);
  await publisher.waitForStderr(/\S+ is going away \(streams in flight finish on the old connection\); reconnecting/, 5000, from);
  expect(publisher.stderr().slice(from)).not.toMatch(/ lost /);
}, 30_000);
