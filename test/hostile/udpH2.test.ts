// Hostile HTTP/2 clients of the UDP flows: requests other than CONNECT-UDP, floods of streams, resets mid-flow,
// a client that never reads, an idle session, a revoked token, and shutdown (GOAWAY) with a flow open.
import { appendFileSync, readFileSync } from 'node:fs';
import { constants } from 'node:http2';
import { join } from 'node:path';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/auditRecord.ts';
import { inOneHour, mintRaw, startHarness, type Harness } from '../support/gatewayHarness.ts';
import { rawH2ConnectUdp, rawH2Session, type RawH2Session } from '../support/h2Peers.ts';
import { tlsClient } from '../support/rawClients.ts';
import type { TestClientCertificate } from '../support/pki.ts';
import { writeToken } from '../support/tunnelClient.ts';
import { startFirehose, startUdpEcho, udpRoute as udpUpstreamRoute, type UdpEcho } from '../support/udpPeers.ts';

const FLOWS_PER_IDENTITY = 3;
const FIREHOSE = 20_000;

let h: Harness;
let alice: TestClientCertificate;
let aliceToken: string;
let echo: UdpEcho;
/** Answers `go` with FIREHOSE datagrams of 1,400 bytes: more than a client that stopped reading holds. */
let firehose: { port: number; close(): void };

const udpRoute = (name: string, port: number) => udpUpstreamRoute(name, `udp:127.0.0.1:${port}`);

beforeAll(async () => {
  echo = await startUdpEcho();
  firehose = await startFirehose(FIREHOSE);
  h = await startHarness({
    routes: [udpRoute('echo', echo.port), udpRoute('firehose', firehose.port)].join(''),
    extraTop: `limits:\n  idleTimeoutSeconds: 2\n  udp:\n    flowsPerIdentity: ${FLOWS_PER_IDENTITY}\n`,
  });
  alice = await h.pki.client('alice');
  aliceToken = readFileSync(writeToken(h, join(h.dir, 'alice.token'), 'alice'), 'utf8').trim();
}, 60_000);

afterAll(async () => {
  await h?.stop();
  echo?.close();
  firehose?.close();
});

const closeOf = (s: RawH2Session, route = 'echo') => h.waitForAudit((r: AuditRecord) => r.event === 'udp.close' && r.source === s.source && r.route === route, 8000);

/** Sends one request on the session; resolves with the stream's RST_STREAM code and the response status, if any. */
function requestOn(s: RawH2Session, headers: Record<string, string>): Promise<{ rstCode: number; status?: number }> {
  const stream = s.session.request(headers, { endStream: headers[':method'] === 'GET' });
  stream.on('error', () => {});
  let status: number | undefined;
  stream.once('response', (h) => (status = Number(h[':status'])));
  stream.resume();
  return new Promise((resolve) => stream.once('close', () => resolve({ rstCode: stream.rstCode ?? 0, ...(status !== undefined && { status }) })));
}

