// PROXY protocol on a listener of a real `gatehouse serve`: behind real HAProxy (send-proxy-v2) and nginx
// stream (proxy_protocol on) the audit record, `source_ip` policy and connection limits see the client's
// address; peers outside proxyProtocol.trusted, and trusted peers without a valid header, are refused.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { curl, inOneHour, mintRaw, startHarness, type CurlResult, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import type { AuditRecord } from '../src/audit/auditRecord.ts';
import { sleep } from './support/rawClients.ts';
import { freePort, waitForPort } from './support/localServices.ts';

/** The balancers' address (trusted) and clients' addresses behind them; all loopback. */
const BALANCER = '127.0.0.2';
const NEAR_CLIENT = '127.0.0.3';
const PER_SOURCE = 3;
/** The PROXY protocol listener's own address (the harness's plain listener has 127.0.0.1). */
const GATEWAY = '127.0.0.10';

function installed(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const hasHaproxy = installed('haproxy', ['-v']);
/** nginx's build flags (it prints them on stderr): they say where its dynamic modules live. */
const nginxFlags = spawnSync('nginx', ['-V'], { encoding: 'utf8' }).stderr ?? '';

let h: Harness;
let alice: TestClientCertificate;
let token: string;
let web: Server;
let proxyPort = 0;
let metricsBase = '';
const children: ChildProcess[] = [];

/** curl from `from` to a balancer on `port` in front of the gateway. */
function curlVia(port: number, path: string, from: string): Promise<CurlResult> {
  return curl({ ...h, base: `https://localhost:${port}` }, path, { client: alice, token, args: ['--interface', from, '--resolve', `localhost:${port}:127.0.0.1`] });
}

function proxyV2(ip: string, port: number): Buffer {
  const header = Buffer.alloc(28);
  Buffer.from('0d0a0d0a000d0a515549540a', 'hex').copy(header);
  header[12] = 0x21;
  header[13] = 0x11;
  header.writeUInt16BE(12, 14);
  ip.split('.').forEach((o, i) => (header[16 + i] = Number(o)));
  header.writeUInt16BE(port, 24);
  header.writeUInt16BE(proxyPort, 26);
  return header;
}

/**
 * A hand-made balancer: connects from `from`, writes `preamble` (a header or not), then speaks TLS and
 * one HTTP request. Resolves with the status (0 when the gateway closed the connection instead).
 */
function requestThrough(from: string, preamble: Buffer, path: string): Promise<number> {
  return new Promise((resolve) => {
    const raw = netConnect({ host: GATEWAY, port: proxyPort, localAddress: from }, () => {
      raw.write(preamble);
      const tls = tlsConnect({ socket: raw, servername: 'localhost', ca: h.pki.caCert, cert: alice.cert, key: alice.key });
      let data = '';
      tls.on('data', (d: Buffer) => (data += d.toString()));
      tls.on('error', () => {});
      tls.once('secureConnect', () => tls.write(`GET ${path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer ${token}\r\nconnection: close\r\n\r\n`));
      tls.once('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0)));
    });
    raw.once('error', () => resolve(0));
  });
}

/** Opens a connection with a header naming `client` and holds it before TLS; returns it. */
function holdFrom(client: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const raw = netConnect({ host: GATEWAY, port: proxyPort, localAddress: BALANCER }, () => {
      raw.write(proxyV2(client, 1000));
      resolve(raw);
    });
    raw.on('error', () => {});
    raw.once('error', reject);
  });
}

async function metric(line: RegExp): Promise<number> {
  const text = await (await fetch(`${metricsBase}/metrics`)).text();
  const hit = text.split('\n').find((l) => line.test(l));
  return hit ? Number(hit.split(' ').pop()) : 0;
}

beforeAll(async () => {
  const policy = (extra: string) => `    policy: |\n      allow if user($u)${extra};\n`;
  h = await startHarness({
    routes:
      `  - name: web\n    path: /web/\n    upstream: unix:run/web.sock\n${policy('')}` +
      `  - name: near\n    path: /near/\n    upstream: unix:run/web.sock\n${policy(`, source_ip("${NEAR_CLIENT}")`)}`,
    extraListen: `  - tcp: ${GATEWAY}:0\n    proxyProtocol:\n      trusted: [${BALANCER}/32, "::1"]\n`,
    extraTop: `metrics:\n  listen: 127.0.0.1:0\nlimits:\n  connectionsPerSource: ${PER_SOURCE}\n  handshakeTimeoutSeconds: 30\n`,
  });
  alice = await h.pki.client('alice');
  token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
  web = createHttpServer((req, res) => res.end(`xff=${String(req.headers['x-forwarded-for'])}\n`));
  mkdirSync(join(h.dir, 'run'), { recursive: true });
  rmSync(join(h.dir, 'run', 'web.sock'), { force: true });
  await new Promise<void>((resolve) => web.listen(join(h.dir, 'run', 'web.sock'), () => resolve()));
  const start = await h.waitForAudit((r) => r.event === 'gateway.start');
  metricsBase = `http://${String(start.detail?.metrics)}`;
  proxyPort = Number(String((start.detail?.listen as string[])[1]).split(':').pop());
});

