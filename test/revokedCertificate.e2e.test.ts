// A client certificate revoked in the CRL while its connections are open: at the CRL reload its publisher,
// tunnels, WebSockets and keep-alive connections end (each close record naming the reason), and nobody else's.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curl, inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { crlPathOf, enableCrl, installCrl, makeCrl } from './support/clientCrls.ts';
import { echoService, publishedRoute, publishTop, startPublisher, type PublisherProcess } from './support/publishPeers.ts';
import { cleanEnv, gatewayFlags, writeToken } from './support/tunnelClient.ts';
import { connectTunnel, webSocketTunnel, type TunnelEnd } from './support/tunnelPeers.ts';
import { certificateVariants } from './hostile/support/certVariants.ts';

const REVOKED = 'client certificate revoked (tls.crl)';
/** Any user may reach any published service here, so alice's streams go through carol's publisher. */
const sharedRoute = `  - name: shared
    protocols: [tcp]
    tunnel: "{service}.{user}.shared"
    upstream: published:{user}/{service}
    policy: |
      allow if user($u);
`;
let h: Harness;
let alice: TestClientCertificate;
let carol: TestClientCertificate;
let aliceToken: string;
let carolToken: string;
let publisher: PublisherProcess | undefined;
let echo: Server;

beforeAll(async () => {
  h = await startHarness({ routes: publishedRoute + sharedRoute, extraTop: publishTop });
  alice = await h.pki.client('alice');
  carol = await h.pki.client('carol');
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-revoked-cert-'));
  mkdirSync(join(home, 'private'), { mode: 0o700 });
  echo = await echoService(join(home, 'private', 'echo.sock'));
  aliceToken = readFileSync(writeToken(h, join(home, 'alice.token'), 'alice'), 'utf8').trim();
  const carolFile = writeToken(h, join(home, 'carol.token'), 'carol');
  carolToken = readFileSync(carolFile, 'utf8').trim();
  await enableCrl(h);
  const flags = gatewayFlags(h, carol, carolFile).filter((f, i, all) => f !== '--transport' && all[i - 1] !== '--transport');
  publisher = startPublisher([...flags, `echo=unix:${join(home, 'private', 'echo.sock')}`], cleanEnv(home));
  await publisher.waitForStderr(/published as carol/);
}, 60_000);

afterAll(async () => {
  await publisher?.stop('SIGKILL');
  echo?.close();
  await h?.stop();
});

async function echoes(end: TunnelEnd, text: string): Promise<void> {
  const got = new Promise<string>((resolve) => end.onData((d) => resolve(d.toString())));
  await end.write(Buffer.from(text));
  expect(await got).toBe(text);
}