describe('HTTP/2 carries CONNECT-UDP only: anything else is reset with HTTP_1_1_REQUIRED, with a record', () => {
  it.each([
    ['a GET of a page', { ':method': 'GET', ':path': '/', ':scheme': 'https', ':authority': 'localhost' }],
    ['a POST', { ':method': 'POST', ':path': '/api', ':scheme': 'https', ':authority': 'localhost' }],
    ['a GET of the UDP endpoint', { ':method': 'GET', ':path': '/.well-known/gatehouse/udp/echo', ':scheme': 'https', ':authority': 'localhost' }],
    ['a CONNECT without :protocol (a TCP tunnel)', { ':method': 'CONNECT', ':authority': 'echo:443' }],
    ['a CONNECT with :protocol websocket', { ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/.well-known/gatehouse/udp/echo', ':scheme': 'https', ':authority': 'localhost' }],
  ])('%s', async (_name, headers) => {
    const s = await rawH2Session(h, alice);
    const answer = await requestOn(s, { ...headers, authorization: `Bearer ${aliceToken}` });
    expect(answer).toEqual({ rstCode: constants.NGHTTP2_HTTP_1_1_REQUIRED });
    const record = await h.waitForAudit((r) => r.event === 'request' && r.source === s.source);
    expect(record).toMatchObject({ decision: 'deny', status: 426, detail: { transport: 'h2' } });
    expect(record.reason).toMatch(/^HTTP\/2 carries CONNECT-UDP only: /);
    s.session.close();
  });

  it('an extended CONNECT to a path that is no UDP endpoint is 404', async () => {
    const s = await rawH2Session(h, alice);
    const flow = await rawH2ConnectUdp(s, aliceToken, '/some/page');
    expect(flow.status).toBe(404);
    s.session.close();
  });
});

describe('many streams on one session', () => {
  it('a session that keeps sending refused requests is ended; the gateway goes on serving others', async () => {
    const s = await rawH2Session(h, alice);
    const answers = await Promise.all(Array.from({ length: 150 }, () => requestOn(s, { ':method': 'GET', ':path': '/', ':scheme': 'https', ':authority': 'localhost' })));
    await s.closed;
    expect(answers.filter((a) => a.rstCode === constants.NGHTTP2_HTTP_1_1_REQUIRED).length).toBeLessThanOrEqual(101);
    const next = await rawH2Session(h, alice);
    const flow = await rawH2ConnectUdp(next, aliceToken, '/.well-known/gatehouse/udp/echo');
    expect(flow.status).toBe(200);
    flow.stream.end();
    await flow.closed;
    next.session.close();
  });

  it('a session that sends each refused request with its RST_STREAM right behind it is ended all the same', async () => {
    const tls = await tlsClient(h, alice, { ALPNProtocols: ['h2'] });
    const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
      const head = Buffer.from([0, 0, payload.length, type, flags, 0, 0, 0, 0]);
      head.writeUInt32BE(stream, 5);
      return Buffer.concat([head, payload]);
    };
    // GET / on https://localhost (HPACK: indexed :method GET, :path /, :scheme https; :authority literal).
    const headerBlock = Buffer.concat([Buffer.from([0x82, 0x84, 0x87, 0x01, 9]), Buffer.from('localhost')]);
    const cancel = Buffer.from([0, 0, 0, constants.NGHTTP2_CANCEL]);
    // HEADERS and RST_STREAM of each stream in one write: should a stream be reset before it is dispatched, Node has
    // cleared its stream.session by then; the cap must hold all the same.
    const pairs = Array.from({ length: 150 }, (_, i) => [frame(1, 0x5, 2 * i + 1, headerBlock), frame(3, 0, 2 * i + 1, cancel)]).flat();
    tls.socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, Buffer.alloc(0)), ...pairs]));
    const source = `127.0.0.1:${tls.socket.localPort}`;
    await tls.closed;
    await h.waitForAudit((r) => r.event === 'connection.close' && r.source === source);
    const refusals = h.audit().filter((r) => r.event === 'request' && r.source === source);
    expect(refusals.length).toBeLessThanOrEqual(101);
  });

  it('a session holds no more flows than the identity may (SETTINGS_MAX_CONCURRENT_STREAMS); past the identity limit: 429', async () => {
    const s = await rawH2Session(h, alice);
    expect(s.settings.maxConcurrentStreams).toBe(FLOWS_PER_IDENTITY);
    const flows = await Promise.all(Array.from({ length: FLOWS_PER_IDENTITY }, () => rawH2ConnectUdp(s, aliceToken, '/.well-known/gatehouse/udp/echo')));
    expect(flows.map((f) => f.status)).toEqual(Array(FLOWS_PER_IDENTITY).fill(200));
    const other = await rawH2Session(h, alice);
    const refused = await rawH2ConnectUdp(other, aliceToken, '/.well-known/gatehouse/udp/echo');
    expect(refused.status).toBe(429);
    expect(refused.headers['proxy-status']).toMatch(/^gatehouse; error=http_request_denied; /);
    for (const f of flows) f.stream.end();
    await Promise.all(flows.map((f) => f.closed));
    s.session.close();
    other.session.close();
  });
});

describe('a client that breaks off mid-flow: the flow ends as an error, with its record', () => {
  // node:http2's close(code) ends the stream (END_STREAM) before its RST_STREAM: a clean end first. destroy() resets at once.
  it('resets the stream (RST_STREAM before END_STREAM)', async () => {
    const s = await rawH2Session(h, alice);
    const flow = await rawH2ConnectUdp(s, aliceToken, '/.well-known/gatehouse/udp/echo');
    flow.sendDatagram(Buffer.from('ping'));
    await flow.waitDatagrams(1);
    flow.stream.destroy(new Error('gone'));
    const record = await closeOf(s);
    expect(record).toMatchObject({ reason: 'client error: connection reset', packetsIn: 1, packetsOut: 1, detail: { transport: 'h2-connect-udp' } });
    s.session.close();
  });

  it('drops the whole connection', async () => {
    const s = await rawH2Session(h, alice);
    const flow = await rawH2ConnectUdp(s, aliceToken, '/.well-known/gatehouse/udp/echo');
    flow.sendDatagram(Buffer.from('ping'));
    await flow.waitDatagrams(1);
    s.session.destroy();
    const record = await closeOf(s);
    expect(record.reason).toMatch(/^client error: /);
    await h.waitForAudit((r) => r.event === 'connection.close' && r.source === s.source);
  });
});

