// RFC 9298 over HTTP/2 (extended CONNECT, RFC 8441) on the gateway's own listener, by hand with node:http2:
// the exact shape (SETTINGS, 200, capsule-protocol), refusals with Proxy-Status, and ALPN that keeps HTTP/1.1.
import { execFile } from 'node:child_process';
import { constants } from 'node:http2';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCapsule, encodeVarint } from '../src/tunnel/capsules.ts';
import { runGatehouse, startHarness, type Harness } from './support/gatewayHarness.ts';
import { rawH2ConnectUdp, rawH2Session } from './support/h2Peers.ts';
import { which } from './support/localServices.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { gatewayFlags, writeToken } from './support/tunnelClient.ts';
import { rawConnectUdp, startUdpEcho, udpRoute, type UdpEcho } from './support/udpPeers.ts';

let h: Harness;
let alice: TestClientCertificate;
let token: string;
let echo: UdpEcho;

beforeAll(async () => {
  echo = await startUdpEcho();
  h = await startHarness({
    routes: [udpRoute('echo', `udp:127.0.0.1:${echo.port}`), udpRoute('ops-echo', `udp:127.0.0.1:${echo.port}`, 'allow if group("ops");'), udpRoute('nowhere', 'udp:no-such-host.invalid:53')].join(''),
  });
  alice = await h.pki.client('alice');
  token = readFileSync(writeToken(h, join(h.dir, 'alice.token'), 'alice'), 'utf8').trim();
}, 60_000);

afterAll(async () => {
  await h?.stop();
  echo?.close();
});

describe('RFC 9298 §3.5 over HTTP/2, by hand', () => {
  it('SETTINGS_ENABLE_CONNECT_PROTOCOL, 200 with capsule-protocol: ?1, datagrams both ways, unknown capsules ignored, one record pair', async () => {
    const s = await rawH2Session(h, alice);
    expect(s.settings.enableConnectProtocol).toBe(true);
    const flow = await rawH2ConnectUdp(s, token, '/.well-known/gatehouse/udp/echo');
    expect(flow.status).toBe(200);
    expect(flow.headers['capsule-protocol']).toBe('?1');
    flow.sendDatagram(Buffer.from('one'));
    flow.stream.write(encodeCapsule(0x2a, Buffer.from('an unknown capsule')));
    flow.sendDatagram(Buffer.from('two'));
    expect((await flow.waitDatagrams(2)).map(String)).toEqual(['one', 'two']);
    flow.stream.end();
    expect(await flow.closed).toBe(constants.NGHTTP2_NO_ERROR);
    const record = await h.waitForAudit((r) => r.event === 'udp.close' && r.source === s.source);
    expect(record).toMatchObject({ route: 'echo', status: 200, packetsIn: 2, packetsOut: 2, reason: 'client closed', token: { user: 'alice' }, detail: { transport: 'h2-connect-udp' } });
    expect(h.audit().filter((r) => r.event === 'udp.open' && r.source === s.source)).toHaveLength(1);
    s.session.close();
  });

  it('the RFC template reaches the route of that address; several flows share one session', async () => {
    const s = await rawH2Session(h, alice);
    const [a, b] = [await rawH2ConnectUdp(s, token, `/.well-known/masque/udp/127.0.0.1/${echo.port}/`), await rawH2ConnectUdp(s, token, '/.well-known/gatehouse/udp/echo')];
    expect([a.status, b.status]).toEqual([200, 200]);
    a.sendDatagram(Buffer.from('a'));
    b.sendDatagram(Buffer.from('b'));
    expect((await a.waitDatagrams(1)).map(String)).toEqual(['a']);
    expect((await b.waitDatagrams(1)).map(String)).toEqual(['b']);
    a.stream.end();
    b.stream.end();
    await Promise.all([a.closed, b.closed]);
    const opens = h.audit().filter((r) => r.event === 'udp.open' && r.source === s.source);
    expect(opens).toHaveLength(2);
    // One connection, two requests on it.
    expect(new Set(opens.map((r) => r.conn)).size).toBe(1);
    s.session.close();
  });

  it('a malformed capsule resets the stream with PROTOCOL_ERROR and ends the flow as an error, with a record', async () => {
    const s = await rawH2Session(h, alice);
    const flow = await rawH2ConnectUdp(s, token, '/.well-known/gatehouse/udp/echo');
    flow.sendDatagram(Buffer.from('before'));
    await flow.waitDatagrams(1);
    flow.stream.write(Buffer.concat([encodeVarint(0), encodeVarint(1 << 20), Buffer.alloc(64)]));
    expect(await flow.closed).toBe(constants.NGHTTP2_PROTOCOL_ERROR);
    const record = await h.waitForAudit((r) => r.event === 'udp.close' && r.source === s.source);
    expect(record.reason).toMatch(/^client error: malformed capsule: /);
    expect(record).toMatchObject({ packetsIn: 1, packetsOut: 1 });
    s.session.close();
  });

  it('refuses a token without the route: 403 HEADERS with Proxy-Status, a deny record, no flow', async () => {
    const s = await rawH2Session(h, alice);
    const flow = await rawH2ConnectUdp(s, token, '/.well-known/gatehouse/udp/ops-echo');
    expect(flow.status).toBe(403);
    expect(flow.headers['proxy-status']).toBe('gatehouse; error=http_request_denied; details="denied by policy"');
    expect(JSON.parse(await flow.body())).toEqual({ error: 'denied by policy' });
    const denied = await h.waitForAudit((r) => r.event === 'request' && r.source === s.source && r.route === 'ops-echo');
    expect(denied).toMatchObject({ protocol: 'udp', decision: 'deny', status: 403, token: { user: 'alice' }, detail: { transport: 'h2-connect-udp' } });
    expect(h.audit().filter((r) => r.event === 'udp.open' && r.route === 'ops-echo')).toHaveLength(0);
    s.session.close();
  });

  it('says which error in Proxy-Status: no route for the target, a target name that does not resolve, no token; the same over HTTP/1.1', async () => {
    const s = await rawH2Session(h, alice);
    const unknown = await rawH2ConnectUdp(s, token, '/.well-known/masque/udp/127.0.0.1/9/');
    expect(unknown.status).toBe(404);
    expect(unknown.headers['proxy-status']).toMatch(/^gatehouse; error=destination_not_found; details="/);
    const dns = await rawH2ConnectUdp(s, token, '/.well-known/gatehouse/udp/nowhere');
    expect(dns.status).toBe(502);
    expect(dns.headers['proxy-status']).toBe('gatehouse; error=dns_error; details="upstream unavailable"');
    const anonymous = await rawH2ConnectUdp(s, token, '/.well-known/gatehouse/udp/echo', { authorization: undefined });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['proxy-status']).toMatch(/^gatehouse; error=http_request_denied; /);
    const bad = await rawH2ConnectUdp(s, token, '/.well-known/gatehouse/udp/echo', { 'capsule-protocol': '?0' });
    expect(bad.status).toBe(400);
    expect(bad.headers['proxy-status']).toMatch(/^gatehouse; error=http_request_error; /);
    s.session.close();
    const overHttp1 = await rawConnectUdp(h, alice, token, '/.well-known/gatehouse/udp/ops-echo');
    expect(overHttp1.status).toBe(403);
    expect(overHttp1.head).toMatch(/^proxy-status: gatehouse; error=http_request_denied; details="denied by policy"$/im);
    overHttp1.tls.socket.destroy();
  });
});

