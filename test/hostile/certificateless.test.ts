// A client without a certificate on a gateway that issues certificates (issuer.certificates): its handshake
// completes, and it reaches the device login and nothing else (routes, tunnels, publish, the portal), each
// refusal recorded. Bad certificates are still refused at the handshake, as without certificate logins.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeIssuerKey, issuerYaml } from '../support/issuerFixtures.ts';
import { makeTestPki } from '../support/pki.ts';
import { auditMark, expectStillServes, recordAfter } from './support/caseChecks.ts';
import { certificateVariants } from './support/certVariants.ts';
import { startHostileGateway, type AuditEntry, type HostileGateway } from './support/hostileGateway.ts';
import { rawExchange, type RawClientTarget } from './support/rawClient.ts';
import { upgradeRequest } from './support/wsRaw.ts';

let g: HostileGateway;
let bare: RawClientTarget;

beforeAll(async () => {
  const keyDir = mkdtempSync(join(tmpdir(), 'gatehouse-certless-'));
  writeIssuerKey(keyDir).privateKey.free();
  // The provider is never reached here: no login gets that far.
  const issuer = issuerYaml({ signingKey: join(keyDir, 'issuer.key'), providerUrl: 'https://127.0.0.1:9', clientId: 'gatehouse-cli', routes: ['web'], certificates: { ca: 'certs/ca.crt', caKey: 'certs/ca.key', ttl: '1h' } });
  g = await startHostileGateway({ extraTop: issuer });
  bare = { port: g.h.port, ca: g.h.pki.caCert };
});

afterAll(async () => {
  await g?.stop();
});

const fromPort = (port: number) => (r: AuditEntry) => r.source === `127.0.0.1:${port}`;

interface RefusedCase {
  name: string;
  bytes: () => string;
  protocol: 'http' | 'websocket' | 'tcp';
}

const tunnelUpgrade = (path: string, extra = '') => upgradeRequest(path, g.auth(), { extra });
const cases: RefusedCase[] = [
  { name: 'a route, with a good token', bytes: () => `GET /web/certless HTTP/1.1\r\nHost: localhost\r\n${g.auth()}Connection: close\r\n\r\n`, protocol: 'http' },
  { name: 'a route, by a path that climbs out of the login prefix', bytes: () => `GET /.well-known/gatehouse/login/device/../../../../web/certless HTTP/1.1\r\nHost: localhost\r\n${g.auth()}Connection: close\r\n\r\n`, protocol: 'http' },
  { name: 'a route, by an escaped spelling', bytes: () => `GET /%2e%77ell-known/gatehouse/../../web/certless HTTP/1.1\r\nHost: localhost\r\n${g.auth()}Connection: close\r\n\r\n`, protocol: 'http' },
  { name: 'the portal', bytes: () => `GET /.well-known/gatehouse/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`, protocol: 'http' },
  { name: 'refresh (a token and no certificate)', bytes: () => `POST /.well-known/gatehouse/login/refresh HTTP/1.1\r\nHost: localhost\r\n${g.auth()}Content-Length: 0\r\nConnection: close\r\n\r\n`, protocol: 'http' },
  { name: 'logout', bytes: () => `POST /.well-known/gatehouse/login/logout HTTP/1.1\r\nHost: localhost\r\n${g.auth()}Content-Length: 0\r\nConnection: close\r\n\r\n`, protocol: 'http' },
  { name: 'the browser login', bytes: () => `GET /.well-known/gatehouse/login/browser HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`, protocol: 'http' },
  { name: 'a WebSocket on a route', bytes: () => tunnelUpgrade('/ws/certless'), protocol: 'websocket' },
  { name: 'the tunnel endpoint', bytes: () => tunnelUpgrade('/.well-known/gatehouse/tunnel/tcp'), protocol: 'websocket' },
  { name: 'publish', bytes: () => `GET /.well-known/gatehouse/publish HTTP/1.1\r\nHost: localhost\r\nUpgrade: gatehouse-publish\r\nConnection: Upgrade\r\n${g.auth()}\r\n`, protocol: 'websocket' },
  { name: 'a CONNECT tunnel', bytes: () => `CONNECT tcp:443 HTTP/1.1\r\nHost: tcp:443\r\n${g.auth().replace('Authorization', 'Proxy-Authorization')}\r\n`, protocol: 'tcp' },
];

