// Hostile TLS clients against a real `gatehouse serve`: certificates it must refuse, bytes that are not
// TLS, old protocol versions, stalled handshakes, renegotiation. Each: outcome, tls.reject, upstream untouched.
import { spawnSync, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestPki } from '../support/pki.ts';
import { auditMark, expectStillServes, recordAfter, sleep } from './support/caseChecks.ts';
import { certificateVariants, type CertificateVariant } from './support/certVariants.ts';
import { startHostileGateway, type AuditEntry, type HostileGateway } from './support/hostileGateway.ts';
import { clientHelloRecord, handshakeWithKey, pemToDers } from './support/tls12Client.ts';

const HANDSHAKE_TIMEOUT_S = 2;
let g: HostileGateway;
let variants: Awaited<ReturnType<typeof certificateVariants>>;
let foreign: CertificateVariant;

/** Each case connects from its own loopback address: tls.reject records are rate limited per source. */
let nextSource = 10;
const freshSource = () => `127.0.0.${nextSource++}`;

/** tls.connect hands localAddress on to the TCP socket, though its type does not list it. */
const tlsFrom = (source: string, opts: ConnectionOptions): TLSSocket => tlsConnect({ ...opts, localAddress: source } as ConnectionOptions);

interface Attempt {
  /** The client saw the handshake complete (with TLS 1.3 the server may still refuse right after). */
  secure: boolean;
  /** Bytes of HTTP answer received: a refused client gets none. */
  response: string;
  error?: string;
}

/** Connects with `cert`/`key` (or none), sends a request with a good token, collects the answer. */
function attempt(source: string, creds: { cert?: string; key?: string }, extra: { minVersion?: 'TLSv1.2'; maxVersion?: 'TLSv1.2' | 'TLSv1.3' } = {}): Promise<Attempt> {
  return new Promise((resolve) => {
    let response = '';
    let secure = false;
    let error: string | undefined;
    const socket = tlsFrom(source, { host: '127.0.0.1', port: g.h.port, servername: 'localhost', ca: g.h.pki.caCert, ...creds, ...extra });
    socket.on('secureConnect', () => {
      secure = true;
      socket.write(`GET /web/tls-case HTTP/1.1\r\nHost: localhost\r\n${g.auth()}Connection: close\r\n\r\n`);
    });
    socket.on('data', (d: Buffer) => (response += d.toString('latin1')));
    socket.on('error', (e) => (error ??= e.message));
    socket.on('close', () => resolve({ secure, response, ...(error !== undefined && { error }) }));
    setTimeout(() => socket.destroy(), 5000);
  });
}

/** Sends raw bytes on plain TCP from `source`; resolves with what came back once the gateway closed (or 4 s). */
function rawTcp(source: string, bytes: Buffer): Promise<{ reply: Buffer; closedByGateway: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket: Socket = netConnect({ host: '127.0.0.1', port: g.h.port, localAddress: source }, () => socket.write(bytes));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ reply: Buffer.concat(chunks), closedByGateway: false });
    }, 4000);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ reply: Buffer.concat(chunks), closedByGateway: true });
    });
  });
}

const tlsRejectFrom = (source: string) => (r: AuditEntry) => r.event === 'tls.reject' && (r.source ?? '').startsWith(`${source}:`);

interface CertificateCase {
  name: string;
  creds: () => Promise<{ cert?: string; key?: string }>;
  /** What the tls.reject record's reason must say. */
  reason: RegExp;
}

const certificateCases: CertificateCase[] = [
  { name: 'no client certificate', creds: async () => ({}), reason: /certificate/i },
  { name: 'certificate from a foreign CA (same CN)', creds: async () => foreign, reason: /unable.to.(get.local.issuer|verify)/i },
  { name: 'expired certificate', creds: () => variants.expired(), reason: /expired/i },
  { name: 'certificate not yet valid', creds: () => variants.notYetValid(), reason: /not.yet.valid/i },
  { name: 'server-purpose certificate (extendedKeyUsage serverAuth only)', creds: () => variants.serverAuthOnly(), reason: /purpose/i },
  { name: 'keyUsage without digitalSignature', creds: () => variants.noDigitalSignature(), reason: /purpose|key usage|usage/i },
  { name: 'self-signed leaf claiming the CA subject', creds: () => variants.selfSignedAsCa(), reason: /self.signed/i },
  { name: 'leaf from an impostor CA with the real CA subject', creds: () => variants.issuedByImpostorCa(), reason: /signature.failure|unable.to/i },
  { name: 'leaf issued by another (CA:FALSE) leaf of the real CA', creds: () => variants.issuedByLeaf(), reason: /client certificate rejected: (INVALID_CA|UNSPECIFIED|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)/ },
];

