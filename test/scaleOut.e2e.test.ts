// Two gateway instances (two `gatehouse serve` children sharing config, keys, revocation list and the
// session-ticket key file; each its own audit file) behind a real HAProxy in `mode tcp`: a publisher
// connected to both, TLS sessions resumed across instances, and one instance killed.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type SecureVersion } from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { AuditRecord } from '../src/audit/auditRecord.ts';
import { runPublisherFleet } from '../src/client/publisherFleet.ts';
import { loadCa } from '../src/pki/index.ts';
import { SIGNING_ALGORITHM } from '../src/pki/keyFiles.ts';
import { x509 } from '../src/pki/x509.ts';
import { cli, curl, startHarness, type CurlResult, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { httpAndWebSocketService, publishedRoute, publishTop, startPublisher, type PublisherProcess } from './support/publishPeers.ts';
import { cleanEnv, writeToken } from './support/tunnelClient.ts';
import { freePort, waitForPort } from './support/localServices.ts';

function installed(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const hasHaproxy = installed('haproxy', ['-v']);
const skipNote = hasHaproxy ? '' : ' (skipped: haproxy not installed)';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Instance {
  proc: ChildProcess;
  port: number;
  metrics: string;
  auditFile: string;
  audit(): AuditRecord[];
}

let a: Harness;
let instanceA: Instance;
let instanceB: Instance;
let alice: TestClientCertificate;
let token: string;
let home: string;
let publisher: PublisherProcess | undefined;
let haproxy: ChildProcess | undefined;
let haproxyPort = 0;
/** A's routes.yaml with the shared ticket key (B starts with it, A gets it by SIGHUP). */
let withTicketKey = '';
const closers: Array<() => void> = [];

function readAudit(file: string): AuditRecord[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditRecord) : [];
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const hit = probe();
    if (hit !== undefined) return hit;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A second `gatehouse serve` on the same directory: the same files, its own config (port, audit file). */
async function startSecondInstance(dir: string, configText: string, name: string): Promise<Instance> {
  const config = join(dir, `routes-${name}.yaml`);
  const auditFile = join(dir, `audit-${name}`, 'audit.log');
  writeFileSync(config, configText.replace(/file: audit\/audit\.log/, `file: audit-${name}/audit.log`));
  const proc = spawn(process.execPath, [cli, 'serve', '--config', config], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const port = await new Promise<number>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`instance ${name} did not start:\n${err}`)), 30_000);
    proc.stderr?.on('data', () => {
      const m = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        ok(Number(m[1]));
      }
    });
    proc.once('exit', (code) => fail(new Error(`instance ${name} exited with ${code}:\n${err}`)));
  });
  const start = await waitFor('gateway.start', () => readAudit(auditFile).find((r) => r.event === 'gateway.start'));
  return { proc, port, metrics: String(start.detail?.metrics), auditFile, audit: () => readAudit(auditFile) };
}

