// A short-lived client certificate after an IdP login, over the wire: a terminal with no certificate sends a
// CSR with the device start (curl, no client certificate), the real provider approves, the gateway answers
// with a certificate for the IdP user and a token bound to it; both reach a route; past notAfter the
// handshake is refused and the connection still open is ended by the expiry sweep.
import { X509Certificate } from 'node:crypto';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { startEchoService } from '../src/demo/echoService.ts';
import { x509, webcrypto, type CryptoKeyPair } from '../src/pki/x509.ts';
import { privateKeyToPem } from '../src/pki/keyFiles.ts';
import { cli, cliNode, curl } from './support/gatewayHarness.ts';
import { completeInteraction } from './support/oidcProvider.ts';
import { cleanEnv, echoHandler, listenUnix, runTunnel } from './support/tunnelClient.ts';
import { ISSUED_NOTEBOOK_ROUTE, deviceLogin, postLogin, startIssuerGateway, type IssuerGateway } from './support/issuerGateway.ts';
import { testAccounts } from './support/oidcProvider.ts';

/** Short, so the test sees the certificate expire; the expiry sweep runs every 10 s. */
const CERTIFICATE_SECONDS = 20;
let gw: IssuerGateway;
let echo: Server;
let echoSocket: NetServer;
let login: ChildProcess | undefined;
const alice = testAccounts.find((a) => a.username === 'alice');

async function keyAndCsr(subject: string): Promise<{ keyPem: string; csr: string }> {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: subject, keys, signingAlgorithm: algorithm });
  return { keyPem: privateKeyToPem(keys.privateKey), csr: csr.toString('pem') };
}

const ECHO_ROUTE = `  - name: echo
    protocols: [tcp]
    upstream: unix:run/echo.sock
    policy: |
      allow if user($u), signer("idp");
`;

beforeAll(async () => {
  gw = await startIssuerGateway({
    routes: ISSUED_NOTEBOOK_ROUTE + ECHO_ROUTE,
    issuerExtra: (pki) => `  certificates:\n    ca: ${pki.caCertPath}\n    caKey: ${join(pki.dir, 'ca.key')}\n    ttl: ${CERTIFICATE_SECONDS}s\n`,
  });
  echo = await startEchoService(join(gw.h.dir, 'run', 'demo.sock'), 'demo');
  echoSocket = await listenUnix(join(gw.h.dir, 'run', 'echo.sock'), echoHandler);
}, 60_000);

afterAll(async () => {
  login?.kill('SIGKILL');
  echoSocket?.close();
  echo?.close();
  await gw?.stop();
});

/** One keep-alive HTTP/1.1 connection with `cert`: a request answered, then open until the gateway ends it. */
function keepAlive(pem: { cert: string; key: string }, token: string): Promise<{ status: number; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: gw.h.port, servername: 'localhost', ca: gw.h.pki.caCert, cert: pem.cert, key: pem.key });
    const closed = new Promise<number>((done) => socket.once('close', () => done(Date.now())));
    let text = '';
    socket.once('secureConnect', () => socket.write(`GET /~alice/notebook/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`));
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (status && text.includes('\r\n\r\n')) resolve({ status: Number(status[1]), closed });
    });
    socket.once('error', reject);
    closed.then(() => reject(new Error(`closed before an answer: ${text}`)), () => {});
  });
}

