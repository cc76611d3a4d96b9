// The published package as a site installs it: `npm pack` once, then, under the oldest Node that `engines`
// allows and under the pinned Node 24, every marked command of docs/admin/install.md, in the page's order.
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, which } from './support/localServices.ts';
import { installDoc, markedBlocks, onTestSite, parseUnit, runBlock, runUnitCommand, startBlock, startUnitCommand, unitEnv, waitFor, type BlockRun, type Running, type TestSite, type Unit } from './support/siteInstall.ts';

const repoRoot = resolve(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { engines: { node: string } };
/** PATH without npm's script directories (node_modules/.bin), where the pinned Node lives. */
const systemPath = (process.env.PATH ?? '').split(delimiter).filter((dir) => !dir.includes('node_modules')).join(delimiter);
const onSystemPath = (bin: string) => systemPath.split(delimiter).map((dir) => join(dir, bin)).find((file) => existsSync(file));
const systemNpm = onSystemPath('npm');
const pinnedNode = join(repoRoot, 'node_modules', 'node', 'bin', 'node');
const versionOf = (node: string | undefined) => (node ? spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim() : '');
const engineFloor = /^>=(\d+)\.(\d+)$/.exec(pkg.engines.node);
const nodes = [
  { label: `the oldest Node engines allows (${pkg.engines.node}): the system's`, node: onSystemPath('node'), oldest: true },
  { label: 'the pinned Node 24', node: existsSync(pinnedNode) ? realpathSync(pinnedNode) : undefined, oldest: false },
].map((n) => ({ ...n, version: versionOf(n.node) }));
const missing = !systemNpm ? 'no npm on PATH outside node_modules' : !which('curl') ? 'curl not installed' : '';
const asRoot = process.getuid?.() === 0;
const siteTools = ['setpriv', 'unshare', 'systemd-tmpfiles', 'logrotate', 'getent', 'useradd'].filter((tool) => !which(tool) && !which(`/usr/sbin/${tool}`));
const notSite = !asRoot ? 'not root: the site install creates the service user' : siteTools.length ? `${siteTools.join(', ')} not installed` : '';
const blocks = markedBlocks(readFileSync(installDoc, 'utf8'));
/** Whether this file made the `gatehouse` user (then it removes it at the end). */
const serviceUserExisted = spawnSync('getent', ['passwd', 'gatehouse']).status === 0;

function block(name: string): string {
  const code = blocks.get(name);
  if (code === undefined) throw new Error(`docs/admin/install.md has no block marked <!-- test: ${name} -->`);
  return code;
}

function run(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<BlockRun> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: opts.cwd, env: opts.env, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

let packDir: string;
let tarball: string;

beforeAll(async () => {
  if (missing) return;
  packDir = mkdtempSync(join(tmpdir(), 'gatehouse-pack-'));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) && k !== 'NODE_OPTIONS'));
  const pack = await run(systemNpm as string, ['pack', '--pack-destination', packDir], { cwd: repoRoot, env, timeoutMs: 180_000 });
  expect(pack.code, pack.stderr).toBe(0);
  tarball = join(packDir, readdirSync(packDir).find((f) => /^gatehouse-.*\.tgz$/.test(f)) as string);
}, 200_000);

afterAll(() => {
  if (packDir) rmSync(packDir, { recursive: true, force: true });
  if (asRoot && !serviceUserExisted && spawnSync('getent', ['passwd', 'gatehouse']).status === 0) spawnSync('userdel', ['gatehouse']);
});

