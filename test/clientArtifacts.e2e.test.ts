// The laptop client's release artifacts (`npm run build:client`): the bundle on the user's Node and the
// single binary on a machine without Node, each opening a real tunnel through a real gateway.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Server } from 'node:net';
import { arch, platform, tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { cli } from './support/gatewayHarness.ts';
import { cleanEnv, echoHandler, gatewayFlags, listenUnix, startTunnel, writeToken, type TunnelProcess } from './support/tunnelClient.ts';

const repoRoot = resolve(import.meta.dirname, '..');
const bundle = join(repoRoot, 'dist', 'client', 'gatehouse-client.mjs');
const binary = join(repoRoot, 'dist', 'client', 'gatehouse-client-linux-x64');
const haveTools = existsSync(join(repoRoot, 'node_modules', 'esbuild')) && existsSync(join(repoRoot, 'node_modules', 'postject'));
const skipReason = platform() !== 'linux' || arch() !== 'x64' ? 'the single binary is built for linux-x64 only' : !haveTools ? 'esbuild or postject not installed (npm ci)' : '';
/** The Node on PATH outside npm's scripts (the user's Node), else this one. */
const userNode =
  (process.env.PATH ?? '').split(delimiter).filter((d) => !d.includes('node_modules')).map((d) => join(d, 'node')).find((f) => existsSync(f)) ?? process.execPath;

const routes = `  - name: echo
    protocols: [tcp]
    upstream: unix:run/echo.sock
    policy: |
      allow if user($u), protocol("tcp");
`;

function rssMiB(pid: number | undefined): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Math.round(Number(m?.[1] ?? 0) / 1024);
}

function echoThrough(port: number, text: string): Promise<string> {
  return new Promise((ok, fail) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString()));
    socket.on('error', fail);
    socket.on('close', () => ok(got));
    socket.end(text);
  });
}

describe.skipIf(skipReason !== '')(`client artifacts${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let h: Harness;
  let alice: TestClientCertificate;
  let home: string;
  let tokenFile: string;
  let echo: Server;
  const tunnels: TunnelProcess[] = [];
  let buildStderr = '';

  beforeAll(async () => {
    const built = spawnSync(process.execPath, [join(repoRoot, 'build', 'client.ts')], { cwd: repoRoot, encoding: 'utf8', timeout: 180_000 });
    expect(built.status, built.stderr).toBe(0);
    buildStderr = built.stderr;
    h = await startHarness({ routes });
    alice = await h.pki.client('alice');
    home = mkdtempSync(join(tmpdir(), 'gatehouse-client-home-'));
    tokenFile = writeToken(h, join(home, 'alice.token'), 'alice');
    echo = await listenUnix(join(h.dir, 'run', 'echo.sock'), echoHandler);
  }, 240_000);

  afterAll(async () => {
    for (const t of tunnels) await t.stop();
    echo?.close();
    await h?.stop();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it('the build prints no tool warnings (esbuild, LIEF inside postject), and both artifacts know their version', () => {
    expect(buildStderr).not.toMatch(/string offset for section name|WARNING|warning/);
    const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
    expect(spawnSync(userNode, [bundle, '--version'], { encoding: 'utf8' }).stdout).toBe(`${version}\n`);
    expect(spawnSync(join(repoRoot, 'dist', 'client', 'gatehouse-client-linux-x64'), ['--version'], { encoding: 'utf8' }).stdout).toBe(`${version}\n`);
  });

  it('the bundle carries no gateway, token-tooling or development-CA code', () => {
    const text = readFileSync(bundle, 'utf8');
    expect(text).not.toMatch(/biscuit|@peculiar|reflect-metadata|http-proxy/);
  });

  it('the bundle answers --help and opens a tunnel on the user\'s Node', async () => {
    const help = spawnSync(userNode, [bundle, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('tunnel');
    expect(help.stderr).toBe('');
    const t = await startTunnel([...gatewayFlags(h, alice, tokenFile), '-L', '0:echo'], cleanEnv(home), 1, [userNode, bundle]);
    tunnels.push(t);
    const port = t.ready[0]?.port;
    expect(port, t.stderr()).toBeTypeOf('number');
    expect(await echoThrough(port as number, 'through the bundle')).toBe('through the bundle');
    await new Promise((r) => setTimeout(r, 1000));
    console.log(`idle RSS, bundle on ${spawnSync(userNode, ['--version'], { encoding: 'utf8' }).stdout.trim()}: ${rssMiB(t.proc.pid)} MiB`);
  }, 60_000);

  it('idle RSS of a tunnel: bundle and sources on this Node, for comparison', async () => {
    for (const [what, command] of [
      [`bundle on ${process.version}`, [process.execPath, bundle]],
      [`gatehouse tunnel from the sources on ${process.version}`, [process.execPath, cli]],
    ] as const) {
      const t = await startTunnel([...gatewayFlags(h, alice, tokenFile), '-L', '0:echo'], cleanEnv(home), 1, [...command]);
      tunnels.push(t);
      expect(await echoThrough(t.ready[0]?.port as number, what)).toBe(what);
      await new Promise((r) => setTimeout(r, 1000));
      console.log(`idle RSS, ${what}: ${rssMiB(t.proc.pid)} MiB`);
    }
  }, 60_000);

  it('the single binary runs with no node on PATH: --help, and a tunnel through the gateway', async () => {
    const emptyDir = mkdtempSync(join(tmpdir(), 'gatehouse-no-node-'));
    const env = { ...cleanEnv(home), PATH: emptyDir };
    expect(spawnSync('sh', ['-c', 'command -v node'], { env: { PATH: emptyDir } }).status).not.toBe(0);
    const help = spawnSync(binary, ['--help'], { env, encoding: 'utf8' });
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toContain('tunnel');
    expect(help.stderr).toBe('');
    const tunnelHelp = spawnSync(binary, ['tunnel', '--help'], { env, encoding: 'utf8' });
    expect(tunnelHelp.stdout).toContain('-L, --local <spec>');
    const t = await startTunnel([...gatewayFlags(h, alice, tokenFile), '-L', '0:echo'], env, 1, [binary]);
    tunnels.push(t);
    const port = t.ready[0]?.port;
    expect(port, t.stderr()).toBeTypeOf('number');
    expect(await echoThrough(port as number, 'through the single binary')).toBe('through the single binary');
    const record = await h.waitForAudit((r) => r.route === 'echo' && r.event === 'tunnel.close' && r.bytesIn === 25);
    expect(record.route).toBe('echo');
    await new Promise((r) => setTimeout(r, 1000));
    console.log(`idle RSS, single binary: ${rssMiB(t.proc.pid)} MiB`);
    expect(t.stderr()).not.toMatch(/ExperimentalWarning|single executable/i);
    rmSync(emptyDir, { recursive: true, force: true });
  }, 60_000);
});