it('holds a bounded queue for a client that never reads: the rest of a burst is dropped and counted', async () => {
  const s = await rawH2Session(h, alice);
  const flow = await rawH2ConnectUdp(s, aliceToken, '/.well-known/gatehouse/udp/firehose');
  flow.stream.pause();
  flow.sendDatagram(Buffer.from('go'));
  await new Promise((r) => setTimeout(r, 3000));
  s.session.destroy();
  const record = await closeOf(s, 'firehose');
  expect(record.dropped?.queueFullOut).toBeGreaterThan(0);
  expect(record.packetsOut).toBeLessThan(FIREHOSE);
}, 20_000);

it('closes a session with no stream open after limits.idleTimeoutSeconds', async () => {
  const s = await rawH2Session(h, alice);
  await s.closed;
  await h.waitForAudit((r) => r.event === 'connection.close' && r.source === s.source);
}, 15_000);

it('closes a session whose request headers never end (HEADERS without END_HEADERS, no CONTINUATION)', async () => {
  const tls = await tlsClient(h, alice, { ALPNProtocols: ['h2'] });
  expect(tls.socket.alpnProtocol).toBe('h2');
  const frame = (type: number, flags: number, stream: number, payload: Buffer) => Buffer.concat([Buffer.from([0, 0, payload.length, type, flags, 0, 0, 0, stream]), payload]);
  // The preface, empty SETTINGS, then a header block (`:method GET`, HPACK index 2) that never ends.
  tls.socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0, 1, Buffer.from([0x82]))]));
  // Within twice limits.idleTimeoutSeconds (2 s), whatever nghttp2 holds.
  expect(await tls.closed).toBeLessThan(8000);
}, 15_000);

it('ends an HTTP/2 flow when its token is revoked, with the reason in udp.close', async () => {
  const carolToken = mintRaw(h.rootKey.privateKey, `user("carol"); check if time($t), $t <= ${inOneHour()};`);
  const s = await rawH2Session(h, await h.pki.client('carol'));
  const flow = await rawH2ConnectUdp(s, carolToken, '/.well-known/gatehouse/udp/echo');
  flow.sendDatagram(Buffer.from('ping'));
  expect((await flow.waitDatagrams(1)).map(String)).toEqual(['ping']);
  const ids = biscuit.Biscuit.fromBase64(carolToken, biscuit.PublicKey.fromString(h.rootKey.publicKey.replace(/^ed25519\//, ''), biscuit.SignatureAlgorithm.Ed25519)).getRevocationIdentifiers().map(String);
  appendFileSync(h.revocationList, `${ids[0]}\n`);
  h.proc.kill('SIGHUP');
  expect(await flow.closed).toBe(constants.NGHTTP2_CANCEL);
  expect(await closeOf(s)).toMatchObject({ reason: 'token revoked', packetsIn: 1, packetsOut: 1, token: { user: 'carol' } });
  s.session.close();
}, 20_000);

// Last: it stops the gateway.
it('a flow open while the gateway shuts down ends with its record (GOAWAY), and the gateway exits cleanly', async () => {
  const s = await rawH2Session(h, alice);
  const flow = await rawH2ConnectUdp(s, aliceToken, '/.well-known/gatehouse/udp/echo');
  const talking = setInterval(() => flow.stream.closed || flow.sendDatagram(Buffer.from('still talking')), 5);
  await new Promise((r) => setTimeout(r, 200));
  const code = await h.stop('SIGTERM');
  clearInterval(talking);
  expect(h.stderr()).not.toMatch(/Uncaught|uncaught/);
  expect(code).toBe(0);
  expect(h.audit().find((r) => r.event === 'udp.close' && r.source === s.source)).toMatchObject({ reason: 'gateway shutting down' });
}, 30_000);