const opensslVersionFlag: Record<string, string> = { 'SSLv3': '-ssl3', 'TLS 1.0': '-tls1', 'TLS 1.1': '-tls1_1' };
/** Why the local openssl cannot offer a protocol version, or undefined when it can. */
function opensslCannotOffer(version: string): string | undefined {
  const flag = opensslVersionFlag[version] as string;
  const help = spawnSync('openssl', ['s_client', '-help'], { encoding: 'utf8' });
  if (help.error) return 'openssl is not installed';
  if (!`${help.stdout}${help.stderr}`.includes(` ${flag} `)) return `local openssl has no ${flag} option`;
  const ciphers = spawnSync('openssl', ['ciphers', '-s', flag, 'DEFAULT@SECLEVEL=0'], { encoding: 'utf8' });
  if (ciphers.status !== 0 || ciphers.stdout.trim() === '') return `local openssl offers no ${version} ciphers`;
  return undefined;
}

function opensslClient(version: string, cert: { certPath: string; keyPath: string }): Promise<string> {
  const args = ['s_client', opensslVersionFlag[version] as string, '-cipher', 'DEFAULT@SECLEVEL=0', '-connect', `127.0.0.1:${g.h.port}`, '-servername', 'localhost', '-cert', cert.certPath, '-key', cert.keyPath, '-CAfile', g.h.pki.caCertPath];
  return new Promise((resolve) => {
    const child = execFile('openssl', args, { timeout: 8000 }, (_e, stdout, stderr) => resolve(`${stdout}\n${stderr}`));
    // A refused handshake can end openssl before it reads stdin: that EPIPE is expected, not a failure.
    child.stdin?.on('error', () => {});
    child.stdin?.end('GET /web/ HTTP/1.1\r\nHost: localhost\r\n\r\n');
  });
}

beforeAll(async () => {
  g = await startHostileGateway({ extraTop: `limits:\n  handshakeTimeoutSeconds: ${HANDSHAKE_TIMEOUT_S}\n` });
  variants = await certificateVariants(g.h.pki.dir, join(g.h.dir, 'variants'));
  const other = await (await makeTestPki(join(g.h.dir, 'foreign-ca'))).client('alice');
  foreign = { ...other, fingerprint: other.fingerprint };
});

afterAll(async () => {
  await g?.stop();
});

describe('TLS: certificates the gateway must refuse', () => {
  for (const c of certificateCases) {
    it(`refuses ${c.name}: no HTTP answer, tls.reject, upstream untouched, still serving`, async () => {
      const before = g.recorder.connections;
      const source = freshSource();
      const creds = await c.creds();
      const mark = auditMark(g);
      const result = await attempt(source, creds);
      expect(result.response, 'a refused client must not get an HTTP answer').toBe('');
      const reject = await recordAfter(g, mark, tlsRejectFrom(source));
      expect(reject, 'one tls.reject record').toBeDefined();
      expect(reject).toMatchObject({ event: 'tls.reject', decision: 'deny' });
      expect(reject?.reason).toMatch(c.reason);
      expect(g.h.audit().slice(mark).filter((r) => r.event === 'connection.open' && (r.source ?? '').startsWith(`${source}:`))).toHaveLength(0);
      expect(g.recorder.connections).toBe(before);
      await expectStillServes(g);
    });
  }

  it('refuses a certificate whose private key does not match (forged CertificateVerify, TLS 1.2): alert, tls.reject', async () => {
    const forged = await variants.mismatchedKey();
    const source = freshSource();
    const mark = auditMark(g);
    const before = g.recorder.connections;
    const outcome = await handshakeWithKey(g.h.port, source, pemToDers(forged.cert), forged.key);
    expect(outcome.certificateRequested).toBe(true);
    expect(outcome.alert !== undefined || outcome.closed, 'the gateway must end the handshake').toBe(true);
    if (outcome.alert !== undefined) expect([42, 51]).toContain(outcome.alert); // bad_certificate or decrypt_error
    const reject = await recordAfter(g, mark, tlsRejectFrom(source));
    expect(reject?.reason).toMatch(/signature|decrypt/i);
    expect(g.recorder.connections).toBe(before);
    await expectStillServes(g);
  });

  it('control for the forged case: the same hand-written client with the matching key is not refused at CertificateVerify', async () => {
    const good = await variants.signed('control', { name: 'alice' });
    const source = freshSource();
    const outcome = await handshakeWithKey(g.h.port, source, pemToDers(good.cert), good.key, 800);
    expect(outcome.serverHelloDone).toBe(true);
    expect(outcome.alert).toBeUndefined();
  });
});

