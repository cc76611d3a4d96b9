// The gateway stopping (SIGTERM) drains published services as it drains socket routes: a request in flight
// to a published service completes; one still running at the drain deadline ends as an error, never cleanly.
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { curl, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { cleanEnv, gatewayFlags, writeToken } from './support/tunnelClient.ts';
import { publishedRoute, publishTop, startPublisher, type PublisherProcess } from './support/publishPeers.ts';

let h: Harness;
let alice: TestClientCertificate;
let home: string;
let aliceToken: string;
let service: HttpServer;
let publisher: PublisherProcess | undefined;
/** Requests the service has received, by path. */
const arrived = new Set<string>();
/** The slow answer's body: long enough that a cut would show. */
const SLOW_BODY = 'x'.repeat(256 << 10);

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `/slow` answers 1.5 s late (a body of known size); `/drip` sends 1 KiB every 100 ms and never ends. */
async function slowService(path: string): Promise<HttpServer> {
  const server = createHttpServer((req, res) => {
    arrived.add(req.url ?? '');
    req.resume();
    if (req.url === '/slow') return void setTimeout(() => res.end(SLOW_BODY), 1500);
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const tick = setInterval(() => res.write(Buffer.alloc(1024)), 100);
    res.once('close', () => clearInterval(tick));
  });
  await new Promise<void>((resolve) => server.listen(path, () => resolve()));
  return server;
}

beforeAll(async () => {
  h = await startHarness({ routes: publishedRoute, extraTop: publishTop });
  alice = await h.pki.client('alice');
  home = mkdtempSync(join(tmpdir(), 'gatehouse-publish-drain-'));
  mkdirSync(join(home, 'private'), { mode: 0o700 });
  service = await slowService(join(home, 'private', 'slow.sock'));
  const tokenFile = writeToken(h, join(home, 'alice.token'), 'alice');
  aliceToken = readFileSync(tokenFile, 'utf8').trim();
  publisher = startPublisher([...gatewayFlags(h, alice, tokenFile).slice(0, -2), `slow=unix:${join(home, 'private', 'slow.sock')}`], cleanEnv(home));
  await publisher.waitForStderr(/published as alice/);
}, 60_000);

afterAll(async () => {
  await publisher?.stop('SIGKILL');
  service?.closeAllConnections();
  service?.close();
  await h?.stop('SIGKILL');
});

it('SIGTERM: a published answer in flight completes 200 with its whole body; a download still running at the drain deadline ends as an error', async () => {
  const slow = curl(h, '/~alice/slow/slow', { client: alice, token: aliceToken });
  const dripStarted = performance.now();
  const drip = curl(h, '/~alice/slow/drip', { client: alice, token: aliceToken, args: ['--max-time', '40', '-o', '/dev/null'] });
  for (const until = Date.now() + 10_000; !(arrived.has('/slow') && arrived.has('/drip')); await wait(20)) if (Date.now() > until) throw new Error('requests never reached the service');
  const stoppedAt = performance.now();
  const exited = h.stop('SIGTERM');

  // The publisher hears a goodbye, not an error, and registers again at once (behind a balancer another
  // instance would take it), while the download it carries still runs on the old connection.
  let dripEnded = false;
  void drip.then(() => (dripEnded = true));
  await publisher?.waitForStderr(/is going away \(streams in flight finish on the old connection\); reconnecting/);
  expect(dripEnded).toBe(false);

  const answer = await slow;
  expect(answer.exitCode).toBe(0);
  expect(answer.status).toBe(200);
  expect(answer.body.length).toBe(SLOW_BODY.length);

  // The drain deadline (10 s) cuts the endless download: curl reports the cut (a clean end would exit 0).
  const cut = await drip;
  console.log(`publish drain: slow answer 200 (${answer.body.length} bytes); download cut ${Math.round(performance.now() - stoppedAt)} ms after SIGTERM (curl exit ${cut.exitCode}, ${Math.round(performance.now() - dripStarted)} ms in)`);
  expect(cut.exitCode).not.toBe(0);
  expect(cut.exitCode).not.toBe(28); // curl's own --max-time: the gateway never cut it
  expect(await exited).toBe(0);

  const records = h.audit();
  expect(records.find((r) => r.event === 'request' && r.path === '/~alice/slow/slow')).toMatchObject({ status: 200 });
  const dripRecord = records.find((r) => r.event === 'request' && r.path === '/~alice/slow/drip');
  console.log(`publish drain: the cut download's record: ${dripRecord?.status} ${dripRecord?.reason}`);
  expect(dripRecord?.reason).not.toBe(records.find((r) => r.event === 'request' && r.path === '/~alice/slow/slow')?.reason);
  const closed = records.findIndex((r) => r.event === 'publish.close');
  expect(records[closed]?.reason).toBe('gateway shutting down');
  expect(records.findIndex((r) => r.event === 'gateway.stop')).toBeGreaterThan(closed);
  console.log(`publish drain: the publisher wrote ${publisher?.stderr().trim().split('\n').length} lines, none an error (a goodbye, then its usual reconnect attempts)`);
  expect(publisher?.stderr()).not.toMatch(/lost|error/);
  expect(publisher?.proc.exitCode).toBeNull();
}, 60_000);
