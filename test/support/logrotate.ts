// Real logrotate for tests: the shipped systemd/gatehouse.logrotate adapted to a test gateway (its
// file, no owner change, a plain kill -USR1), and a runner (each test keeps its own state file).
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { repoRoot, type Harness } from './gatewayHarness.ts';
import { which } from './localServices.ts';

export const logrotate = which('logrotate') ?? which('/usr/sbin/logrotate');

/** The shipped config with the test's file, no owner change (the test is not root everywhere) and a plain kill. */
export function adaptedConfig(h: Harness): string {
  const shipped = readFileSync(join(repoRoot, 'systemd', 'gatehouse.logrotate'), 'utf8');
  expect(shipped).not.toMatch(/^\s*copytruncate/m);
  return shipped
    .replace(/^\/var\/log\/gatehouse\/audit\.log \{/m, `${h.auditFile} {`)
    .replace(/create 0640 \S+ \S+/, 'create 0640')
    .replace(/\/bin\/systemctl kill[^\n]*/, `kill -USR1 ${h.proc.pid}`);
}

export function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((ok) => execFile(cmd, args, (err, stdout, stderr) => ok({ code: err ? Number(err.code ?? 1) : 0, out: stdout + stderr })));
}

/** Writes the adapted config and forces `times` rotations, `gapMs` apart, with the test's own state file. */
export async function rotateRepeatedly(h: Harness, times: number, gapMs: number): Promise<void> {
  const conf = join(h.dir, 'logrotate.conf');
  writeFileSync(conf, adaptedConfig(h));
  for (let r = 0; r < times; r += 1) {
    await new Promise((resolve) => setTimeout(resolve, gapMs));
    const rotated = await run(logrotate ?? 'logrotate', ['-f', '-s', join(h.dir, 'logrotate.state'), conf]);
    expect(rotated.out).toBe('');
    expect(rotated.code).toBe(0);
  }
  await new Promise((resolve) => setTimeout(resolve, gapMs));
}