interface BytesCase {
  name: string;
  bytes: () => Buffer;
  reason: RegExp;
}

const bytesCases: BytesCase[] = [
  { name: 'garbage bytes instead of a ClientHello', bytes: () => randomBytes(512), reason: /wrong version|unknown protocol|packet|record|TLS|SSL/i },
  { name: 'plaintext HTTP request on the TLS port', bytes: () => Buffer.from('GET /web/ HTTP/1.1\r\nHost: localhost\r\n\r\n'), reason: /http request|wrong version|unknown protocol/i },
  { name: 'plaintext CONNECT on the TLS port', bytes: () => Buffer.from('CONNECT tcp:443 HTTP/1.1\r\nHost: tcp:443\r\n\r\n'), reason: /http|wrong version|unknown protocol/i },
  { name: 'SSLv2-style ClientHello', bytes: () => Buffer.from('802b0103010012000000100100800300800700c0060040020080040080' + '00'.repeat(16), 'hex'), reason: /wrong version|unknown protocol|unsupported|record|packet/i },
  { name: 'TLS record header announcing 65535 bytes, then garbage', bytes: () => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff]), randomBytes(2000)]), reason: /length|record|packet|too|TLS|SSL/i },
  { name: 'ClientHello offering only ciphers the server does not have (RC4, NULL)', bytes: () => clientHelloRecord([0x0005, 0x0001, 0x0002]), reason: /shared cipher|handshake failure|cipher/i },
  { name: 'ClientHello followed by an alert and garbage records', bytes: () => Buffer.concat([clientHelloRecord(), Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]), randomBytes(64)]), reason: /alert|handshake|record|unexpected/i },
];

describe('TLS: bytes that are not a proper handshake', () => {
  for (const c of bytesCases) {
    it(`closes on ${c.name}, with tls.reject, upstream untouched, still serving`, async () => {
      const source = freshSource();
      const mark = auditMark(g);
      const before = g.recorder.connections;
      const { reply, closedByGateway } = await rawTcp(source, c.bytes());
      expect(closedByGateway, 'the gateway must close the connection').toBe(true);
      expect(reply.toString('latin1')).not.toMatch(/HTTP\/1\.[01] 200/);
      const reject = await recordAfter(g, mark, tlsRejectFrom(source));
      expect(reject?.decision).toBe('deny');
      expect(reject?.reason).toMatch(c.reason);
      expect(g.recorder.connections).toBe(before);
      await expectStillServes(g);
    });
  }
});

describe('TLS: protocol versions below 1.2', () => {
  for (const version of ['SSLv3', 'TLS 1.0', 'TLS 1.1']) {
    const cannot = opensslCannotOffer(version);
    it.skipIf(cannot !== undefined)(`refuses a ${version}-only openssl s_client${cannot ? ` (skipped: ${cannot})` : ''}: no session, tls.reject`, async () => {
      const alice = g.certs.alice;
      const mark = auditMark(g);
      const before = g.recorder.connections;
      const out = await opensslClient(version, alice);
      expect(out).not.toMatch(/Cipher is (?!\(NONE\))/);
      expect(out).not.toMatch(/HTTP\/1\.1 200/);
      const reject = await recordAfter(g, mark, (r) => r.event === 'tls.reject' && /version|protocol/i.test(r.reason ?? ''));
      expect(reject?.reason).toMatch(/unsupported protocol|version/i);
      expect(g.recorder.connections).toBe(before);
      await expectStillServes(g);
    });
  }
});

