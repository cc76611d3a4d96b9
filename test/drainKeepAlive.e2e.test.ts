// Shutdown and HTTP keep-alive (RFC 9112 9.6): once SIGTERM began, every response says `Connection: close`
// and its connection ends after it, so a client never sends another request on a connection being closed.
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { Client } from 'undici';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';

const routes = `  - name: slow
    path: /slow/
    upstream: unix:run/slow.sock
    policy: |
      allow if user($u);
`;
/** Clients sending steady requests, one keep-alive connection each. */
const WORKERS = 4;
/** Requests held by the upstream across the SIGTERM, answered once shutdown has surely begun. */
const HELD = 2;

let h: Harness;
let alice: TestClientCertificate;
let upstream: Server;
let token: string;
const held: Array<() => void> = [];

beforeAll(async () => {
  h = await startHarness({ routes, extraTop: 'limits:\n  requestsPerSecond: 100000\n  requestBurst: 100000\n' });
  alice = await h.pki.client('alice');
  // `/slow/held` waits until the test lets it go; anything else answers 50 ms late.
  upstream = createServer((req, res) => {
    req.resume();
    if (req.url?.endsWith('/held')) held.push(() => res.end('held\n'));
    else setTimeout(() => res.end('ok\n'), 50);
  });
  mkdirSync(join(h.dir, 'run'), { recursive: true });
  await new Promise<void>((ok) => upstream.listen(join(h.dir, 'run', 'slow.sock'), ok));
  token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
}, 30_000);

afterAll(async () => {
  upstream?.closeAllConnections();
  upstream?.close();
  await h?.stop('SIGKILL');
});

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** True once the gateway has stopped accepting: its shutdown has begun. */
const refusesConnections = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(false)));
    socket.once('error', () => resolve(true));
  });

interface Outcome {
  /** Responses received after shutdown was seen to have begun, by their Connection field. */
  lateKeepAlive: number;
  lateClose: number;
  /**
   * Requests that failed (each on a connection whose previous response had kept it alive), and whether they
   * were sent once shutdown was seen. One sent just as it began may meet the close of a connection that was
   * idle then (no response left to say close: RFC 9112 9.6 has the client retry); after that, none may fail.
   */
  errors: Array<{ code: string; sentLate: boolean }>;
}

it('after SIGTERM every response says Connection: close and no client reuses a connection being closed', async () => {
  const clientFor = () => new Client(h.base, { connect: { ca: h.pki.caCert, cert: alice.cert, key: alice.key, servername: 'localhost' } });
  const headers = { authorization: `Bearer ${token}` };
  const outcome: Outcome = { lateKeepAlive: 0, lateClose: 0, errors: [] };
  let shutdownSeen = false;
  const clients: Client[] = [];
  // Each worker sends on its own connection until a response says close (its connection then ends) or a request fails.
  const worker = async (client: Client, path: string) => {
    for (;;) {
      const sentLate = shutdownSeen;
      try {
        const res = await client.request({ path, method: 'GET', headers });
        await res.body.text();
        const closes = String(res.headers.connection ?? '').toLowerCase() === 'close';
        if (shutdownSeen) closes ? (outcome.lateClose += 1) : (outcome.lateKeepAlive += 1);
        if (closes) return;
      } catch (err) {
        outcome.errors.push({ code: String((err as NodeJS.ErrnoException).code ?? (err as Error).message), sentLate });
        return;
      }
    }
  };
  const load = Array.from({ length: WORKERS }, (_, w) => {
    const client = clientFor();
    clients.push(client);
    return worker(client, `/slow/load-${w}`);
  });
  const heldClients = Array.from({ length: HELD }, clientFor);
  clients.push(...heldClients);
  const heldAnswers = heldClients.map((client) => client.request({ path: '/slow/held', method: 'GET', headers }).then(async (res) => (await res.body.text(), String(res.headers.connection ?? ''))));
  for (let i = 0; held.length < HELD; i += 1) {
    if (i > 250) throw new Error(`held requests did not arrive:\n${h.stderr()}`);
    await wait(20);
  }
  await wait(300);
  const exit = h.stop('SIGTERM');
  while (!(await refusesConnections(h.port))) await wait(10);
  shutdownSeen = true;
  held.forEach((answer) => answer());
  const heldConnection = await Promise.all(heldAnswers);
  await Promise.all(load);
  // A client told close does not send on that connection again: the next request needs a new one, which is refused.
  const next = await heldClients[0]!.request({ path: '/slow/after', method: 'GET', headers }).then(
    () => 'answered',
    (err: NodeJS.ErrnoException) => err.code ?? err.message,
  );
  await Promise.all(clients.map((c) => c.destroy()));
  expect(await exit).toBe(0);
  console.log(`drain keep-alive: held answers ${heldConnection.join(',')}; late responses close=${outcome.lateClose} keep-alive=${outcome.lateKeepAlive}; connection errors=${outcome.errors.length} ${JSON.stringify(outcome.errors)}; next on a closed connection: ${next}`);
  expect(heldConnection).toEqual(Array(HELD).fill('close'));
  expect(next).toBe('ECONNREFUSED');
  expect(outcome.lateKeepAlive).toBe(0);
  expect(outcome.errors.filter((e) => e.sentLate)).toEqual([]);
}, 60_000);
