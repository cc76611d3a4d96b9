// Hostile UDP flows against a real `gatehouse serve`: malformed capsules, oversize datagrams each way, a
// flood from one flow (other flows and a TCP user unaffected), too many flows, a flow left open, a text message.
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { AuditRecord } from '../../src/audit/auditRecord.ts';
import { datagramCapsule, encodeCapsule, encodeVarint } from '../../src/tunnel/capsules.ts';
import { UDP_SUBPROTOCOL } from '../../src/tunnel/udpChannel.ts';
import { startHarness, type Harness } from '../support/gatewayHarness.ts';
import type { TestClientCertificate } from '../support/pki.ts';
import { writeToken, echoHandler } from '../support/tunnelClient.ts';
import { connectTunnel, unixService, type UnixService } from '../support/tunnelPeers.ts';
import { rawConnectUdp, startUdpEcho, type RawUdpFlow, type UdpEcho } from '../support/udpPeers.ts';

const PER_FLOW_RATE = 300;
const FLOWS_PER_IDENTITY = 3;

let h: Harness;
let alice: TestClientCertificate;
let bob: TestClientCertificate;
let aliceToken: string;
let bobToken: string;
let echo: UdpEcho;
let tcpEcho: UnixService;
/** Answers `big` with 4,000 bytes and then `small`: an upstream that sends more than a flow carries. */
let talker: { port: number; close(): void };

const udpRoute = (name: string, port: number, extra = '') => `  - name: ${name}
    protocols: [udp]
    upstream: udp:127.0.0.1:${port}
${extra}    policy: |
      allow if user($u), protocol("udp");
`;

beforeAll(async () => {
  echo = await startUdpEcho();
  talker = await new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.on('message', (msg, rinfo) => {
      if (String(msg) !== 'big') return;
      socket.send(Buffer.alloc(4000, 1), rinfo.port, rinfo.address);
      socket.send('small', rinfo.port, rinfo.address);
    });
    socket.bind(0, '127.0.0.1', () => resolve({ port: socket.address().port, close: () => socket.close() }));
  });
  h = await startHarness({
    routes: [
      udpRoute('echo', echo.port),
      udpRoute('talker', talker.port),
      udpRoute('sleepy', echo.port, '    idleTimeoutSeconds: 1\n'),
      `  - name: tcp-echo
    protocols: [tcp]
    upstream: unix:run/echo.sock
    policy: |
      allow if user($u);
`,
    ].join(''),
    extraTop: `limits:\n  udp:\n    packetsPerSecondPerFlow: ${PER_FLOW_RATE}\n    packetsPerSecondPerIdentity: 100000\n    flowsPerIdentity: ${FLOWS_PER_IDENTITY}\n`,
  });
  tcpEcho = await unixService(join(h.dir, 'run', 'echo.sock'), echoHandler);
  [alice, bob] = [await h.pki.client('alice'), await h.pki.client('bob')];
  aliceToken = readFileSync(writeToken(h, join(h.dir, 'alice.token'), 'alice'), 'utf8').trim();
  bobToken = readFileSync(writeToken(h, join(h.dir, 'bob.token'), 'bob'), 'utf8').trim();
}, 60_000);

afterAll(async () => {
  await h?.stop();
  echo?.close();
  talker?.close();
  tcpEcho?.close();
});

const closeOf = (flow: RawUdpFlow) => h.waitForAudit((r: AuditRecord) => r.event === 'udp.close' && r.source === flow.source, 8000);
const open = async (route: string, who: 'alice' | 'bob' = 'alice') => {
  const flow = await rawConnectUdp(h, who === 'alice' ? alice : bob, who === 'alice' ? aliceToken : bobToken, `/.well-known/gatehouse/udp/${route}`);
  expect(flow.status).toBe(101);
  return flow;
};

describe('malformed capsules end the flow, with the reason in its record', () => {
  it.each([
    ['a DATAGRAM capsule without a context ID', encodeCapsule(0, Buffer.alloc(0)), /without a context ID/],
    ['a capsule longer than any datagram', Buffer.concat([encodeVarint(0), encodeVarint(1 << 20), Buffer.alloc(64)]), /a capsule of 1048576 bytes/],
    ['a length above 2^53', Buffer.concat([encodeVarint(0x2a), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])]), /above 2\^53-1/],
  ])('%s', async (_name, bytes, reason) => {
    const flow = await open('echo');
    flow.sendDatagram(Buffer.from('before'));
    await flow.waitDatagrams(1);
    flow.tls.socket.write(bytes);
    await flow.tls.closed;
    const record = await closeOf(flow);
    expect(record).toMatchObject({ route: 'echo', packetsIn: 1, packetsOut: 1 });
    expect(record.reason).toMatch(/^client error: malformed capsule: /);
    expect(record.reason).toMatch(reason);
  });
});

it('drops oversize datagrams each way and counts them; the flow goes on', async () => {
  const flow = await open('talker');
  flow.sendDatagram(Buffer.alloc(2000, 7)); // above limits.udp.maxDatagramBytes (1,472): never sent upstream
  flow.sendDatagram(Buffer.from('big')); // the talker answers 4,000 bytes (dropped) and then `small`
  expect((await flow.waitDatagrams(1)).map(String)).toEqual(['small']);
  flow.tls.socket.end();
  expect(await closeOf(flow)).toMatchObject({ packetsIn: 1, packetsOut: 1, dropped: { oversizeIn: 1, oversizeOut: 1 }, reason: 'client closed' });
});

