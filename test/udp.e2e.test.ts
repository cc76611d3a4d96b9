// UDP flows through a real `gatehouse serve`: `gatehouse tunnel -L udp:` over RFC 9298 CONNECT-UDP and the
// WebSocket transport to a UDP echo and to dnsmasq answering dig; the RFC's template; refusals; the records.
import { execFile, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../src/audit/auditRecord.ts';
import { datagramCapsule, encodeCapsule } from '../src/tunnel/capsules.ts';
import { inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import { freePort, which } from './support/localServices.ts';
import { responseHead, tlsClient } from './support/rawClients.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { cleanEnv, gatewayFlags, startTunnel, writeToken } from './support/tunnelClient.ts';
import { expectFlowPerPeer, rawConnectUdp, startDnsmasq, startFirehose, startUdpEcho, udpClient, udpRoute, type UdpEcho } from './support/udpPeers.ts';

const hasDnsTools = which('dnsmasq') !== undefined && which('dig') !== undefined;

let h: Harness;
let alice: TestClientCertificate;
let aliceToken: string;
let home: string;
let echo: UdpEcho;
let dnsPort: number;
let dnsmasq: ChildProcess | undefined;
/** Answers `go` with FIREHOSE datagrams of 1,400 bytes, as fast as it can: more than any reader that stopped reading holds. */
let firehose: { port: number; close(): void };
const FIREHOSE = 20_000;

beforeAll(async () => {
  echo = await startUdpEcho();
  firehose = await startFirehose(FIREHOSE);
  dnsPort = await freePort();
  if (hasDnsTools) dnsmasq = await startDnsmasq(dnsPort);
  h = await startHarness({
    routes: [udpRoute('echo', `udp:127.0.0.1:${echo.port}`), udpRoute('dns', `udp:127.0.0.1:${dnsPort}`), udpRoute('ops-echo', `udp:127.0.0.1:${echo.port}`, 'allow if group("ops");'), udpRoute('firehose', `udp:127.0.0.1:${firehose.port}`)].join(''),
  });
  alice = await h.pki.client('alice');
  home = join(h.dir, 'home-alice');
  mkdirSync(home, { recursive: true });
  aliceToken = writeToken(h, join(home, 'token'), 'alice');
}, 60_000);

afterAll(async () => {
  await h?.stop();
  echo?.close();
  firehose?.close();
  dnsmasq?.kill();
});

const env = () => cleanEnv(home);
const closes = (route: string) => h.audit().filter((r) => r.event === 'udp.close' && r.route === route);

function dig(port: number, name: string): Promise<string> {
  return new Promise((resolve) => execFile('dig', ['@127.0.0.1', '-p', String(port), name, 'A', '+short', '+tries=2', '+time=3'], (_err, stdout) => resolve(stdout.trim())));
}

describe.each(['connect', 'websocket', 'http2'] as const)('gatehouse tunnel -L udp: over %s', (transport) => {
  it('carries datagrams both ways, one flow per local peer, and records each flow once with its counts', async () => {
    const before = closes('echo').length;
    const tunnel = await startTunnel(['-L', 'udp:127.0.0.1:0:echo', ...gatewayFlags(h, alice, aliceToken, transport)], env());
    try {
      expect(tunnel.stderr()).toMatch(/^ready: udp:127\.0\.0\.1:\d+ -> echo via https:\/\/localhost:\d+ \(/m);
      const port = tunnel.ready[0]?.port as number;
      await expectFlowPerPeer(port);
    } finally {
      await tunnel.stop();
    }
    await h.waitForAudit(() => closes('echo').length >= before + 2);
    const flows = closes('echo').slice(before);
    const transportName = { connect: 'connect-udp', websocket: 'websocket-udp', http2: 'h2-connect-udp' }[transport];
    const byCount = flows.sort((x, y) => (y.packetsIn ?? 0) - (x.packetsIn ?? 0));
    expect(byCount[0]).toMatchObject({ protocol: 'udp', route: 'echo', upstream: `udp:127.0.0.1:${echo.port}`, packetsIn: 5, packetsOut: 5, bytesIn: 15, bytesOut: 15, token: { user: 'alice' }, detail: { transport: transportName } });
    expect(byCount[1]).toMatchObject({ packetsIn: 1, packetsOut: 1 });
    // Over HTTP/2 the flows of one tunnel share one connection (a stream each); otherwise a connection each.
    expect(byCount[0]?.conn === byCount[1]?.conn).toBe(transport === 'http2');
    expect(byCount[0]?.dropped).toBeUndefined();
    const opens = h.audit().filter((r) => r.event === 'udp.open' && r.req === byCount[0]?.req);
    expect(opens).toHaveLength(1);
    expect(opens[0]).toMatchObject({ decision: 'allow', route: 'echo', detail: { transport: transportName } });
  }, 40_000);

  it.skipIf(!hasDnsTools)('reaches dnsmasq: dig gets its answer through the flow (needs dnsmasq and dig)', async () => {
    const tunnel = await startTunnel(['-L', 'udp:127.0.0.1:0:dns', ...gatewayFlags(h, alice, aliceToken, transport)], env());
    try {
      const port = tunnel.ready[0]?.port as number;
      expect(await dig(port, 'host.gatehouse.test')).toBe('192.0.2.7');
      expect(await dig(port, 'other.gatehouse.test')).toBe('192.0.2.7');
    } finally {
      await tunnel.stop();
    }
    await h.waitForAudit((r) => r.event === 'udp.close' && r.route === 'dns' && (r.packetsOut ?? 0) >= 1);
  }, 40_000);

  it('refuses a token without the route: 403 to the client (exit message), a deny record, no flow', async () => {
    const tunnel = await startTunnel(['-L', 'udp:127.0.0.1:0:ops-echo', ...gatewayFlags(h, alice, aliceToken, transport)], env());
    try {
      const client = await udpClient();
      await client.send('let me in', tunnel.ready[0]?.port as number);
      await tunnel.waitForStderr(/error: .*403|denied/);
      expect(client.replies).toHaveLength(0);
      client.close();
    } finally {
      await tunnel.stop();
    }
    const denied = await h.waitForAudit((r) => r.event === 'request' && r.protocol === 'udp' && r.route === 'ops-echo');
    expect(denied).toMatchObject({ decision: 'deny', status: 403, token: { user: 'alice' } });
    expect(h.audit().filter((r) => r.event === 'udp.open' && r.route === 'ops-echo')).toHaveLength(0);
  }, 30_000);
});

describe('RFC 9298 over HTTP/1.1, by hand', () => {
  const token = () => readFileSync(aliceToken, 'utf8').trim();

  it('the default template reaches the route whose upstream is that address: 101, Capsule-Protocol: ?1, unknown capsules ignored', async () => {
    const flow = await rawConnectUdp(h, alice, token(), `/.well-known/masque/udp/127.0.0.1/${echo.port}/`);
    expect(flow.status).toBe(101);
    expect(flow.head).toMatch(/^upgrade: connect-udp$/im);
    expect(flow.head).toMatch(/^capsule-protocol: \?1$/im);
    // An unknown capsule type (RFC 9297 §3.2: ignored) between two datagrams.
    flow.sendDatagram(Buffer.from('one'));
    flow.tls.socket.write(encodeCapsule(0x2a, Buffer.from('whatever this is')));
    flow.sendDatagram(Buffer.from('two'));
    expect((await flow.waitDatagrams(2)).map(String)).toEqual(['one', 'two']);
    flow.tls.socket.end();
    const record = await h.waitForAudit((r: AuditRecord) => r.event === 'udp.close' && r.target === `/.well-known/masque/udp/127.0.0.1/${echo.port}/`);
    expect(record).toMatchObject({ route: 'echo', packetsIn: 2, packetsOut: 2, reason: 'client closed' });
  });

  it('a template target that no udp route names is 404; a malformed one 400; a plain GET 426', async () => {
    expect((await rawConnectUdp(h, alice, token(), '/.well-known/masque/udp/127.0.0.1/9/')).status).toBe(404);
    expect((await rawConnectUdp(h, alice, token(), '/.well-known/masque/udp/127.0.0.1/99999/')).status).toBe(400);
    expect((await rawConnectUdp(h, alice, token(), '/.well-known/gatehouse/udp/echo', ['Capsule-Protocol: ?0'])).status).toBe(400);
    const tls = await tlsClient(h, alice);
    tls.socket.write(`GET /.well-known/gatehouse/udp/echo HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token()}\r\n\r\n`);
    const head = await responseHead(tls);
    expect(head.status).toBe(426);
    expect(head.head).toMatch(/^upgrade: connect-udp$/im);
    tls.socket.destroy();
  });
});

describe('a flow is decided once, and ended when that decision no longer holds', () => {
  it('takes datagrams sent with the request, before the 101 (RFC 9298 §3.3: optimistic sending)', async () => {
    const flow = await rawConnectUdp(h, alice, readFileSync(aliceToken, 'utf8').trim(), '/.well-known/gatehouse/udp/echo', [], datagramCapsule(Buffer.from('early')));
    expect(flow.status).toBe(101);
    expect((await flow.waitDatagrams(1)).map(String)).toEqual(['early']);
    flow.tls.socket.end();
  });

  it('ends an open flow when its token is revoked, with the reason in udp.close', async () => {
    const carolToken = mintRaw(h.rootKey.privateKey, `user("carol"); check if time($t), $t <= ${inOneHour()};`);
    const carol = await h.pki.client('carol');
    const flow = await rawConnectUdp(h, carol, carolToken, '/.well-known/gatehouse/udp/echo');
    flow.sendDatagram(Buffer.from('ping'));
    expect((await flow.waitDatagrams(1)).map(String)).toEqual(['ping']);
    const ids = biscuit.Biscuit.fromBase64(carolToken, biscuit.PublicKey.fromString(h.rootKey.publicKey.replace(/^ed25519\//, ''), biscuit.SignatureAlgorithm.Ed25519)).getRevocationIdentifiers().map(String);
    appendFileSync(h.revocationList, `${ids[0]}\n`);
    h.proc.kill('SIGHUP');
    await flow.tls.closed;
    const record = await h.waitForAudit((r) => r.event === 'udp.close' && r.source === flow.source);
    expect(record).toMatchObject({ reason: 'token revoked', packetsIn: 1, packetsOut: 1, token: { user: 'carol' } });
  }, 20_000);
});

it('holds a bounded queue for a client that stops reading: the rest of a burst is dropped and counted, not buffered', async () => {
  const flow = await rawConnectUdp(h, alice, readFileSync(aliceToken, 'utf8').trim(), '/.well-known/gatehouse/udp/firehose');
  expect(flow.status).toBe(101);
  flow.tls.socket.pause();
  flow.sendDatagram(Buffer.from('go'));
  // The gateway reads the burst while nothing is read here; then the client reads what was queued, and leaves.
  await new Promise((r) => setTimeout(r, 3000));
  flow.tls.socket.resume();
  await new Promise((r) => setTimeout(r, 500));
  flow.tls.socket.end();
  const record = await h.waitForAudit((r) => r.event === 'udp.close' && r.source === flow.source);
  expect(record.dropped?.queueFullOut).toBeGreaterThan(0);
  expect((record.packetsOut ?? 0) + (record.dropped?.queueFullOut ?? 0) + (record.dropped?.rateOut ?? 0)).toBeLessThanOrEqual(FIREHOSE);
  // What was carried fits in the queue (256 full-size datagrams) plus what the two kernels' socket buffers took.
  expect(record.packetsOut).toBeLessThan(FIREHOSE);
}, 20_000);