describe('TLS: resource abuse during the handshake', () => {
  it(`half-open flood: 50 sockets stall mid-ClientHello; a good client is served meanwhile; all 50 are dropped after handshakeTimeoutSeconds (${HANDSHAKE_TIMEOUT_S} s)`, async () => {
    const source = freshSource();
    const mark = auditMark(g);
    const partial = clientHelloRecord().subarray(0, 40);
    const closedAt: number[] = [];
    const started = Date.now();
    const sockets = await Promise.all(
      Array.from({ length: 50 }, () =>
        new Promise<Socket>((resolve) => {
          const s = netConnect({ host: '127.0.0.1', port: g.h.port, localAddress: source }, () => {
            s.write(partial);
            resolve(s);
          });
          s.on('error', () => {});
          s.on('close', () => closedAt.push(Date.now() - started));
        }),
      ),
    );
    try {
      await expectStillServes(g);
      await expectStillServes(g);
      const until = Date.now() + (HANDSHAKE_TIMEOUT_S + 3) * 1000;
      while (closedAt.length < 50 && Date.now() < until) await sleep(50);
      expect(closedAt.length, 'stalled handshakes the gateway dropped').toBe(50);
      expect(Math.max(...closedAt)).toBeLessThan((HANDSHAKE_TIMEOUT_S + 1.5) * 1000);
      const rejects = g.h.audit().slice(mark).filter(tlsRejectFrom(source));
      expect(rejects.length).toBeGreaterThanOrEqual(1);
      expect(rejects.length, 'tls.reject records are rate limited per source').toBeLessThanOrEqual(11);
      expect(rejects[0]?.reason).toMatch(/timeout|timed out/i);
    } finally {
      for (const s of sockets) s.destroy();
    }
    await expectStillServes(g);
  }, 20_000);

  it('refuses a client-initiated TLS 1.2 renegotiation; the connection carries no request afterwards', async () => {
    const source = freshSource();
    const before = g.recorder.requests.length;
    const outcome = await new Promise<{ renegotiated: boolean; error?: string }>((resolve) => {
      const socket = tlsFrom(source, { host: '127.0.0.1', port: g.h.port, servername: 'localhost', ca: g.h.pki.caCert, cert: g.certs.alice.cert, key: g.certs.alice.key, maxVersion: 'TLSv1.2' });
      socket.on('error', (e) => resolve({ renegotiated: false, error: e.message }));
      socket.on('secureConnect', () => {
        const started = socket.renegotiate({ rejectUnauthorized: true }, (err) => {
          if (err) return resolve({ renegotiated: false, error: err.message });
          // The gateway completed a renegotiation: try to use the new session, then report it.
          socket.write(`GET /web/after-renegotiation HTTP/1.1\r\nHost: localhost\r\n${g.auth()}Connection: close\r\n\r\n`);
          resolve({ renegotiated: true });
          setTimeout(() => socket.destroy(), 500);
        });
        if (!started) resolve({ renegotiated: false, error: 'renegotiate() refused locally' });
      });
      setTimeout(() => {
        socket.destroy();
        resolve({ renegotiated: false, error: 'timeout' });
      }, 6000);
    });
    await sleep(600);
    expect(outcome.renegotiated, 'the gateway completed a client-initiated renegotiation').toBe(false);
    expect(outcome.error).not.toBe('renegotiate() refused locally');
    expect(g.recorder.requests.filter((r) => r.target.includes('after-renegotiation')).length).toBe(0);
    expect(g.recorder.requests.length, JSON.stringify(g.recorder.requests.map((r) => r.target))).toBe(before);
    await expectStillServes(g);
  });
});