/** A keep-alive HTTPS connection that has served one request and stays open. */
function keepAlive(client: TestClientCertificate, token: string, on: Harness = h): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: on.port, servername: 'localhost', ca: on.pki.caCert, cert: client.cert, key: client.key }, () => {
      socket.write(`GET /~carol/none/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    });
    socket.on('error', reject);
    socket.once('data', () => resolve(socket));
  });
}

it("a revoked certificate's publisher, tunnels, WebSocket tunnel and keep-alive connection end at the CRL reload, each record naming why", async () => {
  const publishOpen = await h.waitForAudit((r) => r.event === 'publish.open' && r.decision === 'allow' && r.client?.cn === 'carol');
  // alice reaches carol's service: her stream goes through carol's publisher.
  const aliceThrough = await connectTunnel(h, alice, 'echo.carol.shared:443', { 'Proxy-Authorization': `Bearer ${aliceToken}` });
  if (!aliceThrough.ok) throw new Error(`refused: ${aliceThrough.status} ${aliceThrough.body}`);
  await echoes(aliceThrough.end, 'alice before');
  // carol's own connections: a CONNECT tunnel, the WebSocket tunnel endpoint, an idle keep-alive connection.
  const carolTunnel = await connectTunnel(h, carol, 'echo.carol:443', { 'Proxy-Authorization': `Bearer ${carolToken}` });
  if (!carolTunnel.ok) throw new Error(`refused: ${carolTunnel.status} ${carolTunnel.body}`);
  await echoes(carolTunnel.end, 'carol before');
  const carolWs = await webSocketTunnel(h, carol, 'echo.carol', carolToken);
  if (!carolWs.ok) throw new Error(`refused: ${carolWs.status} ${carolWs.body}`);
  await echoes(carolWs.end, 'carol ws before');
  const idle = await keepAlive(carol, carolToken);
  const idleClosed = new Promise<void>((resolve) => idle.once('close', () => resolve()));
  // alice's own keep-alive connection must survive.
  const aliceIdle = await keepAlive(alice, aliceToken);
  let aliceIdleClosed = false;
  aliceIdle.once('close', () => (aliceIdleClosed = true));

  installCrl(crlPathOf(h), await makeCrl(h, [carol.serial]));

  const installedAt = Date.now();
  const closed = await h.waitForAudit((r) => r.event === 'publish.close' && r.publisher === publishOpen.publisher, 15_000);
  expect(closed.reason).toBe(REVOKED);
  const reload = h.audit().filter((r) => r.event === 'revocation.reload' && r.detail?.crl !== undefined).at(-1);
  console.log(`revoked certificate: publisher dropped ${Date.parse(closed.time) - installedAt} ms after the CRL file was replaced, ${Date.parse(closed.time) - Date.parse(reload?.time ?? '')} ms after its reload`);
  const tunnelClosed = await h.waitForAudit((r) => r.event === 'tunnel.close' && r.client?.cn === 'carol' && (r.detail as { transport?: string } | undefined)?.transport === 'connect', 10_000);
  expect(tunnelClosed.reason).toBe(REVOKED);
  const wsClosed = await h.waitForAudit((r) => r.event === 'tunnel.close' && r.client?.cn === 'carol' && (r.detail as { transport?: string } | undefined)?.transport === 'websocket-tunnel', 10_000);
  expect(wsClosed.reason).toBe(REVOKED);
  await idleClosed;
  const connections = await h.waitForAudit((r) => r.event === 'connection.close' && r.client?.cn === 'carol' && r.reason === REVOKED);
  expect(connections).toBeDefined();
  // alice's stream through carol's publisher ends as an error (its TCP connection reset, no clean end), with its close record.
  let cleanEnd = false;
  void aliceThrough.end.peerEnded.then(() => (cleanEnd = true));
  await aliceThrough.end.closed;
  expect(cleanEnd).toBe(false);
  aliceThrough.end.destroy();
  const aliceClosed = await h.waitForAudit((r) => r.event === 'tunnel.close' && r.client?.cn === 'alice' && r.upstream === 'published:carol/echo', 10_000);
  expect(aliceClosed.reason).not.toBe(REVOKED);
  // carol cannot come back (the handshake refuses her); alice is served on her open connection and new ones.
  await h.waitForAudit((r) => r.event === 'tls.reject' && /revoked/.test(r.reason ?? ''), 15_000);
  expect(aliceIdleClosed).toBe(false);
  expect((await curl(h, '/~alice/none/', { client: alice, token: aliceToken })).status).toBe(503);
  aliceIdle.destroy();
}, 60_000);

it('a config reload that brings a CRL revoking an open connection ends it too', async () => {
  const dave = await h.pki.client('dave');
  const daveToken = mintRaw(h.rootKey.privateKey, `user("dave"); check if time($t), $t <= ${inOneHour()};`);
  const idle = await keepAlive(dave, daveToken);
  const idleClosed = new Promise<void>((resolve) => idle.once('close', () => resolve()));
  const config = join(h.dir, 'routes.yaml');
  writeFileSync(join(h.dir, 'certs', 'other.crl'), await makeCrl(h, [carol.serial, dave.serial]));
  const reloads = h.audit().filter((r) => r.event === 'config.reload').length;
  writeFileSync(config, readFileSync(config, 'utf8').replace('  crl: certs/clients.crl\n', '  crl: certs/other.crl\n'));
  h.proc.kill('SIGHUP');
  await h.waitForAudit(() => h.audit().filter((r) => r.event === 'config.reload' && r.decision === 'allow').length > reloads, 10_000);
  await idleClosed;
  await h.waitForAudit((r) => r.event === 'connection.close' && r.client?.cn === 'dave' && r.reason === REVOKED);
}, 30_000);

it('a revoked certificate cannot come back by resuming a TLS session from before the revocation', async () => {
  const frank = await h.pki.client('frank');
  const token = mintRaw(h.rootKey.privateKey, `user("frank"); check if time($t), $t <= ${inOneHour()};`);
  const options = { host: '127.0.0.1', port: h.port, servername: 'localhost', ca: h.pki.caCert, cert: frank.cert, key: frank.key };
  /** One request on a new connection (resuming `session` if given): the status, and the session to resume next time. */
  const once = (session?: Buffer) =>
    new Promise<{ status: number; reused: boolean; session?: Buffer }>((resolve) => {
      let ticket: Buffer | undefined;
      let answer = '';
      let reused = false;
      const socket = tlsConnect({ ...options, ...(session && { session }) }, () => {
        reused = socket.isSessionReused();
        socket.write(`GET /~frank/none/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);
      });
      socket.on('session', (s: Buffer) => (ticket = s));
      socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
      socket.on('error', () => {});
      socket.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0), reused, ...(ticket && { session: ticket }) }));
    });
  const first = await once();
  expect(first.status).toBe(503);
  const resumed = await once(first.session);
  expect(resumed).toMatchObject({ status: 503, reused: true });
  const revocations = h.audit().filter((r) => r.event === 'revocation.reload').length;
  // The list the running config names (a test above switched it).
  const configured = /^ {2}crl: (\S+)$/m.exec(readFileSync(join(h.dir, 'routes.yaml'), 'utf8'))?.[1] ?? '';
  installCrl(join(h.dir, configured), await makeCrl(h, [carol.serial, frank.serial]));
  await h.waitForAudit(() => h.audit().filter((r) => r.event === 'revocation.reload').length > revocations, 10_000);
  const after = await once(resumed.session ?? first.session);
  expect(after.status).toBe(0);
  expect(after.reused).toBe(false);
}, 30_000);

