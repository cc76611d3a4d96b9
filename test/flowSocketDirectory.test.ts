// The directory of a gateway's unixgram flow sockets: made afresh (no shared /tmp name another user can take
// first), private unless a route opts in, removed at exit; the sweep removes only leftovers it can prove dead.
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { flowSocketDirectory, sweepLeftovers } from '../src/upstream/flowSocketDirectory.ts';

const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;
const scratch = mkdtempSync(join(tmpdir(), 'gh-fsd-'));
const savedTmp = process.env.TMPDIR;
const savedRuntime = process.env.RUNTIME_DIRECTORY;

afterAll(() => {
  process.env.TMPDIR = savedTmp;
  if (savedTmp === undefined) delete process.env.TMPDIR;
  if (savedRuntime !== undefined) process.env.RUNTIME_DIRECTORY = savedRuntime;
  rmSync(scratch, { recursive: true, force: true });
});

const mode = (path: string) => lstatSync(path).mode & 0o777;

describe('the flow socket directory', () => {
  it.skipIf(!isRoot)('without RUNTIME_DIRECTORY, another user who made the old shared /tmp name first does not stop unixgram flows: a fresh directory of the gateway\'s, private by default (needs root)', async () => {
    const tmp = join(scratch, 'tmp');
    mkdirSync(tmp, { mode: 0o1777 });
    process.env.TMPDIR = tmp;
    delete process.env.RUNTIME_DIRECTORY;
    // What a squatter can create in a world-writable temporary directory before the gateway starts.
    const squatted = join(tmp, `gatehouse-${process.getuid?.() ?? 0}`);
    mkdirSync(squatted, { mode: 0o755 });
    chownSync(squatted, NOBODY, NOBODY);
    const own = await flowSocketDirectory();
    expect(own).toMatchObject({ ok: true, socketMode: 0o600 });
    if (!own.ok) return;
    const processDir = dirname(own.dir);
    expect(dirname(processDir)).toBe(tmp);
    expect(basename(processDir)).toMatch(new RegExp(`^gatehouse-unixgram-${process.pid}-[A-Za-z0-9]{6}$`));
    expect(lstatSync(processDir).uid).toBe(process.getuid?.());
    expect([mode(processDir), mode(own.dir)]).toEqual([0o711, 0o700]);
    const shared = await flowSocketDirectory('any-local-user');
    expect(shared).toMatchObject({ ok: true, dir: join(processDir, 'shared'), socketMode: 0o622 });
    expect(mode(join(processDir, 'shared'))).toBe(0o711);
  });

  it('is removed when the gateway process exits', async () => {
    const tmp = mkdtempSync(join(scratch, 'exit-'));
    const child = spawn(process.execPath, ['--input-type=module', '-e', `const { flowSocketDirectory } = await import(${JSON.stringify(join(import.meta.dirname, '../src/upstream/flowSocketDirectory.ts'))}); const d = await flowSocketDirectory(); console.log(JSON.stringify(d));`], {
      env: { ...process.env, TMPDIR: tmp, RUNTIME_DIRECTORY: '' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise((done) => child.once('exit', done));
    const made = JSON.parse(out) as { ok: boolean; dir: string };
    expect(made.ok).toBe(true);
    expect(dirname(dirname(made.dir))).toBe(tmp);
    expect(existsSync(dirname(made.dir))).toBe(false);
  });
});

describe('the leftover sweep in RUNTIME_DIRECTORY', () => {
  it('removes a directory only when its marker proves a dead process of this boot and PID namespace', async () => {
    const base = mkdtempSync(join(scratch, 'runtime-'));
    const scope = `${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()} ${readlinkSync('/proc/self/ns/pid')}`;
    const dead = spawnSync('true').pid as number;
    const live = spawn('sleep', ['30']);
    const leftover = (name: string, marker?: string) => {
      const dir = join(base, name);
      mkdirSync(dir);
      writeFileSync(join(dir, 'old.sock'), '');
      if (marker !== undefined) writeFileSync(join(dir, '.owner'), marker);
      return dir;
    };
    try {
      const deadHere = leftover(`gatehouse-unixgram-${dead}-aaaaaa`, `${scope} ${dead}\n`);
      // A gateway in another PID namespace sharing the base: its pid means nothing here.
      const otherNamespace = leftover(`gatehouse-unixgram-${dead}-bbbbbb`, `${scope.replace(/pid:\[\d+\]/, 'pid:[1]')} ${dead}\n`);
      const unmarked = leftover(`gatehouse-unixgram-${dead}-cccccc`);
      const running = leftover(`gatehouse-unixgram-${live.pid}-dddddd`, `${scope} ${live.pid}\n`);
      const notOurs = leftover(`unixgram-${dead}`);
      await sweepLeftovers(base);
      expect(existsSync(deadHere)).toBe(false);
      for (const kept of [otherNamespace, unmarked, running, notOurs]) expect(existsSync(kept), kept).toBe(true);
    } finally {
      live.kill();
    }
  });
});