/** One request on a fresh mTLS connection to `port`; says whether the handshake resumed `session`, and the newest ticket. */
function tlsRequest(port: number, maxVersion: SecureVersion, session?: Buffer): Promise<{ reused: boolean; session?: Buffer; response: string }> {
  return new Promise((resolve, reject) => {
    let reused = false;
    let latest: Buffer | undefined;
    let response = '';
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: a.pki.caCert, cert: alice.cert, key: alice.key, maxVersion, ...(session && { session }) });
    socket.on('session', (s: Buffer) => (latest = s));
    socket.once('secureConnect', () => {
      reused = socket.isSessionReused();
      socket.write(`GET /~alice/web/tls HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);
    });
    socket.on('data', (d: Buffer) => (response += d.toString()));
    socket.once('error', (err) => (response === '' ? reject(err) : undefined));
    socket.once('close', () => resolve({ reused, response, ...(latest && { session: latest }) }));
  });
}

function throughHaproxy(path: string): Promise<CurlResult> {
  return curl({ ...a, base: `https://localhost:${haproxyPort}` }, path, { client: alice, token, args: ['--resolve', `localhost:${haproxyPort}:127.0.0.1`] });
}

const servedBy = (records: AuditRecord[], prefix: string) => records.filter((r) => r.event === 'request' && r.status === 200 && String(r.path).startsWith(prefix));

beforeAll(async () => {
  if (!hasHaproxy) return;
  // Instance A starts without tls.ticketKeys: the control for resumption; the shared key arrives by SIGHUP.
  a = await startHarness({ routes: publishedRoute, extraTop: publishTop });
  instanceA = { proc: a.proc, port: a.port, metrics: '', auditFile: a.auditFile, audit: () => readAudit(a.auditFile) };
  instanceA.metrics = String((await a.waitForAudit((r) => r.event === 'gateway.start')).detail?.metrics);
  execFileSync(process.execPath, [cli, 'pki', 'ticket-key', join(a.dir, 'certs', 'ticket.key')]);
  withTicketKey = readFileSync(join(a.dir, 'routes.yaml'), 'utf8').replace('  clientCa: certs/ca.crt\n', '  clientCa: certs/ca.crt\n  ticketKeys: certs/ticket.key\n');
  instanceB = await startSecondInstance(a.dir, withTicketKey, 'b');
  alice = await a.pki.client('alice');
  home = mkdtempSync(join(tmpdir(), 'gatehouse-scale-'));
  const web = await httpAndWebSocketService(join(home, 'web.sock'));
  closers.push(() => web.close());
  token = readFileSync(writeToken(a, join(home, 'alice.token'), 'alice'), 'utf8').trim();
  haproxyPort = await freePort();
  const cfg = join(a.dir, 'haproxy.cfg');
  const healthPort = (metrics: string) => metrics.split(':').pop();
  writeFileSync(
    cfg,
    [
      'global',
      '  maxconn 256',
      'defaults',
      '  mode tcp',
      '  timeout connect 2s',
      '  timeout client 60s',
      '  timeout server 60s',
      '  option redispatch',
      '  retries 2',
      'frontend gatehouse',
      `  bind 127.0.0.1:${haproxyPort}`,
      '  default_backend gateways',
      'backend gateways',
      '  balance roundrobin',
      '  option httpchk GET /readyz',
      `  server a 127.0.0.1:${instanceA.port} check port ${healthPort(instanceA.metrics)} inter 500 fall 2 rise 2`,
      `  server b 127.0.0.1:${instanceB.port} check port ${healthPort(instanceB.metrics)} inter 500 fall 2 rise 2`,
      '',
    ].join('\n'),
  );
  haproxy = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  await waitForPort(haproxyPort);
}, 120_000);

afterAll(async () => {
  await publisher?.stop('SIGKILL');
  haproxy?.kill('SIGTERM');
  instanceB?.proc.kill('SIGKILL');
  for (const close of closers) close();
  await a?.stop();
});

it.skipIf(!hasHaproxy)(`without a shared ticket key a session resumes only on the instance that made it${skipNote}`, async () => {
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    const first = await tlsRequest(instanceA.port, version);
    expect(first.session, version).toBeDefined();
    expect((await tlsRequest(instanceA.port, version, first.session)).reused, `${version} on A itself`).toBe(true);
    const onB = await tlsRequest(instanceB.port, version, first.session);
    expect(onB.reused, `${version} on B`).toBe(false);
    expect(onB.response).toMatch(/^HTTP\/1\.1 (200|502|503)/);
  }
}, 60_000);

it.skipIf(!hasHaproxy)(`with tls.ticketKeys (applied by SIGHUP) a session made on one instance resumes on the other${skipNote}`, async () => {
  const keyOfB = (await waitFor('B start', () => instanceB.audit().find((r) => r.event === 'gateway.start'))).detail?.tlsTicketKey;
  expect(keyOfB).toMatch(/^sha256:[0-9a-f]{16}$/);
  writeFileSync(join(a.dir, 'routes.yaml'), withTicketKey);
  a.proc.kill('SIGHUP');
  const reload = await a.waitForAudit((r) => r.event === 'config.reload' && r.decision === 'allow', 15_000);
  expect(reload.detail?.tlsTicketKey).toBe(keyOfB);
  const aliceRequestsOnB = () => instanceB.audit().filter((r) => r.event === 'request' && r.path === '/~alice/web/tls' && r.client?.cn === 'alice').length;
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    const first = await tlsRequest(instanceA.port, version);
    const before = aliceRequestsOnB();
    const onB = await tlsRequest(instanceB.port, version, first.session);
    expect(onB.reused, `${version} made on A, resumed on B`).toBe(true);
    // The resumed connection still carries the client's certificate: B knows who it is.
    expect(onB.response).toMatch(/^HTTP\/1\.1 (200|502|503)/);
    await waitFor('the resumed request on B, by alice', () => (aliceRequestsOnB() > before ? true : undefined));
    const madeOnB = await tlsRequest(instanceB.port, version);
    expect(madeOnB.reused).toBe(false);
    const back = await tlsRequest(instanceA.port, version, madeOnB.session);
    expect(back.reused, `${version} made on B, resumed on A`).toBe(true);
  }
}, 60_000);

it.skipIf(!hasHaproxy)(`a publisher connected to both instances serves requests landing on either through HAProxy${skipNote}`, async () => {
  publisher = startPublisher(
    ['--gateway', `https://127.0.0.1:${instanceA.port}`, '--gateway', `https://127.0.0.1:${instanceB.port}`, '--ca', a.pki.caCertPath, '--cert', alice.certPath, '--key', alice.keyPath, '--token-file', join(home, 'alice.token'), `web=unix:${join(home, 'web.sock')}`],
    cleanEnv(home),
  );
  await publisher.waitForStderr(new RegExp(`published as alice through https://127\\.0\\.0\\.1:${instanceA.port} `), 30_000);
  await publisher.waitForStderr(new RegExp(`published as alice through https://127\\.0\\.0\\.1:${instanceB.port} `), 30_000);
  for (let i = 0; i < 8; i++) {
    const res = await throughHaproxy(`/~alice/web/rr-${i}`);
    expect(res.status, res.stderr + res.body).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ path: `/rr-${i}`, user: 'alice' });
  }
  const [onA, onB] = await waitFor('both audits', () => {
    const pair = [servedBy(instanceA.audit(), '/~alice/web/rr-'), servedBy(instanceB.audit(), '/~alice/web/rr-')];
    return pair[0]!.length + pair[1]!.length === 8 ? pair : undefined;
  });
  expect(onA!.length).toBeGreaterThan(0);
  expect(onB!.length).toBeGreaterThan(0);
  // Each instance forwarded through its own connection from the publisher.
  const publisherOf = (records: AuditRecord[]) => new Set(records.map((r) => r.publisher));
  expect(publisherOf(onA!).size).toBe(1);
  expect(publisherOf(onB!).size).toBe(1);
  expect([...publisherOf(onA!)][0]).not.toBe([...publisherOf(onB!)][0]);
}, 90_000);