it('a connection does not outlive its client certificate: at expiry its publisher and keep-alive connection end', async () => {
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-expiring-cert-'));
  // Signed by the site CA, valid for a few more seconds.
  const variant = await (await certificateVariants(h.pki.dir, join(home, 'certs'))).signed('gina', { name: 'gina', notAfter: new Date(Date.now() + 6000) });
  const gina: TestClientCertificate = { ...variant, serial: '' };
  mkdirSync(join(home, 'private'), { mode: 0o700 });
  const service = await echoService(join(home, 'private', 'echo.sock'));
  const tokenFile = writeToken(h, join(home, 'gina.token'), 'gina');
  const flags = gatewayFlags(h, gina, tokenFile).filter((f, i, all) => f !== '--transport' && all[i - 1] !== '--transport');
  const expiring = startPublisher([...flags, `echo=unix:${join(home, 'private', 'echo.sock')}`], cleanEnv(home));
  try {
    await expiring.waitForStderr(/published as gina/);
    const idle = await keepAlive(gina, readFileSync(tokenFile, 'utf8').trim());
    const idleClosed = new Promise<void>((resolve) => idle.once('close', () => resolve()));
    const closed = await h.waitForAudit((r) => r.event === 'publish.close' && r.client?.cn === 'gina', 30_000);
    expect(closed.reason).toBe('client certificate expired');
    await idleClosed;
    await h.waitForAudit((r) => r.event === 'connection.close' && r.client?.cn === 'gina' && r.reason === 'client certificate expired');
  } finally {
    await expiring.stop('SIGKILL');
    service.close();
  }
}, 60_000);

describe('serve --processes 2', () => {
  let two: Harness;
  beforeAll(async () => {
    two = await startHarness({ routes: publishedRoute, serveArgs: ['--processes', '2'] });
    await enableCrl(two);
  }, 60_000);
  afterAll(async () => {
    await two?.stop();
  });

  it("every process ends the revoked certificate's connections it holds", async () => {
    const erin = await two.pki.client('erin');
    const token = mintRaw(two.rootKey.privateKey, `user("erin"); check if time($t), $t <= ${inOneHour()};`);
    // The cluster hands new connections to the processes in turn: four land on both.
    const sockets = await Promise.all([0, 1, 2, 3].map(() => keepAlive(erin, token, two)));
    const closed = sockets.map((socket) => new Promise<void>((resolve) => socket.once('close', () => resolve())));
    installCrl(crlPathOf(two), await makeCrl(two, [erin.serial]));
    await Promise.all(closed);
    const records = () => two.audit().filter((r) => r.event === 'connection.close' && r.client?.cn === 'erin' && r.reason === REVOKED);
    await two.waitForAudit(() => records().length === 4, 10_000);
  }, 30_000);
});
