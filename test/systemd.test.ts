// The shipped systemd unit (systemd-analyze verify and security), and `gatehouse check` refusing a
// configuration whose audit log or UNIX listener the running user could not write.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayConfig, makeRootKey } from './support/gatewayHarness.ts';
import { which } from './support/localServices.ts';
import { makeTestPki } from './support/pki.ts';

const repoRoot = resolve(import.meta.dirname, '..');
const unitFile = join(repoRoot, 'systemd', 'gatehouse.service');
const analyze = which('systemd-analyze');
const temps: string[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-systemd-'));
  temps.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

/**
 * The unit as shipped, except that `gatehouse` (looked up in /usr/local/bin and /usr/bin once the package
 * is installed) names this checkout's executable, so verify can check the command exists.
 */
function unitForThisMachine(): string {
  const dir = tempDir();
  const file = join(dir, 'gatehouse.service');
  const text = readFileSync(unitFile, 'utf8');
  expect(text).toMatch(/^ExecStart=gatehouse serve --config \/etc\/gatehouse\/routes\.yaml$/m);
  writeFileSync(file, text.replace(/^(ExecStart(?:Pre)?=)gatehouse /gm, `$1${join(repoRoot, 'bin', 'gatehouse.js')} `));
  return file;
}

describe.skipIf(!analyze)(`systemd unit${analyze ? '' : ' (skipped: systemd-analyze not installed; Debian package systemd)'}`, () => {
  it('passes systemd-analyze verify', () => {
    const run = spawnSync(analyze as string, ['verify', unitForThisMachine()], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });

  it('keeps the systemd-analyze security exposure the install docs state', () => {
    const run = spawnSync(analyze as string, ['security', '--offline=yes', '--no-pager', unitForThisMachine()], { encoding: 'utf8' });
    const score = /Overall exposure level for gatehouse\.service: (\d+\.\d)/.exec(run.stdout)?.[1];
    expect(score, run.stdout + run.stderr).toBeDefined();
    const installDocs = readFileSync(join(repoRoot, 'docs', 'admin', 'install.md'), 'utf8');
    expect(installDocs).toContain(`exposure level ${score}`);
    expect(Number(score)).toBeLessThanOrEqual(2);
  });

  it('writes only its own directories: logs, state and runtime under /var/log, /var/lib and /run', () => {
    const text = readFileSync(unitFile, 'utf8');
    for (const line of ['ProtectSystem=strict', 'LogsDirectory=gatehouse', 'StateDirectory=gatehouse', 'RuntimeDirectory=gatehouse']) {
      expect(text).toContain(`\n${line}\n`);
    }
  });
});

describe('gatehouse check: every path the gateway writes is writable', () => {
  const asRoot = process.getuid?.() === 0;
  /** Who runs `check`: as root every permission check passes, so root runs it as nobody. */
  const runAs = asRoot ? { uid: 65534, gid: 65534 } : {};
  let site: string;

  beforeAll(async () => {
    site = tempDir();
    await makeTestPki(join(site, 'certs'));
    writeFileSync(join(site, 'certs', 'token-root.pub'), makeRootKey().publicKey + '\n');
    writeFileSync(join(site, 'certs', 'revoked.txt'), '');
    if (asRoot) {
      // Everything readable by nobody (a throwaway test PKI), nothing writable.
      const open = (path: string) => {
        chmodSync(path, statSync(path).isDirectory() ? 0o755 : 0o644);
        if (statSync(path).isDirectory()) for (const entry of readdirSync(path)) open(join(path, entry));
      };
      open(site);
      // A private key every user can read is refused by check itself: nobody gets it as its owner instead.
      for (const entry of readdirSync(join(site, 'certs')).filter((name) => name.endsWith('.key'))) {
        chownSync(join(site, 'certs', entry), 65534, 65534);
        chmodSync(join(site, 'certs', entry), 0o600);
      }
    }
  });

  function check(config: string): { status: number | null; stdout: string; stderr: string } {
    writeFileSync(join(site, 'routes.yaml'), config);
    chmodSync(join(site, 'routes.yaml'), 0o644);
    const run = spawnSync(process.execPath, [join(repoRoot, 'bin', 'gatehouse.js'), 'check', '--config', 'routes.yaml'], { cwd: site, encoding: 'utf8', ...runAs });
    return { status: run.status, stdout: run.stdout, stderr: run.stderr };
  }

  /** A directory the checking user cannot write; `writable` makes it writable for that user. */
  function closedDir(name: string): { path: string; open(): void } {
    const path = join(site, name);
    mkdirSync(path, { recursive: true, mode: 0o755 });
    chmodSync(path, asRoot ? 0o755 : 0o500);
    return {
      path,
      open: () => (asRoot ? chownSync(path, 65534, 65534) : chmodSync(path, 0o700)),
    };
  }

  const routes = '  - name: a\n    path: /a/\n    upstream: unix:run/a.sock\n    policy: |\n      allow if user($u);\n';

  it('reports an audit directory and a UNIX listener directory it cannot write, then OK once they are writable', () => {
    const audit = closedDir('audit');
    const sockets = closedDir('sockets');
    const config = gatewayConfig({ routes, extraListen: '  - unix: sockets/gatehouse.sock\n' });
    const refused = check(config);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/routes\.yaml:\d+:\d+: audit\.file: cannot create .*audit\/audit\.log: .*audit is not writable by uid \d+ \(permission denied\): the gateway would not start/);
    expect(refused.stderr).toMatch(/routes\.yaml:\d+:\d+: listen\[1\]\.unix: cannot create .*sockets\/gatehouse\.sock: .*sockets is not writable/);
    audit.open();
    sockets.open();
    mkdirSync(join(site, 'run'), { recursive: true, mode: 0o755 }); // the upstream's socket directory (check warns when it is missing)
    const accepted = check(config);
    expect(accepted.stderr).toBe('');
    expect(accepted.stdout).toMatch(/routes\.yaml: OK/);
    expect(accepted.status).toBe(0);
  });

  it('looks up to the nearest existing directory when the gateway would create the rest', () => {
    closedDir('closed');
    const refused = check(gatewayConfig({ routes, auditFile: 'closed/deeper/audit.log' }));
    expect(refused.stderr).toMatch(/audit\.file: cannot create .*closed\/deeper\/audit\.log: .*closed is not writable/);
    const open = closedDir('open');
    open.open();
    expect(check(gatewayConfig({ routes, auditFile: 'open/deeper/audit.log' })).status).toBe(0);
  });

  it('reports an existing audit file it cannot append to', () => {
    const dir = closedDir('logs');
    dir.open();
    writeFileSync(join(dir.path, 'audit.log'), '');
    chmodSync(join(dir.path, 'audit.log'), 0o444);
    const refused = check(gatewayConfig({ routes, auditFile: 'logs/audit.log' }));
    expect(refused.stderr).toMatch(/audit\.file: cannot write .*logs\/audit\.log: permission denied/);
  });
});