describe('a certificate obtained with the device login', () => {
  it("is alice's (whatever the CSR says), with a token bound to it: both reach her notebook; expired, the handshake fails and the open connection is ended", async () => {
    if (alice === undefined) throw new Error('no account alice');
    // The CSR asks for bob: the certificate names the IdP user all the same.
    const { keyPem, csr } = await keyAndCsr('CN=bob');
    const answer = await deviceLogin(gw, undefined, alice, { csr });
    expect(answer.status, answer.body).toBe(200);
    const { token, certificate, expiresAt, revocationId } = answer.json as Record<string, string>;
    if (certificate === undefined || token === undefined) throw new Error('no certificate in the answer');
    const cert = new X509Certificate(certificate);
    expect(cert.subject).toBe('CN=alice');
    const lifetime = Date.parse(cert.validTo) - Date.now();
    expect(lifetime).toBeLessThanOrEqual(CERTIFICATE_SECONDS * 1000);
    expect(Date.parse(expiresAt ?? '')).toBeLessThanOrEqual(Date.parse(cert.validTo) + 1000);
    const files = { certPath: join(gw.h.dir, 'alice-login.crt'), keyPath: join(gw.h.dir, 'alice-login.key') };
    writeFileSync(files.certPath, certificate);
    writeFileSync(files.keyPath, keyPem, { mode: 0o600 });
    const client = { ...files, cert: certificate, key: keyPem, serial: '', fingerprint: '' };

    expect((await curl(gw.h, '/~alice/notebook/', { client, token })).status).toBe(200);
    const open = await keepAlive({ cert: certificate, key: keyPem }, token);
    expect(open.status).toBe(200);
    const issued = await gw.h.waitForAudit((r) => r.event === 'token.issue' && r.token?.revocationIds?.[0] === revocationId);
    const fingerprint = 'sha256:' + cert.fingerprint256.replace(/:/g, '').toLowerCase();
    expect(issued).toMatchObject({ decision: 'allow', client: { cn: 'alice', fingerprint }, detail: { fingerprint, certificate: { fingerprint, notAfter: new Date(cert.validTo).toISOString(), presentedBy: 'none', csrSubject: 'CN=bob' } } });

    // Refresh with the issued certificate: the next token of the login, bound to the same certificate.
    const refreshed = await postLogin(gw.h, files, '/refresh', {}, token);
    expect(refreshed.status, refreshed.body).toBe(200);
    expect(refreshed.json.token).not.toBe(token);
    expect((await curl(gw.h, '/~alice/notebook/', { client, token: String(refreshed.json.token) })).status).toBe(200);

    // Past notAfter: a new handshake with it is refused, and the connection still open is ended by the sweep.
    const expiresAtMs = Date.parse(cert.validTo);
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAtMs - Date.now()) + 1500));
    const late = await curl(gw.h, '/~alice/notebook/', { client, token });
    expect(late.status).toBe(0);
    const reject = await gw.h.waitForAudit((r) => r.event === 'tls.reject' && Date.parse((r as unknown as { time: string }).time) > expiresAtMs);
    expect(reject.reason).toMatch(/expired/i);
    // Within one sweep period (10 s) of notAfter; the test's own timeout bounds the wait.
    await open.closed;
    const close = await gw.h.waitForAudit((r) => r.event === 'connection.close' && r.client?.fingerprint === fingerprint && r.reason === 'client certificate expired');
    expect(close.detail).toMatchObject({ requests: 1 });
  }, 90_000);

  it('refuses, before asking the IdP, a start without a certificate and without a CSR, and a CSR whose signature does not verify', async () => {
    const none = await postLogin(gw.h, undefined, '/device', {});
    expect(none.status).toBe(400);
    expect(none.json).toMatchObject({ error: 'invalid_request', code: 'GH_CSR_REQUIRED' });
    const { csr } = await keyAndCsr('CN=alice');
    const der = Buffer.from(new x509.Pkcs10CertificateRequest(csr).rawData);
    Buffer.from('bob').copy(der, der.indexOf(Buffer.from('alice')));
    const forged = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    const bad = await postLogin(gw.h, undefined, '/device', { csr: forged });
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({ error: 'invalid_request', code: 'GH_CSR_INVALID', message: 'csr signature does not verify' });
    const record = await gw.h.waitForAudit((r) => r.event === 'request' && r.status === 400 && r.detail?.code === 'GH_CSR_INVALID');
    expect(record.reason).toMatch(/^csr-signature/);
    expect(record.client).toBeUndefined();
  }, 30_000);

  it('gatehouse login --certificate: the key made on the laptop (0600, never sent), the certificate beside the token, and tunnel uses both by default', async () => {
    if (alice === undefined) throw new Error('no account alice');
    const home = mkdtempSync(join(tmpdir(), 'gatehouse-certlogin-home-'));
    const env = cleanEnv(home);
    const gatewayFlags = ['--gateway', `https://localhost:${gw.h.port}`, '--ca', gw.h.pki.caCertPath];
    const started = spawn(cliNode, [cli, 'login', '--certificate', '--no-browser', ...gatewayFlags], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    login = started;
    let said = '';
    started.stderr?.on('data', (d: Buffer) => (said += d.toString()));
    const exited = new Promise<number | null>((resolve) => started.once('exit', resolve));
    const until = Date.now() + 20_000;
    while (!/^gatehouse login: url: \S+$/m.test(said) && started.exitCode === null && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    const url = /^gatehouse login: url: (\S+)$/m.exec(said)?.[1];
    if (url === undefined) throw new Error(`no verification url:\n${said}`);
    await completeInteraction(gw.idp, url, alice);
    expect(await exited, said).toBe(0);
    const dir = join(home, '.config', 'gatehouse');
    expect(said).toContain(`certificate saved in ${join(dir, 'token.crt')}, its key in ${join(dir, 'token.key')}`);
    expect(statSync(join(dir, 'token.key')).mode & 0o777).toBe(0o600);
    const cert = new X509Certificate(readFileSync(join(dir, 'token.crt')));
    expect(cert.subject).toBe('CN=alice');
    // The key never left the laptop: no record, no answer holds it.
    const keyBody = readFileSync(join(dir, 'token.key'), 'utf8').split('\n').slice(1, 3).join('');
    expect(JSON.stringify(gw.h.audit())).not.toContain(keyBody);
    // No --cert/--key: the login's certificate, key and token are used.
    const tunnel = await runTunnel([...gatewayFlags, '--stdio', 'echo'], env, 'hello through the login certificate');
    expect(tunnel.stderr).toBe('');
    expect(tunnel.stdout.toString()).toBe('hello through the login certificate');
    const fingerprint = 'sha256:' + cert.fingerprint256.replace(/:/g, '').toLowerCase();
    await gw.h.waitForAudit((r) => r.event === 'tunnel.open' && r.decision === 'allow' && r.client?.fingerprint === fingerprint);
  }, 60_000);
});