it.skipIf(!hasHaproxy)(`one instance killed: the other keeps serving through HAProxy and keeps its publisher${skipNote}`, async () => {
  if (!publisher) throw new Error('needs the publisher of the previous test');
  const publisherOnA = servedBy(instanceA.audit(), '/~alice/web/rr-')[0]?.publisher;
  expect(publisherOnA).toBeDefined();
  const mark = publisher.stderr().length;
  instanceB.proc.kill('SIGKILL');
  await publisher.waitForStderr(new RegExp(`connection to https://127\\.0\\.0\\.1:${instanceB.port} lost`), 30_000, mark);
  // HAProxy's health check (inter 500, fall 2) marks B down; redispatch covers the moments before.
  await sleep(2_000);
  for (let i = 0; i < 6; i++) {
    const res = await throughHaproxy(`/~alice/web/after-${i}`);
    expect(res.status, res.stderr + res.body).toBe(200);
  }
  const after = await waitFor('6 on A', () => {
    const served = servedBy(instanceA.audit(), '/~alice/web/after-');
    return served.length === 6 ? served : undefined;
  });
  expect(new Set(after.map((r) => r.publisher))).toEqual(new Set([publisherOnA]));
  expect(publisher.stderr().slice(mark)).not.toMatch(new RegExp(`connection to https://127\\.0\\.0\\.1:${instanceA.port} lost`));
  expect(instanceA.audit().some((r) => r.event === 'publish.close')).toBe(false);
}, 90_000);

