// Tampering with a real gateway's audit log by someone who can write the log directory but does not
// hold the signing key: every edit, cut, deletion, insertion or substitution makes `audit verify` fail.
import { generateKeyPairSync } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lineHash } from '../src/audit/auditChain.ts';
import { openAuditLog } from '../src/audit/auditLog.ts';
import { auditKeys, runCli, signedAudit, webUpstream } from './support/auditFixtures.ts';
import { inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';

const routes = `  - name: web
    path: /web/
    upstream: unix:run/web.sock
    policy: |
      allow if user($u);
`;
const ORIGIN_A = 'gw-a.example.org/audit';
const ORIGIN_B = 'gw-b.example.org/audit';

/** A gateway with checkpoints every 5 records: `requests` requests, a rotation (SIGUSR1) halfway, stopped. */
async function gatewayLog(origin: string, requests: number): Promise<Harness> {
  const h = await startHarness({ routes, extraTop: `${signedAudit(5)}  origin: ${origin}\n` });
  const web = await webUpstream(join(h.dir, 'run', 'web.sock'));
  const alice = await h.pki.client('alice');
  const token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
  const pool = new Pool(`https://localhost:${h.port}`, { connections: 1, connect: { ca: h.pki.caCert, cert: alice.cert, key: alice.key, servername: 'localhost' } });
  const send = async (from: number, to: number) => {
    for (let i = from; i < to; i += 1) {
      const res = await pool.request({ path: `/web/r${i}`, method: 'GET', headers: { authorization: `Bearer ${token}` } });
      await res.body.text();
      expect(res.statusCode).toBe(200);
    }
  };
  await send(0, requests / 2);
  await h.waitForAudit((r) => r.path === `/web/r${requests / 2 - 1}`);
  renameSync(h.auditFile, `${h.auditFile}.1`);
  h.proc.kill('SIGUSR1');
  // The reopen creates the new file; its checkpoint lands in the old one.
  for (let i = 0; i < 100 && !existsSync(h.auditFile); i += 1) await new Promise((r) => setTimeout(r, 20));
  await send(requests / 2, requests);
  await pool.close();
  expect(await h.stop()).toBe(0);
  web.close();
  return h;
}

const read = (file: string): string[] => readFileSync(file, 'utf8').trimEnd().split('\n');
const isCheckpoint = (line: string): boolean => line.includes('"event":"audit.checkpoint"');

describe('audit verify on a tampered gateway log', () => {
  let a: Harness;
  let b: Harness;
  let original: { older: string[]; newer: string[] };
  /** A copy of the last checkpoint kept elsewhere (a witness, syslog, a ticket). */
  let witnessCopy: string;
  let n = 0;

  /** The log as the attacker leaves it, in a directory of its own; the checkpoint file only if kept. */
  function tampered(change: (log: { older: string[]; newer: string[] }) => void, opts: { keepCheckpointFile?: boolean } = {}): string[] {
    const dir = join(a.dir, `tampered-${(n += 1)}`);
    mkdirSync(dir);
    const log = { older: [...original.older], newer: [...original.newer] };
    change(log);
    const files: string[] = [];
    if (log.older.length > 0) writeFileSync(join(dir, 'audit.log.1'), log.older.join('\n') + '\n'), files.push(join(dir, 'audit.log.1'));
    if (log.newer.length > 0) writeFileSync(join(dir, 'audit.log'), log.newer.join('\n') + '\n'), files.push(join(dir, 'audit.log'));
    if (opts.keepCheckpointFile) copyFileSync(join(a.dir, 'audit', 'audit.checkpoint'), join(dir, 'audit.checkpoint'));
    return files;
  }

  const verify = (files: string[], ...args: string[]) => runCli(['audit', 'verify', '--key', `${auditKeys}.pub`, ...args, ...files]);

  /** Every line from `from` on re-chained (prev recomputed), as an attacker without the key can. */
  function rechain(lines: string[], from: number, prevLine?: string): void {
    for (let i = from; i < lines.length; i += 1) {
      const r = JSON.parse(lines[i] ?? '') as { seq: number; prev: string };
      const before = i === 0 ? prevLine : lines[i - 1];
      if (before !== undefined) r.prev = lineHash(before);
      lines[i] = JSON.stringify(r);
    }
  }

  beforeAll(async () => {
    a = await gatewayLog(ORIGIN_A, 40);
    b = await gatewayLog(ORIGIN_B, 10);
    original = { older: read(`${a.auditFile}.1`), newer: read(a.auditFile) };
    witnessCopy = join(a.dir, 'witness-copy.checkpoint');
    copyFileSync(join(a.dir, 'audit', 'audit.checkpoint'), witnessCopy);
  }, 60_000);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('the untouched log verifies: origin, every checkpoint, the anchor reached, sealed at the end', async () => {
    const files = tampered(() => undefined, { keepCheckpointFile: true });
    const result = await verify(files, '--origin', ORIGIN_A, '--anchor', witnessCopy);
    expect(result.stdout).toContain(`origin: ${ORIGIN_A}`);
    expect(result.stdout).toMatch(/\d+ checkpoint\(s\), (\d+) signatures good/);
    expect(result.code).toBe(0);
  });

  it('the newest record changed', async () => {
    const files = tampered((log) => {
      const i = log.newer.findIndex((l) => l.includes('"event":"gateway.stop"'));
      log.newer[i] = (log.newer[i] ?? '').replace(/"pid":(\d+)/, '"pid":1$1');
    });
    const result = await verify(files);
    expect(result.stdout).toMatch(/^FAIL .*audit\.log:\d+ seq \d+: changed: /);
    expect(result.code).toBe(1);
  });

  it('the newest record, the last checkpoint itself, changed', async () => {
    const files = tampered((log) => {
      log.newer[log.newer.length - 1] = (log.newer.at(-1) ?? '').replace('"records":', '"forged":true,"records":');
    });
    const result = await verify(files);
    expect(result.stdout).toMatch(/^FAIL .*audit\.log:\d+ seq \d+: changed: the checkpoint carries fields no checkpoint has: forged/);
    expect(result.code).toBe(1);
  });

  it('a forged record appended with a correct prev', async () => {
    const files = tampered((log) => {
      const last = log.newer.at(-1) ?? '';
      const seq = (JSON.parse(last) as { seq: number }).seq + 1;
      log.newer.push(JSON.stringify({ seq, prev: lineHash(last), time: new Date().toISOString(), event: 'request', route: 'web', decision: 'allow', status: 200, path: '/web/forged' }));
    });
    const result = await verify(files);
    expect(result.stdout).toMatch(/^FAIL .*audit\.log:\d+ seq \d+: unsealed: 1 record\(s\) after the last checkpoint/);
    expect(result.code).toBe(1);
  });

  it('the records after the last periodic checkpoint removed: caught by the log\'s own checkpoint file, and by a copy kept elsewhere', async () => {
    const cut = (log: { newer: string[] }) => {
      const checkpoints = log.newer.flatMap((l, i) => (isCheckpoint(l) ? [i] : []));
      log.newer.splice((checkpoints.at(-2) ?? 0) + 1);
    };
    const beside = await verify(tampered(cut, { keepCheckpointFile: true }));
    expect(beside.stdout).toMatch(/^FAIL .*audit\.log:\d+ seq \d+: shortened: the files end at seq \d+, but the anchor .*audit\.checkpoint covers \d+ records/);
    expect(beside.code).toBe(1);
    const anchored = await verify(tampered(cut), '--anchor', witnessCopy);
    expect(anchored.stdout).toMatch(/: shortened: /);
    expect(anchored.code).toBe(1);
  });

  it('the log cut back past six signed checkpoints', async () => {
    const files = tampered((log) => {
      const checkpoints = log.older.flatMap((l, i) => (isCheckpoint(l) ? [i] : []));
      expect(checkpoints.length + log.newer.filter(isCheckpoint).length).toBeGreaterThan(7);
      log.older.splice((checkpoints[0] ?? 0) + 1);
      log.newer = [];
    });
    const result = await verify(files, '--anchor', witnessCopy);
    expect(result.stdout).toMatch(/^FAIL .*audit\.log\.1:\d+ seq \d+: shortened: /);
    expect(result.code).toBe(1);
  });

  it('the newest file deleted', async () => {
    const files = tampered((log) => (log.newer = []));
    const result = await verify(files, '--anchor', witnessCopy);
    expect(result.stdout).toMatch(/^FAIL .*audit\.log\.1:\d+ seq \d+: shortened: .*the log cut back, or its newest file deleted/);
    expect(result.code).toBe(1);
  });

  it('the oldest file deleted', async () => {
    const files = tampered((log) => (log.older = []));
    const result = await verify(files);
    expect(result.stdout).toMatch(/^FAIL .*audit\.log:1 seq \d+: missing-start: the first record is seq \d+: the files holding the log before it were deleted/);
    expect(result.code).toBe(1);
  });

  it('a record edited and the chain recomputed, with the later checkpoints dropped', async () => {
    const files = tampered((log) => {
      const i = log.older.findIndex((l) => l.includes('"path":"/web/r12"'));
      log.older[i] = (log.older[i] ?? '').replace('"status":200', '"status":404');
      const kept = [...log.older.slice(0, i + 1), ...log.older.slice(i + 1).filter((l) => !isCheckpoint(l))];
      log.older = kept;
      log.newer = log.newer.filter((l) => !isCheckpoint(l));
      const all = [...log.older, ...log.newer];
      // Renumber and re-chain from the edit on: a consistent chain, no signature after the edit.
      all.forEach((l, k) => (all[k] = JSON.stringify({ ...(JSON.parse(l) as object), seq: k + 1 })));
      rechain(all, 1);
      log.older = all.slice(0, log.older.length);
      log.newer = all.slice(log.older.length);
    });
    const result = await verify(files);
    expect(result.stdout).toMatch(/^FAIL .*audit\.log:\d+ seq \d+: unsealed: \d+ record\(s\) after the last checkpoint \(seq \d+\): not covered by any signature/);
    expect(result.code).toBe(1);
  });

  it('the whole history rewritten (alice -> mallory) with every checkpoint dropped', async () => {
    const files = tampered((log) => {
      const all = [...log.older, ...log.newer].filter((l) => !isCheckpoint(l)).map((l) => l.replaceAll('alice', 'mallory'));
      all.forEach((l, k) => (all[k] = JSON.stringify({ ...(JSON.parse(l) as object), seq: k + 1 })));
      rechain(all, 1);
      log.older = all.slice(0, 20);
      log.newer = all.slice(20);
    });
    const result = await verify(files);
    expect(result.stdout).toMatch(/^FAIL .*audit\.log:\d+ seq \d+: unsealed: \d+ record\(s\) after the last checkpoint \(none in the files\)/);
    expect(result.code).toBe(1);
  });

  it('an unchained line put before seq 1', async () => {
    const files = tampered((log) => log.older.unshift(JSON.stringify({ time: new Date(0).toISOString(), event: 'request', route: 'web', decision: 'allow', status: 200, path: '/web/planted' })));
    const result = await verify(files);
    expect(result.stdout).toMatch(/^FAIL .*audit\.log\.1:1: unchained: /);
    expect(result.code).toBe(1);
  });

  it("another instance's log signed with the same key", async () => {
    const other = [`${b.auditFile}.1`, b.auditFile];
    const byOrigin = await verify(other, '--origin', ORIGIN_A);
    expect(byOrigin.stdout).toMatch(new RegExp(`^FAIL .*audit\\.log\\.1:\\d+ seq \\d+: origin-mismatch: the checkpoint names origin ${ORIGIN_B}, not ${ORIGIN_A}`));
    expect(byOrigin.code).toBe(1);
    const byAnchor = await verify(other, '--anchor', witnessCopy);
    expect(byAnchor.stdout).toMatch(/: origin-mismatch: /);
    expect(byAnchor.code).toBe(1);
  });

  it("the whole log rewritten and re-signed with an attacker's key, given as the only key: the anchor refuses it", async () => {
    const attacker = join(a.dir, 'attacker');
    const pair = generateKeyPairSync('ed25519');
    writeFileSync(`${attacker}.key`, pair.privateKey.export({ format: 'pem', type: 'pkcs8' }));
    writeFileSync(`${attacker}.pub`, pair.publicKey.export({ format: 'pem', type: 'spki' }));
    const forged = join(a.dir, 'forged', 'audit.log');
    const log = openAuditLog({ file: forged, origin: ORIGIN_A, signingKey: `${attacker}.key`, checkpoint: { records: 5, seconds: 3600 } });
    for (let i = 0; i < 60; i += 1) log.write({ event: 'request', route: 'web', decision: 'allow', status: 200, path: `/web/f${i}` });
    await log.close();
    const alone = await runCli(['audit', 'verify', '--key', `${attacker}.pub`, '--origin', ORIGIN_A, '--anchor', witnessCopy, forged]);
    expect(alone.stderr).toContain('not signed by any given key');
    expect(alone.code).not.toBe(0);
    const both = await runCli(['audit', 'verify', '--key', `${attacker}.pub`, '--key', `${auditKeys}.pub`, '--anchor', witnessCopy, forged]);
    expect(both.stdout).toMatch(/: anchor-mismatch: the log up to this record \(size \d+\) hashes to .* but the anchor .* signs/);
    expect(both.code).toBe(1);
  });

  it('audit query --verify answers only over a log that verifies; query refuses overlapping inputs', async () => {
    const good = tampered(() => undefined);
    const answered = await runCli(['audit', 'query', '--verify', '--key', `${auditKeys}.pub`, '--origin', ORIGIN_A, '--event', 'request', '--format', 'json', ...good]);
    expect(answered.stdout.trim().split('\n')).toHaveLength(40);
    expect(answered.code).toBe(0);
    const planted = tampered((log) => log.older.unshift(JSON.stringify({ time: new Date(0).toISOString(), event: 'request', route: 'web', path: '/web/planted' })));
    const refused = await runCli(['audit', 'query', '--verify', '--key', `${auditKeys}.pub`, '--format', 'json', ...planted]);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/the files do not verify: no answer\nFAIL .*audit\.log\.1:1: unchained/);
    expect(refused.code).toBe(1);
    writeFileSync(`${good[0]}.gz`, gzipSync(readFileSync(good[0] ?? '')));
    const doubled = await runCli(['audit', 'query', '--format', 'summary', ...good, `${good[0]}.gz`]);
    expect(doubled.stderr).toContain('hold the same records');
    expect(doubled.code).toBe(2);
  });

  it('refuses overlapping inputs (a rotation and its compressed copy)', async () => {
    const files = tampered(() => undefined);
    const result = await verify([...files, `${files[0]}.gz`]);
    expect(result.stderr).toContain('hold the same records');
    expect(result.code).toBe(2);
  });
});