afterAll(async () => {
  for (const c of children) c.kill('SIGTERM');
  web?.close();
  await h?.stop();
});

it('a hand-made v2 header from a trusted balancer: source_ip policy, the audit source and X-Forwarded-For name the client', async () => {
  expect(await requestThrough(BALANCER, proxyV2(NEAR_CLIENT, 40001), '/near/a')).toBe(200);
  expect(await requestThrough(BALANCER, proxyV2('127.0.0.9', 40002), '/near/b')).toBe(403);
  const allowed = await h.waitForAudit((r) => r.event === 'request' && r.path === '/near/a');
  expect(allowed).toMatchObject({ decision: 'allow', source: `${NEAR_CLIENT}:40001` });
  const open = await h.waitForAudit((r) => r.event === 'connection.open' && r.conn === allowed.conn);
  expect(open.source).toBe(`${NEAR_CLIENT}:40001`);
  expect(String(open.detail?.via)).toMatch(/^127\.0\.0\.2:\d+$/);
  expect(await h.waitForAudit((r) => r.event === 'request' && r.path === '/near/b')).toMatchObject({ decision: 'deny', source: '127.0.0.9:40002' });
  // The v1 text form, split at an awkward place, works as well.
  expect(await requestThrough(BALANCER, Buffer.from(`PROXY TCP4 ${NEAR_CLIENT} 127.0.0.1 40003 ${proxyPort}\r\n`), '/near/c')).toBe(200);
});

it('a peer outside proxyProtocol.trusted is refused before anything is read, even with a valid header; recorded', async () => {
  expect(await requestThrough('127.0.0.5', proxyV2(NEAR_CLIENT, 40004), '/near/d')).toBe(0);
  const direct = await curl({ ...h, base: `https://localhost:${proxyPort}` }, '/web/x', { client: alice, token, args: ['--resolve', `localhost:${proxyPort}:${GATEWAY}`] });
  expect(direct.status).toBe(0);
  const rejected = await h.waitForAudit((r) => r.event === 'connection.reject' && (r.source ?? '').startsWith('127.0.0.5:'));
  expect(rejected.reason).toContain('not in proxyProtocol.trusted');
  expect(h.audit().some((r) => r.path === '/near/d')).toBe(false);
  expect(await metric(/^gatehouse_proxy_protocol_refusals_total\{reason="untrusted"\}/)).toBeGreaterThanOrEqual(2);
});