describe('certificate logins: a connection without a certificate reaches the login alone', () => {
  for (const c of cases) {
    it(`refuses ${c.name} with 403 GH_CERTIFICATE_REQUIRED and a record naming no client`, async () => {
      g.resetUpstreams();
      const mark = auditMark(g);
      const res = await rawExchange(bare, c.bytes(), { expectResponses: 1 });
      expect(res.error, 'the handshake without a certificate completes').toBeUndefined();
      expect(res.finals[0]?.status).toBe(403);
      expect(res.finals[0]?.text).toContain('client certificate is required');
      const record = await recordAfter(g, mark, (r) => fromPort(res.localPort)(r) && r.event === 'request');
      expect(record).toMatchObject({ event: 'request', decision: 'deny', status: 403, protocol: c.protocol });
      expect(record?.reason).toMatch(/no client certificate/);
      expect(record?.client).toBeUndefined();
      expect(g.recorder.requests.length + g.tcpUpstream.connections).toBe(0);
      await expectStillServes(g);
    });
  }

  it('opens the connection with a record that says it has no certificate', async () => {
    const mark = auditMark(g);
    const res = await rawExchange(bare, `GET /web/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`, { expectResponses: 1 });
    const open = await recordAfter(g, mark, (r) => fromPort(res.localPort)(r) && r.event === 'connection.open');
    expect(open?.client).toBeUndefined();
    expect(open?.detail).toMatchObject({ certificate: expect.stringMatching(/^none/) });
    expect(await recordAfter(g, mark, (r) => fromPort(res.localPort)(r) && r.event === 'connection.close')).toMatchObject({ detail: { requests: 0, certificate: expect.stringMatching(/^none/) } });
  });

  it('hands the device login to the login pages, which ask for a CSR', async () => {
    const mark = auditMark(g);
    const body = '{}';
    const res = await rawExchange(bare, `POST /.well-known/gatehouse/login/device HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`, { expectResponses: 1 });
    // Reached: the device login itself answers, and wants a CSR from a connection without a certificate.
    expect(res.finals[0]?.status).toBe(400);
    expect(JSON.parse(res.finals[0]?.text ?? '{}')).toMatchObject({ error: 'invalid_request', code: 'GH_CSR_REQUIRED' });
    expect(res.finals[0]?.header('cache-control')).toBe('no-store');
    const record = await recordAfter(g, mark, (r) => fromPort(res.localPort)(r) && r.event !== 'connection.open' && r.event !== 'connection.close');
    expect(record?.path).toBe('/.well-known/gatehouse/login/device');
    expect(record?.client).toBeUndefined();
  });
});

describe('certificate logins: a bad certificate is still refused at the handshake', () => {
  it('refuses an expired, a foreign, a self-signed and a server-purpose certificate with tls.reject, no connection.open', async () => {
    g.resetUpstreams();
    const variants = await certificateVariants(g.h.pki.dir, join(g.h.dir, 'variants'));
    const foreign = await (await makeTestPki(join(g.h.dir, 'foreign-ca'))).client('alice');
    const attempts = [
      { creds: await variants.expired(), reason: /expired/i },
      { creds: foreign, reason: /unable.to.(get.local.issuer|verify)/i },
      { creds: await variants.selfSignedAsCa(), reason: /self.signed/i },
      { creds: await variants.serverAuthOnly(), reason: /purpose/i },
    ];
    for (const { creds, reason } of attempts) {
      const mark = auditMark(g);
      const res = await rawExchange({ ...bare, cert: creds.cert, key: creds.key }, `GET /web/ HTTP/1.1\r\nHost: localhost\r\n${g.auth()}Connection: close\r\n\r\n`, { expectResponses: 1, timeoutMs: 4000 });
      expect(res.finals).toHaveLength(0);
      const reject = await recordAfter(g, mark, (r) => r.event === 'tls.reject' && fromPort(res.localPort)(r));
      expect(reject?.reason).toMatch(reason);
      expect(g.h.audit().slice(mark).filter((r) => r.event === 'connection.open' && fromPort(res.localPort)(r))).toHaveLength(0);
    }
    expect(g.recorder.requests).toHaveLength(0);
  });

  it('a TLS client that sends no certificate is told nothing of the routes (control: the same request with one is served)', async () => {
    const withCert = await rawExchange(g.target('alice'), `GET /web/control HTTP/1.1\r\nHost: localhost\r\n${g.auth()}Connection: close\r\n\r\n`, { expectResponses: 1 });
    expect(withCert.finals[0]?.status).toBe(200);
    const socket = tlsConnect({ host: '127.0.0.1', port: g.h.port, ca: g.h.pki.caCert, servername: 'localhost' });
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    expect(socket.authorized).toBe(true);
    socket.destroy();
  });
});
