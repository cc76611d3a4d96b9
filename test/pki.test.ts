// The development PKI: certificates checked by openssl, a real mTLS handshake, key file modes,
// idempotent init, typed errors, and the `gatehouse pki` command line end to end with curl.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { initPki, issueClientCertificate, PkiError } from '../src/pki/index.ts';
import type { PkiErrorCode } from '../src/pki/index.ts';
import { identityFromPem, peerIdentity } from '../src/tls/peerIdentity.ts';
import { makeTestPki } from './support/pki.ts';
import type { TestClientCertificate, TestPki } from './support/pki.ts';

const BIN = path.resolve(import.meta.dirname, '../bin/gatehouse.js');
const root = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-pki-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirCount = 0;
const freshDir = (): string => path.join(root, `d${++dirCount}`);

interface RunResult { code: number; stdout: string; stderr: string }
function run(cmd: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
const openssl = (...args: string[]): Promise<RunResult> => run('openssl', args);
/** Runs the CLI; stderr comes without Node's own runtime warnings (e.g. about loading WebAssembly). */
async function gatehouse(...args: string[]): Promise<RunResult> {
  const result = await run(process.execPath, [BIN, ...args]);
  const stderr = result.stderr.replace(/^\(node:\d+\) \w*Warning: .*\n|^\(Use `node --trace-warnings .*\n/gm, '');
  return { ...result, stderr };
}

async function rejection(promise: Promise<unknown>): Promise<PkiError> {
  const err: unknown = await promise.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(PkiError);
  return err as PkiError;
}
const expectCode = async (promise: Promise<unknown>, code: PkiErrorCode): Promise<PkiError> => {
  const err = await rejection(promise);
  expect(err.code).toBe(code);
  return err;
};
const mode = (file: string): number => statSync(file).mode & 0o777;

describe('certificates made by initPki and issueClientCertificate', () => {
  let pki: TestPki;
  let alice: TestClientCertificate;
  beforeAll(async () => {
    pki = await makeTestPki(freshDir(), ['gw.example.org', '10.1.2.3']);
    alice = await pki.client('alice', { email: 'alice@example.org' });
  });

  it('openssl verifies the server and client certificates against ca.crt, each for its own purpose only', async () => {
    const server = await openssl('verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', pki.caCertPath, pki.serverCertPath);
    expect(server.stdout).toContain(': OK');
    const client = await openssl('verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', pki.caCertPath, alice.certPath);
    expect(client.stdout).toContain(': OK');
    expect((await openssl('verify', '-purpose', 'sslclient', '-CAfile', pki.caCertPath, pki.serverCertPath)).code).not.toBe(0);
    expect((await openssl('verify', '-purpose', 'sslserver', '-CAfile', pki.caCertPath, alice.certPath)).code).not.toBe(0);
  });

  it('the CA is a P-256 ECDSA CA limited to signing certificates and CRLs', async () => {
    const text = (await openssl('x509', '-noout', '-text', '-in', pki.caCertPath)).stdout;
    expect(text).toContain('Subject: CN = gatehouse dev CA');
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign\n/);
    expect(text).toContain('ecdsa-with-SHA256');
    expect(text).toContain('prime256v1');
  });

  it('the server certificate names localhost, the requested names and both loopback addresses', async () => {
    const text = (await openssl('x509', '-noout', '-text', '-in', pki.serverCertPath)).stdout;
    expect(text).toContain('Subject: CN = gatehouse');
    for (const san of ['DNS:localhost', 'DNS:gw.example.org', 'IP Address:10.1.2.3', 'IP Address:127.0.0.1', 'IP Address:0:0:0:0:0:0:0:1']) {
      expect(text).toContain(san);
    }
    expect(text).toMatch(/Extended Key Usage: \s+TLS Web Server Authentication\n/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature\n/);
    expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
  });

  it('the client certificate carries CN, O, the email SAN, clientAuth and a random 16-byte positive serial', async () => {
    const text = (await openssl('x509', '-noout', '-text', '-in', alice.certPath)).stdout;
    expect(text).toContain('Subject: O = gatehouse dev, CN = alice');
    expect(text).toContain('email:alice@example.org');
    expect(text).toMatch(/Extended Key Usage: \s+TLS Web Client Authentication\n/);
    const serial = (await openssl('x509', '-noout', '-serial', '-in', alice.certPath)).stdout.trim();
    expect(serial).toMatch(/^serial=[4-7][0-9A-F]{31}$/);
    expect(serial.slice('serial='.length).toLowerCase()).toBe(alice.serial);
    const bob = await pki.client('bob');
    expect(bob.serial).not.toBe(alice.serial);
    expect((await openssl('x509', '-noout', '-text', '-in', bob.certPath)).stdout).not.toContain('Subject Alternative Name');
  });

  it('reports serial and fingerprint exactly as the gateway will see them', () => {
    const id = identityFromPem(alice.cert);
    expect(id).toMatchObject({ cn: 'alice', subject: 'CN=alice,O=gatehouse dev', issuer: 'CN=gatehouse dev CA' });
    expect(id.sans).toEqual([{ kind: 'email', value: 'alice@example.org' }]);
    expect(id.serial).toBe(alice.serial);
    expect(id.fingerprint).toBe(alice.fingerprint);
  });

  it('writes private keys as PKCS#8 P-256 PEM with mode 0600 and certificates with 0644', async () => {
    for (const key of [path.join(pki.dir, 'ca.key'), pki.serverKeyPath, alice.keyPath]) {
      expect(mode(key)).toBe(0o600);
      expect(readFileSync(key, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
      expect((await openssl('pkey', '-noout', '-text', '-in', key)).stdout).toContain('prime256v1');
    }
    for (const cert of [pki.caCertPath, pki.serverCertPath, alice.certPath]) expect(mode(cert)).toBe(0o644);
  });
});

describe('mutual TLS with the issued certificates', () => {
  let pki: TestPki;
  let server: tls.Server;
  let port = 0;
  const serverErrors: Error[] = [];
  beforeAll(async () => {
    pki = await makeTestPki(freshDir());
    server = tls.createServer(
      { cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, requestCert: true, rejectUnauthorized: true },
      (socket) => socket.end(`hello ${peerIdentity(socket)?.cn ?? '?'}\n`),
    );
    server.on('tlsClientError', (err) => serverErrors.push(err));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** Connects, reads until the server closes, and returns what arrived (empty when rejected). */
  function exchange(client: { cert: string; key: string } | undefined, servername?: string): Promise<string> {
    return new Promise((resolve) => {
      let data = '';
      const socket = tls.connect({ host: '127.0.0.1', port, ca: pki.caCert, ...(servername && { servername }), ...client });
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (data += chunk));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(data));
    });
  }

  it('accepts a client certificate from the same CA, over the localhost name and the loopback IP', async () => {
    const alice = await pki.client('alice');
    expect(await exchange(alice, 'localhost')).toBe('hello alice\n');
    expect(await exchange(alice)).toBe('hello alice\n');
  });

  it('rejects a client certificate from an independent CA, and a client without a certificate', async () => {
    const other = await makeTestPki(freshDir());
    const mallory = await other.client('mallory');
    const before = serverErrors.length;
    expect(await exchange(mallory, 'localhost')).toBe('');
    expect(await exchange(undefined, 'localhost')).toBe('');
    expect(serverErrors.length).toBe(before + 2);
  });
});

describe('initPki on an existing directory', () => {
  const read = (dir: string, file: string): string => readFileSync(path.join(dir, file), 'utf8');
  const statuses = (files: { file: string; status: string }[]): Record<string, string> =>
    Object.fromEntries(files.map((f) => [f.file, f.status]));

  it('is idempotent: a second call writes nothing and says so', async () => {
    const dir = freshDir();
    const first = await initPki({ dir });
    expect(first).toMatchObject({ changed: true, caCreated: true });
    expect(statuses(first.files)).toEqual({ 'ca.crt': 'created', 'ca.key': 'created', 'server.crt': 'created', 'server.key': 'created' });
    const files = ['ca.crt', 'ca.key', 'server.crt', 'server.key'];
    const before = files.map((f) => [read(dir, f), statSync(path.join(dir, f)).mtimeMs]);
    const second = await initPki({ dir });
    expect(second).toMatchObject({ changed: false, caCreated: false });
    expect(Object.values(statuses(second.files))).toEqual(['kept', 'kept', 'kept', 'kept']);
    expect(files.map((f) => [read(dir, f), statSync(path.join(dir, f)).mtimeMs])).toEqual(before);
  });

  it('reissues only the server certificate for a new name, keeping the CA and the old names', async () => {
    const dir = freshDir();
    await initPki({ dir, serverNames: ['one.example.org'] });
    const ca = read(dir, 'ca.crt');
    const result = await initPki({ dir, serverNames: ['two.example.org'] });
    expect(statuses(result.files)).toEqual({ 'ca.crt': 'kept', 'ca.key': 'kept', 'server.crt': 'replaced', 'server.key': 'replaced' });
    expect(result.files[2]?.reason).toContain('two.example.org');
    expect(read(dir, 'ca.crt')).toBe(ca);
    const text = (await openssl('x509', '-noout', '-text', '-in', path.join(dir, 'server.crt'))).stdout;
    expect(text).toContain('DNS:one.example.org');
    expect(text).toContain('DNS:two.example.org');
    expect((await openssl('verify', '-CAfile', path.join(dir, 'ca.crt'), path.join(dir, 'server.crt'))).code).toBe(0);

    unlinkSync(path.join(dir, 'server.key'));
    const repaired = await initPki({ dir });
    expect(statuses(repaired.files)).toMatchObject({ 'ca.crt': 'kept', 'server.crt': 'replaced', 'server.key': 'created' });
    expect(mode(path.join(dir, 'server.key'))).toBe(0o600);
  });

  it('force makes a new CA, and certificates of the old CA no longer verify', async () => {
    const dir = freshDir();
    await initPki({ dir });
    const alice = await issueClientCertificate({ dir, name: 'alice' });
    const oldCa = read(dir, 'ca.crt');
    const result = await initPki({ dir, force: true });
    expect(result.caCreated).toBe(true);
    expect(Object.values(statuses(result.files))).toEqual(['replaced', 'replaced', 'replaced', 'replaced']);
    expect(read(dir, 'ca.crt')).not.toBe(oldCa);
    expect(mode(path.join(dir, 'ca.key'))).toBe(0o600);
    expect((await openssl('verify', '-CAfile', path.join(dir, 'ca.crt'), alice.cert)).code).not.toBe(0);
  });

  it('refuses to guess when only half of the CA is there', async () => {
    const dir = freshDir();
    await initPki({ dir });
    const ca = read(dir, 'ca.crt');
    unlinkSync(path.join(dir, 'ca.key'));
    const err = await expectCode(initPki({ dir }), 'ca-incomplete');
    expect(err.file).toBe(path.join(dir, 'ca.key'));
    expect(err.message).toContain(path.join(dir, 'ca.key'));
    expect(read(dir, 'ca.crt')).toBe(ca);
  });

  it('rejects a CA key that does not belong to ca.crt, and bad server names', async () => {
    const dir = freshDir();
    const other = freshDir();
    await Promise.all([initPki({ dir }), initPki({ dir: other })]);
    writeFileSync(path.join(dir, 'ca.key'), read(other, 'ca.key'));
    await expectCode(issueClientCertificate({ dir, name: 'alice' }), 'ca-invalid');
    await expectCode(initPki({ dir: freshDir(), serverNames: ['bad name'] }), 'invalid-server-name');
  });
});

describe('issueClientCertificate errors and options', () => {
  it('says to run `gatehouse pki init` when there is no CA', async () => {
    const dir = freshDir();
    const err = await expectCode(issueClientCertificate({ dir, name: 'alice' }), 'ca-missing');
    expect(err.message).toContain(`no CA in ${dir}`);
    expect(err.message).toContain('run `gatehouse pki init` first');
  });

  it('rejects names outside [A-Za-z0-9._-], too long, or . and ..; and bad emails', async () => {
    const dir = freshDir();
    await initPki({ dir });
    for (const name of ['../x', 'a/b', '', 'al ice', '..', 'x'.repeat(65), 'ça']) {
      await expectCode(issueClientCertificate({ dir, name }), 'invalid-name');
    }
    await expectCode(issueClientCertificate({ dir, name: 'alice', email: 'not an email' }), 'invalid-email');
    expect(() => statSync(path.join(dir, 'clients'))).toThrow();
  });

  it('refuses to overwrite unless forced, and writes into --out', async () => {
    const dir = freshDir();
    await initPki({ dir });
    const first = await issueClientCertificate({ dir, name: 'alice' });
    const pem = readFileSync(first.cert, 'utf8');
    const err = await expectCode(issueClientCertificate({ dir, name: 'alice' }), 'exists');
    expect(err.message).toContain(first.cert);
    expect(readFileSync(first.cert, 'utf8')).toBe(pem);
    const second = await issueClientCertificate({ dir, name: 'alice', force: true });
    expect(second.serial).not.toBe(first.serial);
    expect(mode(second.key)).toBe(0o600);
    const out = freshDir();
    const elsewhere = await issueClientCertificate({ dir, name: 'carol', out });
    expect(elsewhere.cert).toBe(path.join(out, 'carol.crt'));
    expect((await openssl('verify', '-CAfile', path.join(dir, 'ca.crt'), elsewhere.cert)).code).toBe(0);
  });
});

describe('gatehouse pki (command line)', () => {
  it('init writes the files, a second init changes nothing, client prints curl flags that work', async () => {
    const dir = freshDir();
    const init = await gatehouse('pki', 'init', '--dir', dir, '--server-name', 'gw.test');
    expect(init.stderr).toBe('');
    expect(init.code).toBe(0);
    for (const file of ['ca.crt', 'ca.key', 'server.crt', 'server.key']) expect(init.stdout).toContain(`created  ${path.join(dir, file)}`);
    const again = await gatehouse('pki', 'init', '--dir', dir, '--server-name', 'gw.test');
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('nothing to do');

    const client = await gatehouse('pki', 'client', 'alice', '--dir', dir, '--email', 'alice@example.org');
    expect(client.code).toBe(0);
    const flags = /^curl flags: (.*)$/m.exec(client.stdout)?.[1]?.split(' ') ?? [];
    expect(flags).toEqual(['--cert', path.join(dir, 'clients/alice.crt'), '--key', path.join(dir, 'clients/alice.key'), '--cacert', path.join(dir, 'ca.crt')]);

    const server = tls.createServer(
      { cert: readFileSync(path.join(dir, 'server.crt')), key: readFileSync(path.join(dir, 'server.key')), ca: readFileSync(path.join(dir, 'ca.crt')), requestCert: true, rejectUnauthorized: true },
      (socket) => socket.once('data', () => socket.end(`HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nhello ${peerIdentity(socket)?.cn ?? '?'}\n`)),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `https://localhost:${(server.address() as AddressInfo).port}/`;
      const curl = await run('curl', ['-sS', '--resolve', `localhost:${(server.address() as AddressInfo).port}:127.0.0.1`, ...flags, url]);
      expect(curl.stderr).toBe('');
      expect(curl.stdout).toBe('hello alice\n');
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('fails with one line and exit code 1, without a stack trace', async () => {
    const dir = freshDir();
    const noCa = await gatehouse('pki', 'client', 'bob', '--dir', dir);
    expect(noCa.code).toBe(1);
    expect(noCa.stderr).toBe(`gatehouse pki client: no CA in ${dir} (${path.join(dir, 'ca.crt')} is missing): run \`gatehouse pki init\` first\n`);
    await initPki({ dir });
    const badName = await gatehouse('pki', 'client', 'bad/name', '--dir', dir);
    expect(badName.code).toBe(1);
    expect(badName.stderr).toMatch(/^gatehouse pki client: invalid client name "bad\/name"[^\n]*\n$/);
  });

  it('has help for both commands', async () => {
    const init = await gatehouse('pki', 'init', '--help');
    expect(init.code).toBe(0);
    for (const option of ['--dir', '--server-name', '--force', 'tls.clientCa']) expect(init.stdout).toContain(option);
    const client = await gatehouse('pki', 'client', '--help');
    expect(client.code).toBe(0);
    for (const option of ['<name>', '--email', '--out', '--force']) expect(client.stdout).toContain(option);
  });
});