it('every block the install page marks for the test is one the test runs', () => {
  const ran = ['package', 'package-files', 'user', 'certificates', 'keys', 'service-directory', 'hello-service', 'routes', 'routes.yaml', 'check', 'unit', 'logrotate', 'start', 'curl', 'tunnel', 'through-the-tunnel', 'metrics', 'rotate', 'verify'];
  expect([...blocks.keys()]).toEqual(ran);
  // The page shows the configuration it installs.
  const shipped = readFileSync(join(repoRoot, 'systemd', 'routes.yaml'), 'utf8').replace(/^(#.*\n)+/, '');
  expect(block('routes.yaml')).toBe(shipped);
});

describe.each(nodes.map((n) => [`${n.label}, ${n.version || 'not found'}`, n] as const))('site install under %s', (_title, { node, version, oldest }) => {
  const skip = missing || (!node ? 'Node not found' : '');
  const it_ = it.skipIf(skip !== '');
  let site: TestSite;
  let env: NodeJS.ProcessEnv;
  let admin: string;
  let gateway: Running | undefined;
  const running: Running[] = [];
  const doc = (name: string, timeoutMs?: number) => runBlock(site, block(name), { cwd: admin, env, ...(timeoutMs !== undefined && { timeoutMs }) });
  const ok = async (name: string, timeoutMs?: number) => {
    const r = await doc(name, timeoutMs);
    expect(r.code, `block ${name}:\n${r.stdout}${r.stderr}`).toBe(0);
    return r;
  };
  const inRoot = (path: string) => join(site.root, path);

  beforeAll(async () => {
    if (skip) return;
    const root = mkdtempSync(join(tmpdir(), 'gatehouse-site-'));
    chmodSync(root, 0o755); // the service user walks through it to /etc, /var and /run
    site = { root, port: await freePort(), metricsPort: await freePort() };
    // The directories a Debian system has, which the page's commands write into.
    for (const dir of ['etc/systemd/system', 'etc/logrotate.d', 'etc/tmpfiles.d', 'var/log', 'var/lib', 'run', 'usr/local']) mkdirSync(inRoot(dir), { recursive: true });
    const home = join(root, 'home-of-admin');
    admin = join(home, 'gatehouse-admin');
    mkdirSync(admin, { recursive: true });
    copyFileSync(tarball, join(admin, tarball.split('/').pop() as string));
    // Only the tested Node and npm: no node_modules/.bin, no npm_* variables from our own script.
    env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) && k !== 'NODE_OPTIONS'));
    env.PATH = [inRoot('usr/local/bin'), dirname(node as string), systemPath].join(delimiter);
    env.HOME = home;
    env.npm_config_cache = join(process.env.HOME ?? root, '.npm'); // reuse the download cache
    env.npm_config_prefer_offline = 'true';
    env.npm_config_audit = 'false';
    env.npm_config_fund = 'false';
    await ok('package', 180_000);
    // The pinned development Node is not part of an install.
    expect(existsSync(inRoot('usr/local/lib/node_modules/gatehouse/node_modules/node'))).toBe(false);
  }, 200_000);

  afterAll(async () => {
    for (const r of running) r.stop();
    await Promise.all(running.map((r) => (r.proc.exitCode === null && r.proc.signalCode === null ? new Promise((done) => r.proc.once('exit', done)) : undefined)));
    if (site) rmSync(site.root, { recursive: true, force: true });
  });

  it_(`runs gatehouse from PATH on this Node with no warning, and ships the unit, logrotate and deploy/${skip ? ` (skipped: ${skip})` : ''}`, async () => {
    expect((await run('node', ['--version'], { cwd: admin, env })).stdout.trim()).toBe(version);
    if (oldest) expect(version, `engines ${pkg.engines.node}: the oldest Node tested must be that major`).toMatch(new RegExp(`^v${engineFloor?.[1]}\\.`));
    const help = await run('gatehouse', ['--help'], { cwd: admin, env });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: gatehouse');
    expect(help.stderr).toBe('');
    const files = await ok('package-files');
    for (const file of ['gatehouse.service', 'gatehouse.logrotate', 'routes.yaml', 'gatehouse.json', 'gatehouse-alerts.yml']) expect(files.stdout).toContain(file);
  });

  describe.skipIf(skip !== '' || notSite !== '')(`as the service user, with the unit's command lines${notSite ? ` (skipped: ${notSite})` : ''}`, () => {
    let unit: Unit;
    const unitProcessEnv = () => unitEnv(unit, [inRoot('usr/local/bin'), dirname(node as string)]);

    it('user, certificates, keys, a service the unit can see, routes.yaml, check as the service user, unit and logrotate installed', async () => {
      for (const name of ['user', 'certificates', 'keys', 'service-directory']) await ok(name);
      const hello = startBlock(site, block('hello-service'), { cwd: admin, env });
      running.push(hello);
      // The socket the shipped configuration's first route names, on the test's site.
      const upstream = /^\s+upstream: unix:(\S+)$/m.exec(readFileSync(join(repoRoot, 'systemd', 'routes.yaml'), 'utf8'))?.[1] as string;
      const socket = onTestSite(upstream, site);
      await waitFor(() => `the hello service's socket:\n${hello.output()}`, () => existsSync(socket) && (statSync(socket).mode & 0o777) === 0o660);
      await ok('routes');
      // The installed configuration, moved onto the test's site like the page's commands.
      const config = inRoot('etc/gatehouse/routes.yaml');
      writeFileSync(config, onTestSite(readFileSync(config, 'utf8'), site));
      const check = await ok('check');
      expect(check.stdout).toMatch(/\bOK\b/);
      expect(check.stderr).not.toMatch(/warning/i);
      await ok('unit');
      const installed = inRoot('etc/systemd/system/gatehouse.service');
      writeFileSync(installed, onTestSite(readFileSync(installed, 'utf8'), site));
      unit = parseUnit(readFileSync(installed, 'utf8'));
      await ok('logrotate');
    }, 120_000);

    it.skipIf(!which('systemd-analyze'))(`the installed unit passes systemd-analyze verify${which('systemd-analyze') ? '' : ' (skipped: systemd-analyze not installed)'}`, () => {
      // verify looks `gatehouse` up in /usr/local/bin and /usr/bin: name the site's, as systemd would find it there.
      const installed = readFileSync(inRoot('etc/systemd/system/gatehouse.service'), 'utf8');
      const forVerify = join(site.root, 'verify', 'gatehouse.service');
      mkdirSync(dirname(forVerify));
      writeFileSync(forVerify, installed.replace(/^(ExecStart(?:Pre)?=)gatehouse /gm, `$1${inRoot('usr/local/bin/gatehouse')} `));
      const verify = spawnSync('systemd-analyze', ['verify', forVerify], { encoding: 'utf8' });
      expect(verify.stderr).toBe('');
      expect(verify.status).toBe(0);
    });

    it("started with the unit's ExecStartPre and ExecStart as its user, behind ProtectHome: curl, a tunnel, /readyz and /metrics", async () => {
      // `systemctl enable --now gatehouse` is what the test does here, with the installed unit's own lines.
      expect(block('start')).toContain('systemctl enable --now gatehouse');
      expect(unit.user).toBe('gatehouse');
      for (const pre of unit.execStartPre) {
        const r = await runUnitCommand(unit, pre, unitProcessEnv());
        expect(r.code, `ExecStartPre=${pre.join(' ')}:\n${r.stdout}${r.stderr}`).toBe(0);
      }
      gateway = startUnitCommand(unit, unit.execStart, unitProcessEnv());
      running.push(gateway);
      const g = gateway;
      await waitFor(() => `the gateway to listen:\n${g.output()}`, () => g.output().includes(`listening on https://127.0.0.1:${site.port}`) || g.proc.exitCode !== null, 30_000);
      expect(g.proc.exitCode, g.output()).toBeNull();
      // It runs as the unit's user, and sees the home directories empty and closed, as under systemd.
      const status = readFileSync(`/proc/${g.proc.pid}/status`, 'utf8');
      expect(/^Uid:\s+(\d+)/m.exec(status)?.[1]).toBe(spawnSync('id', ['-u', unit.user], { encoding: 'utf8' }).stdout.trim());
      if (unit.protectHome === 'yes') expect(readFileSync(`/proc/${g.proc.pid}/mountinfo`, 'utf8')).toMatch(/ \/home .* - tmpfs /);

      const curl = await ok('curl');
      expect(curl.stdout).toBe('hello alice\n');
      const tunnel = startBlock(site, block('tunnel'), { cwd: admin, env });
      running.push(tunnel);
      await waitFor(() => `the tunnel's socket:\n${tunnel.output()}`, () => existsSync(join(env.HOME as string, '.gatehouse', 'hello.sock')));
      const through = await ok('through-the-tunnel');
      expect(through.stdout).toBe('hello through a tunnel\n');
      tunnel.stop();

      const metrics = await ok('metrics');
      expect(metrics.stdout).toMatch(/^\{"ready":true/);
      expect(metrics.stdout).toMatch(/^gatehouse_audit_healthy 1$/m);
      expect(metrics.stdout).toMatch(/^gatehouse_tls_expiry_seconds\{what="server_certificate"\} \d{6,}/m);
      // Nothing but the gateway's own lines on stderr: no ExperimentalWarning, no biscuit-wasm banner.
      expect(g.output()).not.toMatch(/warning|biscuit-wasm loading/i);
    }, 90_000);

    it('logrotate rotates the live audit log and audit verify checks every file', async () => {
      expect(gateway?.proc.pid).toBeDefined();
      // The shipped postrotate signals the unit through systemd; here the same signal goes to the process.
      const rotation = inRoot('etc/logrotate.d/gatehouse');
      const shipped = readFileSync(rotation, 'utf8');
      const viaSystemd = '/bin/systemctl kill --signal=SIGUSR1 --kill-whom=main gatehouse.service';
      expect(shipped).toContain(viaSystemd);
      writeFileSync(rotation, onTestSite(shipped, site).replace(viaSystemd, `kill -USR1 ${gateway?.proc.pid}`));
      const rotate = await ok('rotate');
      expect(rotate.stdout + rotate.stderr).toBe('');
      const rotated = inRoot('var/log/gatehouse/audit.log.1');
      const lastEvent = () => (readFileSync(rotated, 'utf8').trim().split('\n').pop() ?? '').match(/"event":"([^"]+)"/)?.[1];
      // The reopen ends the renamed file with a signed checkpoint.
      await waitFor(() => `a checkpoint at the end of ${rotated} (last: ${lastEvent()})`, () => lastEvent() === 'audit.checkpoint');
      expect(statSync(inRoot('var/log/gatehouse/audit.log')).uid).toBe(Number(spawnSync('id', ['-u', 'gatehouse'], { encoding: 'utf8' }).stdout));
      const verify = await ok('verify');
      expect(verify.stdout).toMatch(/^OK 2 file\(s\), \d+ records/m); // audit.log.1 and audit.log, by the page's glob
    }, 60_000);
  });
});