it('tunnel --transport http2 carries UDP only: a TCP forward or --stdio is a usage error (exit 2)', async () => {
  const tokenFile = join(h.dir, 'alice.token');
  for (const args of [['-L', '127.0.0.1:0:echo'], ['--stdio', 'echo']]) {
    const result = await runGatehouse(['tunnel', ...args, ...gatewayFlags(h, alice, tokenFile, 'http2')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--transport http2 carries UDP flows only/);
  }
});

describe('ALPN: h2 only for a client that offers it without http/1.1', () => {
  const alpnOf = (offer: string) =>
    new Promise<string>((resolve) => {
      const child = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${h.port}`, '-servername', 'localhost', '-alpn', offer, '-CAfile', h.pki.caCertPath, '-cert', alice.certPath, '-key', alice.keyPath], (_err, stdout) => resolve(/ALPN protocol: (\S+)|No ALPN negotiated/.exec(stdout)?.[1] ?? 'none'));
      child.stdin?.end();
    });

  it.skipIf(which('openssl') === undefined)('openssl -alpn h2,http/1.1 gets http/1.1; -alpn h2 gets h2 (needs openssl)', async () => {
    expect(await alpnOf('h2,http/1.1')).toBe('http/1.1');
    expect(await alpnOf('http/1.1,h2')).toBe('http/1.1');
    expect(await alpnOf('h2')).toBe('h2');
  });

  it.skipIf(which('curl') === undefined)('curl --http2 is answered over HTTP/1.1, as before (needs curl)', async () => {
    const version = await new Promise<string>((resolve) =>
      execFile('curl', ['-s', '-o', '/dev/null', '-w', '%{http_version}', '--http2', '--cacert', h.pki.caCertPath, '--cert', alice.certPath, '--key', alice.keyPath, '-H', `authorization: Bearer ${token}`, `https://localhost:${h.port}/`], (_err, stdout) => resolve(stdout.trim())),
    );
    expect(version).toBe('1.1');
  });
});
