// The command line as a newcomer meets it (issue 19): --version, running from a checkout with
// `npm run gatehouse --`, `demo --listen`, a closed pipe under stdout, and values outside an option's choices.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, repoRoot, runGatehouse } from './support/gatewayHarness.ts';

const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
const stops: Array<() => void> = [];
afterAll(() => stops.forEach((stop) => stop()));

describe('gatehouse --version', () => {
  it('prints the package version and exits 0 (--version and -V)', async () => {
    for (const flag of ['--version', '-V']) {
      const run = await runGatehouse([flag]);
      expect(run.stdout).toBe(`${version}\n`);
      expect(run.code).toBe(0);
    }
  });
});

describe('running from a checkout', () => {
  it.skipIf(spawnSync('npm', ['--version']).status !== 0)('npm run gatehouse -- ARGS runs the command where it was typed (needs npm)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-npm-run-'));
    const versionRun = spawnSync('npm', ['--prefix', repoRoot, 'run', '-s', 'gatehouse', '--', '--version'], { cwd: dir, encoding: 'utf8' });
    expect(versionRun.stdout.trim()).toBe(version);
    // A relative path means the directory npm was run in, not the package's.
    const check = spawnSync('npm', ['--prefix', repoRoot, 'run', '-s', 'gatehouse', '--', 'check', '--config', 'here.yaml'], { cwd: dir, encoding: 'utf8' });
    expect(check.stderr).toMatch(/^here\.yaml: \(document\): cannot read config: no such file$/m);
    expect(check.status).not.toBe(0);
  });
});

/** A `gatehouse demo` in a fresh copy of the shipped routes.yaml; resolves with its stderr once it is up or has exited. */
function startDemo(args: string[]): Promise<{ dir: string; stderr: string; code: number | null; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-demo-'));
  copyFileSync(join(repoRoot, 'routes.yaml'), join(dir, 'routes.yaml'));
  const proc = spawn(process.execPath, [cli, 'demo', ...args], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const stop = () => new Promise<void>((resolve) => (proc.exitCode !== null || proc.signalCode !== null ? resolve() : (proc.once('exit', () => resolve()), proc.kill('SIGTERM'))));
  stops.push(() => proc.kill('SIGKILL'));
  let stderr = '';
  return new Promise((resolve) => {
    proc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/Stop with Ctrl-C/.test(stderr)) resolve({ dir, stderr, code: null, stop });
    });
    proc.once('exit', (code) => resolve({ dir, stderr, code, stop }));
  });
}

describe('gatehouse demo --listen', () => {
  it('serves on the address given; the printed curl reaches the demo and the hints run from a checkout', async () => {
    const demo = await startDemo(['--listen', '127.0.0.1:0']);
    try {
      expect(demo.code, demo.stderr).toBeNull();
      const port = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(demo.stderr)?.[1];
      expect(Number(port)).toBeGreaterThan(0);
      expect(demo.stderr).not.toMatch(/:8443/);
      const curl = /\n {2}(curl [\s\S]*?\/demo\/hello)\n/.exec(demo.stderr)?.[1] ?? '';
      expect(curl).toContain(`https://localhost:${port}/demo/hello`);
      const reply = await new Promise<string>((resolve) => execFile('sh', ['-c', `${curl} --silent --show-error`], { cwd: demo.dir }, (_e, stdout, stderr) => resolve(stdout + stderr)));
      expect(JSON.parse(reply)).toMatchObject({ service: 'demo', identity: { user: 'demo' } });
      // From the sources, the hint is the npm script (a checkout has no `gatehouse` on PATH).
      expect(demo.stderr).toMatch(/check it: npm run gatehouse -- audit verify --key certs\/audit-signing\.pub audit\/audit\.log\*;/);
    } finally {
      await demo.stop();
    }
  });

  it('a busy port is one line naming the address and the option', async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    stops.push(() => busy.close());
    const address = `127.0.0.1:${(busy.address() as AddressInfo).port}`;
    const demo = await startDemo(['--listen', address]);
    expect(demo.code).toBe(1);
    expect(demo.stderr).toMatch(new RegExp(`^gatehouse: not started: ${address.replace(/\./g, '\\.')} is already in use .*--listen HOST:PORT$`, 'm'));
  });

  it('refuses an address that is not HOST:PORT', async () => {
    const run = await runGatehouse(['demo', '--listen', '8444']);
    expect(run.stderr).toMatch(/--listen.*expected HOST:PORT/);
    expect(run.code).not.toBe(0);
  });
});

describe('stdout closed by the reader', () => {
  it('audit query | head ends quietly: no "write EPIPE", exit 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-epipe-'));
    const line = JSON.stringify({ seq: 1, time: '2026-12-01T00:00:00.000Z', event: 'request', route: 'r', decision: 'allow', status: 200, path: '/x'.repeat(100) });
    writeFileSync(join(dir, 'audit.log'), `${line}\n`.repeat(20_000));
    const proc = spawn(process.execPath, [cli, 'audit', 'query', '--format', 'json', join(dir, 'audit.log')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // As `head -1` does: read the first chunk, then close the pipe.
    proc.stdout.once('data', () => proc.stdout.destroy());
    const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
    expect(stderr).not.toMatch(/EPIPE/);
    expect(code).toBe(0);
  });
});

describe('options with a fixed set of values', () => {
  it.each([
    [['audit', 'query', '--decision', 'maybe', 'x.log'], /--decision.*Allowed choices are allow, deny/],
    [['audit', 'query', '--format', 'csv', 'x.log'], /--format.*Allowed choices are table, json, summary, delegations/],
    [['authz', 'explain', '--route', 'r', '--cert', 'c.pem', '--protocol', 'quic'], /--protocol.*Allowed choices are http, websocket, tcp, udp/],
    [['tunnel', '--stdio', 'r', '--transport', 'quic'], /--transport.*Allowed choices are connect, websocket, http2/],
  ])('%j is refused before the command runs', async (args, message) => {
    const run = await runGatehouse(args);
    expect(run.stderr).toMatch(message);
    // A usage error exits 2; `authz explain` keeps 2 for "denied" and says 1 (could not be answered).
    expect(run.code).toBe(args[1] === 'explain' ? 1 : 2);
  });
});