it('a flood from one flow is cut to its rate; another flow of the same user, another user and a TCP tunnel are served meanwhile', async () => {
  const [flood, sibling, other] = [await open('echo'), await open('echo'), await open('echo', 'bob')];
  // 5,000 datagrams in one write: far above 300/s.
  const datagram = datagramCapsule(Buffer.from('drop: the echo keeps quiet'));
  flood.tls.socket.write(Buffer.concat(Array.from({ length: 5000 }, () => datagram)));
  sibling.sendDatagram(Buffer.from('sibling'));
  other.sendDatagram(Buffer.from('other'));
  expect((await sibling.waitDatagrams(1)).map(String)).toEqual(['sibling']);
  expect((await other.waitDatagrams(1)).map(String)).toEqual(['other']);
  const tcp = await connectTunnel(h, bob, 'tcp-echo:443', { 'proxy-authorization': `Bearer ${bobToken}` });
  if (!tcp.ok) throw new Error(`tcp tunnel refused: ${tcp.status}`);
  const heard = new Promise<string>((resolve) => tcp.end.onData((chunk) => resolve(String(chunk))));
  await tcp.end.write(Buffer.from('tcp user'));
  expect(await heard).toBe('tcp user');
  tcp.end.destroy();
  for (const flow of [flood, sibling, other]) flow.tls.socket.end();
  const record = await closeOf(flood);
  expect(record.reason).toBe('client closed');
  expect(record.dropped?.rateIn).toBeGreaterThan(3000);
  // At most a second's burst plus the rate over the flow's life went upstream.
  expect(record.packetsIn).toBeLessThanOrEqual(PER_FLOW_RATE * (1 + (record.durationMs ?? 0) / 1000) + 1);
  expect(await closeOf(sibling)).toMatchObject({ packetsIn: 1, packetsOut: 1 });
}, 30_000);

it('refuses a flow past limits.udp.flowsPerIdentity with 429 and a record; a closed flow gives its slot back', async () => {
  const flows = [];
  for (let i = 0; i < FLOWS_PER_IDENTITY; i++) flows.push(await open('echo'));
  const refused = await rawConnectUdp(h, alice, aliceToken, '/.well-known/gatehouse/udp/echo');
  expect(refused.status).toBe(429);
  const record = await h.waitForAudit((r) => r.event === 'request' && r.protocol === 'udp' && r.status === 429);
  expect(record.reason).toMatch(/UDP flows open \(limits\.udp\.flowsPerIdentity 3\)/);
  flows[0]?.tls.socket.end();
  await closeOf(flows[0] as RawUdpFlow);
  const again = await open('echo');
  again.tls.socket.end();
  for (const flow of flows.slice(1)) flow.tls.socket.end();
  await Promise.all([again, ...flows.slice(1)].map(closeOf));
});

it('closes a flow left open at the idle timeout, with a record', async () => {
  const flow = await open('sleepy');
  flow.sendDatagram(Buffer.from('once'));
  await flow.waitDatagrams(1);
  await flow.tls.closed;
  expect(await closeOf(flow)).toMatchObject({ route: 'sleepy', reason: 'idle timeout', packetsIn: 1, packetsOut: 1 });
}, 15_000);

it('ends a WebSocket flow that sends a text message (close 1003), with a record', async () => {
  const ws = new WebSocket(`wss://localhost:${h.port}/.well-known/gatehouse/udp/echo`, UDP_SUBPROTOCOL, { ca: h.pki.caCert, cert: alice.cert, key: alice.key, headers: { authorization: `Bearer ${aliceToken}` } });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const source = `127.0.0.1:${(ws as unknown as { _socket: { localPort: number } })._socket.localPort}`;
  ws.send('not a datagram');
  const code = await new Promise<number>((resolve) => ws.once('close', resolve));
  expect(code).toBe(1003);
  const record = await h.waitForAudit((r) => r.event === 'udp.close' && r.source === source);
  expect(record).toMatchObject({ reason: 'client error: text message on a UDP flow', detail: { transport: 'websocket-udp' } });
});

// Last: it stops the gateway.
it('a flow still sending while the gateway shuts down ends with its record, and the gateway exits cleanly', async () => {
  const flow = await open('echo');
  const datagram = datagramCapsule(Buffer.from('drop: still talking'));
  const talking = setInterval(() => {
    if (!flow.tls.isClosed()) flow.tls.socket.write(Buffer.concat([datagram, datagram, datagram, datagram]));
  }, 1);
  await new Promise((r) => setTimeout(r, 200));
  const code = await h.stop('SIGTERM');
  clearInterval(talking);
  expect(h.stderr()).not.toMatch(/ERR_SOCKET_DGRAM_NOT_RUNNING|Uncaught|uncaught/);
  expect(code).toBe(0);
  const record = h.audit().find((r) => r.event === 'udp.close' && r.source === flow.source);
  expect(record).toMatchObject({ reason: 'gateway shutting down' });
}, 30_000);