it('a trusted balancer that sends no header, or a malformed one, is refused; the main listener is unaffected', async () => {
  expect(await requestThrough(BALANCER, Buffer.alloc(0), '/web/no-header')).toBe(0);
  expect(await requestThrough(BALANCER, Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n'), '/web/bad')).toBe(0);
  const fromBalancer = (r: AuditRecord) => r.event === 'connection.reject' && (r.source ?? '').startsWith(`${BALANCER}:`);
  // The records are written asynchronously: wait for the second refusal before reading them all.
  await h.waitForAudit((r) => fromBalancer(r) && (r.reason ?? '').includes('port'));
  const reasons = h.audit().filter(fromBalancer).map((r) => r.reason);
  expect(reasons.some((r) => r?.includes('no PROXY protocol header'))).toBe(true);
  expect(reasons.some((r) => r?.includes('port'))).toBe(true);
  expect((await curl(h, '/web/plain', { client: alice, token })).status).toBe(200);
});

it(`connectionsPerSource counts the client named in the header, not the balancer`, async () => {
  const held = await Promise.all(Array.from({ length: PER_SOURCE }, () => holdFrom('127.0.0.6')));
  await sleep(200);
  const over = await holdFrom('127.0.0.6');
  const closed = await new Promise<boolean>((resolve) => {
    over.once('close', () => resolve(true));
    setTimeout(() => resolve(false), 2000);
  });
  expect(closed).toBe(true);
  await h.waitForAudit((r) => r.event === 'connection.reject' && (r.source ?? '').startsWith('127.0.0.6:') && (r.reason ?? '').includes('connectionsPerSource'));
  // Another client behind the same balancer is still let in.
  expect(await requestThrough(BALANCER, proxyV2('127.0.0.7', 40005), '/web/other')).toBe(200);
  for (const s of held) s.destroy();
});

it.skipIf(!hasHaproxy)(`behind HAProxy send-proxy-v2 the audit record and source_ip see the client${hasHaproxy ? '' : ' (skipped: haproxy not installed)'}`, async () => {
  const port = await freePort();
  const untrustedPort = await freePort();
  const cfg = join(h.dir, 'haproxy.cfg');
  writeFileSync(
    cfg,
    `global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n` +
      `frontend fe\n  bind 127.0.0.1:${port}\n  default_backend gw\nbackend gw\n  server g1 ${GATEWAY}:${proxyPort} send-proxy-v2 source ${BALANCER}\n` +
      // The same balancer from an address not in proxyProtocol.trusted.
      `frontend untrusted\n  bind 127.0.0.1:${untrustedPort}\n  default_backend gw_untrusted\nbackend gw_untrusted\n  server g2 ${GATEWAY}:${proxyPort} send-proxy-v2 source 127.0.0.11\n`,
  );
  const haproxy = spawn('haproxy', ['-db', '-f', cfg], { stdio: 'ignore' });
  children.push(haproxy);
  await waitForPort(port);
  const near = await curlVia(port, '/near/haproxy', NEAR_CLIENT);
  expect(near.status).toBe(200);
  expect(near.body).toBe(`xff=${NEAR_CLIENT}\n`);
  expect((await curlVia(port, '/near/haproxy-far', '127.0.0.8')).status).toBe(403);
  const rec = await h.waitForAudit((r) => r.event === 'request' && r.path === '/near/haproxy');
  expect(rec.source).toMatch(/^127\.0\.0\.3:\d+$/);
  expect(await h.waitForAudit((r) => r.event === 'request' && r.path === '/near/haproxy-far')).toMatchObject({ decision: 'deny', source: expect.stringMatching(/^127\.0\.0\.8:/) });
  await waitForPort(untrustedPort);
  expect((await curlVia(untrustedPort, '/near/haproxy-untrusted', NEAR_CLIENT)).status).toBe(0);
  const refused = await h.waitForAudit((r) => r.event === 'connection.reject' && (r.source ?? '').startsWith('127.0.0.11:'));
  expect(refused.reason).toContain('not in proxyProtocol.trusted');
  expect(h.audit().some((r) => r.path === '/near/haproxy-untrusted')).toBe(false);
  haproxy.kill('SIGTERM');
});

const modulesPath = /--modules-path=(\S+)/.exec(nginxFlags)?.[1];
const streamModule = modulesPath ? join(modulesPath, 'ngx_stream_module.so') : undefined;
const hasNginxStream = streamModule !== undefined && existsSync(streamModule);

it.skipIf(!hasNginxStream)(`behind nginx stream proxy_protocol on (v1) the audit record and source_ip see the client${hasNginxStream ? '' : ' (skipped: nginx or libnginx-mod-stream not installed)'}`, async () => {
  const port = await freePort();
  const dir = join(h.dir, 'nginx');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'nginx.conf'),
    `load_module ${streamModule};\ndaemon off;\nworker_processes 1;\npid ${join(dir, 'nginx.pid')};\nerror_log ${join(dir, 'error.log')};\nevents { worker_connections 64; }\n` +
      `stream {\n  server {\n    listen 127.0.0.1:${port};\n    proxy_pass ${GATEWAY}:${proxyPort};\n    proxy_protocol on;\n    proxy_bind ${BALANCER};\n  }\n}\n`,
  );
  const nginx = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: 'ignore' });
  children.push(nginx);
  await waitForPort(port);
  const near = await curlVia(port, '/near/nginx', NEAR_CLIENT);
  expect(near.status).toBe(200);
  expect(near.body).toBe(`xff=${NEAR_CLIENT}\n`);
  const rec = await h.waitForAudit((r) => r.event === 'request' && r.path === '/near/nginx');
  expect(rec.source).toMatch(/^127\.0\.0\.3:\d+$/);
  nginx.kill('SIGTERM');
});

it('SIGTERM with a trusted balancer connected but its header not sent exits at once, writing gateway.stop', async () => {
  const pending = await new Promise<Socket>((resolve, reject) => {
    const raw = netConnect({ host: GATEWAY, port: proxyPort, localAddress: BALANCER }, () => resolve(raw));
    raw.on('error', () => {});
    raw.once('error', reject);
  });
  await sleep(100);
  const started = Date.now();
  expect(await h.stop()).toBe(0);
  expect(Date.now() - started).toBeLessThan(5000);
  expect(h.audit().some((r) => r.event === 'gateway.stop')).toBe(true);
  pending.destroy();
});