it.skipIf(!hasHaproxy)(`a gateway name resolving to several addresses gets one publisher connection per address (IPv4 only when it has some)${skipNote}`, async () => {
  const lines: string[] = [];
  const asked: string[] = [];
  const fleet = runPublisherFleet({
    endpoints: [{ host: 'localhost', port: instanceA.port, label: `https://localhost:${instanceA.port}`, cert: Buffer.from(alice.cert), key: Buffer.from(alice.key), ca: Buffer.from(a.pki.caCert), token }],
    specs: [{ service: 'named', target: { kind: 'unix', path: join(home, 'web.sock') } }],
    say: (line) => lines.push(line),
    verbose: false,
    minDelayMs: 200,
    resolveAll: async (host) => (asked.push(host), ['127.0.0.1', '127.0.0.3', '::1']),
  });
  try {
    // 127.0.0.1 is instance A (its certificate verified against the name); nothing listens on 127.0.0.3.
    await waitFor('registration through 127.0.0.1', () => lines.find((l) => l.startsWith(`published as alice through https://localhost:${instanceA.port} (127.0.0.1)`)));
    await waitFor('a retry for 127.0.0.3', () => lines.find((l) => l.includes('(127.0.0.3)') && /retrying/.test(l)));
    expect(asked).toEqual(['localhost']);
    expect(lines.some((l) => l.includes('::1'))).toBe(false);
    await waitFor('publish.open on A', () => instanceA.audit().find((r) => r.event === 'publish.open' && r.decision === 'allow' && JSON.stringify(r.detail).includes('named')));
  } finally {
    fleet.stop();
    expect(await fleet.done).toBe(0);
  }
}, 60_000);

/** A PEM CRL signed by the test CA revoking `serials`. */
async function makeCrl(serials: string[]): Promise<string> {
  const ca = await loadCa(a.pki.dir);
  const crl = await x509.X509CrlGenerator.create({
    issuer: ca.certificate.subject,
    signingKey: ca.signingKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    thisUpdate: new Date(Date.now() - 3600_000),
    nextUpdate: new Date(Date.now() + 86400_000),
    entries: serials.map((serialNumber) => ({ serialNumber, revocationDate: new Date(Date.now() - 60_000) })),
  });
  return crl.toString('pem').replace(/(BEGIN|END) CRL/g, '$1 X509 CRL') + '\n';
}

it.skipIf(!hasHaproxy)(`a shared ticket does not carry a revoked certificate past a new CRL${skipNote}`, async () => {
  const held = await tlsRequest(instanceA.port, 'TLSv1.3');
  expect((await tlsRequest(instanceA.port, 'TLSv1.3', held.session)).reused).toBe(true);
  writeFileSync(join(a.dir, 'certs', 'clients.crl'), await makeCrl([alice.serial]));
  writeFileSync(join(a.dir, 'routes.yaml'), withTicketKey.replace('  clientCa: certs/ca.crt\n', '  clientCa: certs/ca.crt\n  crl: certs/clients.crl\n'));
  const reloads = instanceA.audit().filter((r) => r.event === 'config.reload' && r.decision === 'allow').length;
  a.proc.kill('SIGHUP');
  await waitFor('the reload with the CRL', () => (instanceA.audit().filter((r) => r.event === 'config.reload' && r.decision === 'allow').length > reloads ? true : undefined));
  // The ticket still decrypts (same key), but the session was made under another CRL: a full handshake, refused.
  const after = await tlsRequest(instanceA.port, 'TLSv1.3', held.session).catch((err: Error) => ({ reused: false, response: '', error: err.message }));
  expect(after.reused).toBe(false);
  expect(after.response).not.toMatch(/^HTTP/);
  await a.waitForAudit((r) => r.event === 'tls.reject' && /revoked/.test(String(r.reason)), 10_000);
}, 60_000);
