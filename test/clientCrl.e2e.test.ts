// Client-certificate revocation (`tls.crl`) on a real `gatehouse serve`: a certificate revoked in a new
// CRL is refused in the handshake without a restart; an unusable or expired CRL refuses everyone.
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { webcrypto } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cli, curl, inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import { x509 } from '../src/pki/x509.ts';
import { loadCa } from '../src/pki/index.ts';
import { SIGNING_ALGORITHM } from '../src/pki/keyFiles.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { installCrl as installCrlAt, makeCrl as makeCrlFor } from './support/clientCrls.ts';

let h: Harness;
let alice: TestClientCertificate;
let bob: TestClientCertificate;
let token: string;
let service: Server;
let crlPath = '';

const HOUR = 3600_000;

const makeCrl = (serials: string[], opts: { nextUpdate?: Date; der?: boolean } = {}) => makeCrlFor(h, serials, opts);
const installCrl = (bytes: Buffer) => installCrlAt(crlPath, bytes);

const reloads = () => h.audit().filter((r) => r.event === 'revocation.reload' && r.detail?.crl !== undefined).length;

async function waitForCrlReload(before: number, decision: 'allow' | 'deny') {
  await h.waitForAudit(() => reloads() > before, 10_000);
  const last = h.audit().filter((r) => r.event === 'revocation.reload' && r.detail?.crl !== undefined).at(-1);
  expect(last?.decision).toBe(decision);
  return last;
}

const get = (client: TestClientCertificate, path: string) => curl(h, path, { client, token });

beforeAll(async () => {
  h = await startHarness({ routes: '  - name: web\n    path: /web/\n    upstream: unix:run/web.sock\n    policy: |\n      allow if user($u);\n' });
  service = createHttpServer((_req, res) => res.end('ok\n'));
  mkdirSync(join(h.dir, 'run'), { recursive: true });
  await new Promise<void>((resolve) => service.listen(join(h.dir, 'run', 'web.sock'), () => resolve()));
  alice = await h.pki.client('alice');
  bob = await h.pki.client('bob');
  token = mintRaw(h.rootKey.privateKey, `user("someone"); check if time($t), $t <= ${inOneHour()};`);
  crlPath = join(h.dir, 'certs', 'clients.crl');
});

afterAll(async () => {
  service?.close();
  await h?.stop();
});

it('tls.crl added by a config reload (SIGHUP): certificates not on the list keep working', async () => {
  writeFileSync(crlPath, await makeCrl([]));
  const config = join(h.dir, 'routes.yaml');
  writeFileSync(config, readFileSync(config, 'utf8').replace('  clientCa: certs/ca.crt\n', '  clientCa: certs/ca.crt\n  crl: certs/clients.crl\n'));
  h.proc.kill('SIGHUP');
  await h.waitForAudit((r) => r.event === 'config.reload' && r.decision === 'allow');
  expect((await get(alice, '/web/before')).status).toBe(200);
});

it('a certificate revoked in a new CRL (DER, replaced by rename) is refused in the handshake, without a restart', async () => {
  const before = reloads();
  installCrl(await makeCrl([alice.serial], { der: true }));
  const reload = await waitForCrlReload(before, 'allow');
  expect(reload?.detail?.lists).toEqual([expect.objectContaining({ revoked: 1 })]);
  const refused = await get(alice, '/web/after');
  expect(refused.status).toBe(0);
  const reject = await h.waitForAudit((r) => r.event === 'tls.reject' && (r.reason ?? '').includes('revoked'));
  expect(reject.reason).toMatch(/client certificate revoked \(tls\.crl\)/);
  expect(h.audit().some((r) => r.event === 'request' && r.path === '/web/after')).toBe(false);
  expect((await get(bob, '/web/bob')).status).toBe(200);
});

