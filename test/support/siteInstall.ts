// The documented site install (docs/admin/install.md) as a test runs it: the marked command blocks, the
// few explicit substitutions that move it into a temporary root, and the unit's commands as its user.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const installDoc = join(import.meta.dirname, '..', '..', 'docs', 'admin', 'install.md');

/** The blocks of the install page marked `<!-- test: NAME -->` on the line before their fence, by name, in page order. */
export function markedBlocks(markdown: string): Map<string, string> {
  const blocks = new Map<string, string>();
  for (const m of markdown.matchAll(/^<!-- test: ([\w.-]+) -->\n```\w+\n([\s\S]*?)^```$/gm)) {
    if (blocks.has(m[1] as string)) throw new Error(`two blocks named ${m[1]} in the install page`);
    blocks.set(m[1] as string, m[2] as string);
  }
  return blocks;
}

/** Where the test's site lives instead of the real /etc, /var, /run and /usr/local, and its ports. */
export interface TestSite {
  root: string;
  port: number;
  metricsPort: number;
}

/**
 * The only changes made to the page's commands and to the files they install: absolute paths under /etc,
 * /var, /run and /usr/local move under the site's root; the gateway's port 8443 (on 0.0.0.0: loopback
 * here) and the metrics port 9464 become free ports.
 */
export function onTestSite(text: string, site: TestSite): string {
  return text
    .replace(/(^|[\s'"=:])\/(etc|var|run|usr\/local)(?=[/\s]|$)/gm, `$1${site.root}/$2`)
    .replaceAll('0.0.0.0:8443', `127.0.0.1:${site.port}`)
    .replaceAll(':8443', `:${site.port}`)
    .replaceAll(':9464', `:${site.metricsPort}`);
}

/**
 * Run before every block. `sudo` is a function: the test runs as root (`sudo -u USER` becomes setpriv with
 * the user's groups and home) or, not root, only runs blocks that need no other user. logrotate keeps its
 * state under the site's root instead of /var/lib/logrotate.
 */
function prelude(site: TestSite): string {
  return `set -eo pipefail
sudo() {
  if [ "$1" != -u ]; then "$@"; return; fi
  local user=$2; shift 2
  [ "$(id -u)" = 0 ] || { echo "sudo -u $user: the test is not root" >&2; return 1; }
  HOME=$(getent passwd "$user" | cut -d: -f6) setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups -- "$@"
}
logrotate() { mkdir -p '${site.root}/var/lib/logrotate'; command logrotate --state '${site.root}/var/lib/logrotate/status' "$@"; }
`;
}

export interface BlockRun {
  code: number;
  stdout: string;
  stderr: string;
}

export interface BlockOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/** Runs a block with bash, as the page's reader would paste it, and waits for it to end. */
export function runBlock(site: TestSite, code: string, opts: BlockOptions): Promise<BlockRun> {
  return new Promise((resolve) => {
    execFile('bash', ['-c', prelude(site) + onTestSite(code, site)], { cwd: opts.cwd, env: opts.env, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** A block that runs until stopped (a service, a tunnel): its own process group, so stop() ends all of it. */
export interface Running {
  proc: ChildProcess;
  output: () => string;
  stop: () => void;
}

function track(proc: ChildProcess, group: boolean): Running {
  let output = '';
  proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  return {
    proc,
    output: () => output,
    stop: () => {
      if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return;
      process.kill(group ? -proc.pid : proc.pid, 'SIGTERM');
    },
  };
}

export function startBlock(site: TestSite, code: string, opts: BlockOptions): Running {
  return track(spawn('bash', ['-c', prelude(site) + onTestSite(code, site)], { cwd: opts.cwd, env: opts.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] }), true);
}

/** What the test takes from the installed unit: who runs it, where, its command lines and its view of homes. */
export interface Unit {
  user: string;
  group: string;
  workingDirectory: string;
  execStartPre: string[][];
  execStart: string[];
  protectHome: string;
}

export function parseUnit(text: string): Unit {
  const values = (key: string) => [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => (m[1] as string).trim());
  const one = (key: string) => {
    const all = values(key);
    if (all.length !== 1) throw new Error(`the unit has ${all.length} ${key}= lines, the test expects one`);
    return all[0] as string;
  };
  const argv = (line: string) => {
    // systemd's quoting and prefixes (-, @, +, !) are not used by the shipped unit: refuse rather than misread them.
    if (/["'\\$]|^[-@+!:]/.test(line)) throw new Error(`the test cannot split this command line as systemd would: ${line}`);
    return line.split(/\s+/);
  };
  return {
    user: one('User'),
    group: one('Group'),
    workingDirectory: one('WorkingDirectory'),
    execStartPre: values('ExecStartPre').map(argv),
    execStart: argv(one('ExecStart')),
    protectHome: values('ProtectHome').at(-1) ?? 'no',
  };
}

/** The directories ProtectHome=yes (or tmpfs) makes empty and inaccessible to the unit's processes. */
const HOMES = ['/home', '/root', '/run/user'];

/**
 * `argv` as the unit runs it: as its User= and Group= (setpriv, supplementary groups from /etc/group) and,
 * when the unit has ProtectHome=yes, in a mount namespace where the home directories are empty and
 * closed, as systemd makes them. Needs root. (The rest of the sandbox is not reproduced: the site's
 * temporary root lives in /tmp, which PrivateTmp= would hide.)
 */
export function asUnitUser(unit: Unit, argv: string[]): string[] {
  const asUser = ['setpriv', `--reuid=${unit.user}`, `--regid=${unit.group}`, '--init-groups', '--', ...argv];
  if (unit.protectHome !== 'yes' && unit.protectHome !== 'tmpfs') return asUser;
  const hide = HOMES.filter((dir) => existsSync(dir)).map((dir) => `mount -t tmpfs -o mode=000 tmpfs ${dir} && `);
  return ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', `${hide.join('')}exec "$@"`, 'sh', ...asUser];
}

/** The environment systemd gives a unit with User=: its default PATH (here with the site's and the tested Node's bin first). */
export function unitEnv(unit: Unit, pathFirst: string[]): NodeJS.ProcessEnv {
  const entry = readFileSync('/etc/passwd', 'utf8').split('\n').find((line) => line.startsWith(`${unit.user}:`))?.split(':');
  return {
    PATH: [...pathFirst, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'].join(':'),
    HOME: entry?.[5] ?? '/',
    USER: unit.user,
    LOGNAME: unit.user,
    SHELL: entry?.[6] ?? '/bin/sh',
  };
}

export function startUnitCommand(unit: Unit, argv: string[], env: NodeJS.ProcessEnv): Running {
  const [cmd, ...args] = asUnitUser(unit, argv);
  return track(spawn(cmd as string, args, { cwd: unit.workingDirectory, env, stdio: ['ignore', 'pipe', 'pipe'] }), false);
}

export function runUnitCommand(unit: Unit, argv: string[], env: NodeJS.ProcessEnv): Promise<BlockRun> {
  const [cmd, ...args] = asUnitUser(unit, argv);
  return new Promise((resolve) => {
    execFile(cmd as string, args, { cwd: unit.workingDirectory, env, timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** Polls until `ready` holds, or throws with `what` after `timeoutMs`. */
export async function waitFor(what: () => string, ready: () => boolean, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
