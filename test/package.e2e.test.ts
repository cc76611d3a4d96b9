// The published package as a site installs it: `npm pack`, `npm i -g` under the Node found on PATH
// outside npm's scripts (the system Node), then the site's first steps with `gatehouse` from PATH.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { which } from './support/localServices.ts';

const repoRoot = resolve(import.meta.dirname, '..');
/** PATH without npm's script directories (node_modules/.bin), where the pinned Node lives. */
const systemPath = (process.env.PATH ?? '').split(delimiter).filter((dir) => !dir.includes('node_modules')).join(delimiter);
const systemNode = systemPath.split(delimiter).map((dir) => join(dir, 'node')).find((file) => existsSync(file));
const systemNpm = systemPath.split(delimiter).map((dir) => join(dir, 'npm')).find((file) => existsSync(file));
const skipReason = !systemNode || !systemNpm ? 'no node and npm on PATH outside node_modules' : !which('curl') ? 'curl not installed' : '';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: opts.cwd, env: opts.env, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

describe.skipIf(skipReason !== '')(`npm pack + npm i -g under the system Node${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let work: string;
  let env: NodeJS.ProcessEnv;
  let echo: Server | undefined;
  let gateway: ChildProcess | undefined;
  const site = () => join(work, 'site');
  const gh = (args: string[], timeoutMs?: number) => run('gatehouse', args, { cwd: site(), env, ...(timeoutMs !== undefined && { timeoutMs }) });

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'gatehouse-package-'));
    const prefix = join(work, 'prefix');
    // The system Node and npm only: no node_modules/.bin on PATH, no npm_* variables from our own script.
    env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) && k !== 'NODE_OPTIONS'));
    env.PATH = [join(prefix, 'bin'), systemPath].join(delimiter);
    env.HOME = work;
    env.npm_config_cache = join(process.env.HOME ?? work, '.npm'); // reuse the download cache
    const pack = await run(systemNpm as string, ['pack', '--pack-destination', work], { cwd: repoRoot, env: { ...env, PATH: process.env.PATH }, timeoutMs: 180_000 });
    expect(pack.code, pack.stderr).toBe(0);
    const tarball = readdirSync(work).find((f) => /^gatehouse-.*\.tgz$/.test(f));
    expect(tarball).toBeDefined();
    const install = await run(systemNpm as string, ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', join(work, tarball as string)], { cwd: work, env, timeoutMs: 180_000 });
    expect(install.code, install.stderr).toBe(0);
    // The pinned development Node is not part of an install.
    expect(existsSync(join(prefix, 'lib', 'node_modules', 'gatehouse', 'node_modules', 'node'))).toBe(false);
    mkdirSync(site());
  }, 400_000);

  afterAll(async () => {
    gateway?.kill('SIGTERM');
    echo?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('gatehouse --help and gatehouse tunnel --help run from PATH with no warning', async () => {
    const version = await run('node', ['--version'], { cwd: work, env });
    expect(version.stdout.trim()).toBe(await run(systemNode as string, ['--version'], { cwd: work, env }).then((r) => r.stdout.trim()));
    const help = await gh(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: gatehouse');
    expect(help.stderr).toBe('');
    const tunnel = await gh(['tunnel', '--help']);
    expect(tunnel.code).toBe(0);
    expect(tunnel.stdout).toContain('Usage: gatehouse tunnel');
    expect(tunnel.stderr).toBe('');
  });

  it('a site from nothing: PKI, root key, route, token, check, serve, and a request through it', async () => {
    expect((await gh(['pki', 'init', '--dir', 'certs'])).code).toBe(0);
    expect((await gh(['pki', 'client', 'alice', '--dir', 'certs'])).code).toBe(0);
    const keygen = await gh(['token', 'keygen', '--out', 'certs/token-root']);
    expect(keygen.code, keygen.stderr).toBe(0);
    writeFileSync(join(site(), 'revoked.txt'), '');
    const socket = join(site(), 'hello.sock');
    echo = createServer((c) => c.once('data', () => c.end('HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nhello\n')));
    await new Promise<void>((ok) => echo?.listen(socket, ok));
    writeFileSync(
      join(site(), 'routes.yaml'),
      `listen:\n  - tcp: 127.0.0.1:0\ntls:\n  cert: certs/server.crt\n  key: certs/server.key\n  clientCa: certs/ca.crt\nauthz:\n  rootKey: certs/token-root.pub\n  revocationList: revoked.txt\n  limits:\n    maxTimeMicros: 500000\naudit:\n  file: audit/audit.log\nmetrics:\n  listen: 127.0.0.1:0\nroutes:\n  - name: hello\n    path: /hello/\n    protocols: [http]\n    upstream: unix:${socket}\n    policy: |\n      allow if user("alice");\n`,
    );
    // (maxTimeMicros is raised above: biscuit's run limit is wall time, and this test shares the CPU
    // with the rest of the suite; a cold first decision on a loaded machine can pass 10 ms.)
    const check = await gh(['check', '--config', 'routes.yaml']);
    expect(check.stdout + check.stderr).toContain('OK');
    expect(check.stderr).not.toMatch(/warning/i);
    const mint = await gh(['token', 'mint', '--user', 'alice', '--route', 'hello', '--bind-cn', 'alice', '--out', 'alice.token']);
    expect(mint.code, mint.stderr).toBe(0);

    gateway = spawn('gatehouse', ['serve', '--config', 'routes.yaml'], { cwd: site(), env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    const port = await new Promise<number>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`gateway did not start:\n${err}`)), 30_000);
      gateway?.stderr?.on('data', (d: Buffer) => {
        err += d.toString();
        const m = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(err);
        if (m) {
          clearTimeout(timer);
          ok(Number(m[1]));
        }
      });
      gateway?.once('exit', (code) => fail(new Error(`gateway exited with ${code}:\n${err}`)));
    });
    const curl = await run(
      'curl',
      ['-sS', '--cacert', 'certs/ca.crt', '--cert', 'certs/clients/alice.crt', '--key', 'certs/clients/alice.key', '-H', `Authorization: Bearer ${readFileSync(join(site(), 'alice.token'), 'utf8').trim()}`, `https://localhost:${port}/hello/x`],
      { cwd: site(), env },
    );
    expect(curl.stdout).toBe('hello\n');
    // Prometheus and the readiness probe on the installed package (certificate expiry gauges included).
    const start = readFileSync(join(site(), 'audit', 'audit.log'), 'utf8').split('\n').find((line) => line.includes('"gateway.start"')) ?? '{}';
    const metricsAt = (JSON.parse(start) as { detail?: { metrics?: string } }).detail?.metrics;
    expect(metricsAt).toMatch(/^127\.0\.0\.1:\d+$/);
    const scrape = await run('curl', ['-sS', '-w', '\n%{http_code}', `http://${metricsAt}/metrics`], { cwd: site(), env });
    expect(scrape.stdout.trim().split('\n').pop()).toBe('200');
    expect(scrape.stdout).toMatch(/gatehouse_tls_expiry_seconds\{what="server_certificate"\} \d{6,}/);
    const ready = await run('curl', ['-sS', '-w', '\n%{http_code}', `http://${metricsAt}/readyz`], { cwd: site(), env });
    expect(ready.stdout.trim().split('\n').pop()).toBe('200');
    // Nothing but the gateway's own lines on stderr: no ExperimentalWarning, no biscuit-wasm banner.
    expect(err).not.toMatch(/warning|biscuit-wasm loading/i);
  }, 120_000);
});