it('an unreadable CRL fails closed (everyone refused, recorded), and a good one restores service on SIGHUP', async () => {
  const before = reloads();
  installCrl(Buffer.from('not a CRL\n'));
  await waitForCrlReload(before, 'deny');
  expect((await get(bob, '/web/garbled')).status).toBe(0);
  await h.waitForAudit((r) => r.event === 'tls.reject' && (r.reason ?? '').includes('client CRL unusable'));
  // Written in place without a change the poller may see in time: SIGHUP re-reads it at once.
  const good = before + 1;
  writeFileSync(crlPath, await makeCrl([alice.serial]));
  h.proc.kill('SIGHUP');
  await h.waitForAudit(() => reloads() > good && h.audit().filter((r) => r.event === 'revocation.reload' && r.detail?.crl !== undefined).at(-1)?.decision === 'allow', 10_000);
  expect((await get(bob, '/web/restored')).status).toBe(200);
  expect((await get(alice, '/web/still-revoked')).status).toBe(0);
});

it('an expired CRL (nextUpdate passed) refuses every certificate of its CA', async () => {
  const before = reloads();
  installCrl(await makeCrl([], { nextUpdate: new Date(Date.now() - HOUR) }));
  await waitForCrlReload(before, 'allow');
  expect((await get(bob, '/web/expired')).status).toBe(0);
  const reject = await h.waitForAudit((r) => r.event === 'tls.reject' && (r.reason ?? '').includes('CRL_HAS_EXPIRED'));
  expect(reject.reason).toMatch(/revocation could not be checked/);
  installCrl(await makeCrl([]));
});

it('serve refuses to start on a CRL it cannot read, naming the file', async () => {
  const config = join(h.dir, 'broken.yaml');
  writeFileSync(config, readFileSync(join(h.dir, 'routes.yaml'), 'utf8').replace('crl: certs/clients.crl', 'crl: certs/missing.crl').replace('audit/audit.log', 'audit/broken.log'));
  const result = await new Promise<{ code: number; stderr: string }>((resolve) =>
    execFile(process.execPath, [cli, 'serve', '--config', config], { cwd: h.dir, timeout: 30_000 }, (err, _out, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr })),
  );
  expect(result.code).toBe(1);
  expect(result.stderr).toContain('missing.crl');
});

it('gatehouse check refuses a CRL not signed by the client CA, naming tls.crl', async () => {
  const impostor = await x509.X509CrlGenerator.create({
    issuer: (await loadCa(h.pki.dir)).certificate.subject,
    signingKey: (await webcrypto.subtle.generateKey(SIGNING_ALGORITHM, false, ['sign', 'verify'])).privateKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    nextUpdate: new Date(Date.now() + HOUR),
  });
  writeFileSync(join(h.dir, 'certs', 'impostor.crl'), impostor.toString('pem'));
  const config = join(h.dir, 'impostor.yaml');
  writeFileSync(config, readFileSync(join(h.dir, 'routes.yaml'), 'utf8').replace('crl: certs/clients.crl', 'crl: certs/impostor.crl'));
  const result = await new Promise<{ code: number; stderr: string }>((resolve) =>
    execFile(process.execPath, [cli, 'check', '--config', config], { cwd: h.dir, timeout: 30_000 }, (err, out, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr: out + stderr })),
  );
  expect(result.code).not.toBe(0);
  expect(result.stderr).toMatch(/tls\.crl: .*impostor\.crl: the CRL of .* is not signed by any certificate in tls\.clientCa/);
});

it('openssl agrees the DER list it wrote is a CRL of this CA (the format administrators produce)', async () => {
  const der = join(h.dir, 'certs', 'check.crl');
  writeFileSync(der, await makeCrl([bob.serial], { der: true }));
  const text = execFileSync('openssl', ['crl', '-inform', 'DER', '-in', der, '-noout', '-text', '-CAfile', h.pki.caCertPath], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  expect(text.toUpperCase()).toContain(bob.serial.toUpperCase());
});
