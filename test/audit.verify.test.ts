// The audit chain on real files: a writer that continues the chain across restarts and reopen,
// and `audit verify` pinpointing each kind of tampering (changed, deleted, inserted, swapped,
// re-signed with another key, a rotated file missing), plus gzip rotations.
import { generateKeyPairSync } from 'node:crypto';
import { appendFileSync, copyFileSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { GENESIS_HASH, lineHash } from '../src/audit/auditChain.ts';
import { readAuditPublicKey, writeAuditKeyPair } from '../src/audit/auditCheckpoint.ts';
import { noteKeyHash, signatureLine } from '../src/audit/signedNote.ts';
import { storedHashCount } from '../src/audit/auditHashStore.ts';
import { proveRecordIndexed } from '../src/audit/auditProveIndexed.ts';
import { openAuditLog } from '../src/audit/auditLog.ts';
import { verifyAuditFiles, type VerifyReport } from '../src/audit/auditVerify.ts';
import { runGatehouse } from './support/gatewayHarness.ts';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-audit-verify-'));
const keys = join(dir, 'audit-signing');
const log = join(dir, 'audit.log');
let original: string[];

async function writeRecords(file: string, from: number, count: number): Promise<void> {
  const audit = openAuditLog({ file, signingKey: `${keys}.key`, checkpoint: { records: 10, seconds: 3600 } });
  for (let i = 0; i < count; i += 1) audit.write({ event: 'request', route: 'demo', status: 200, decision: 'allow', path: `/r/${from + i}` });
  await audit.close();
}

function publicKey() {
  const read = readAuditPublicKey(`${keys}.pub`);
  if (!read.ok) throw new Error(read.error.message);
  return read.value;
}

/** Writes `lines` to a fresh file and verifies it with the real key. */
async function verifyLines(name: string, lines: string[]): Promise<VerifyReport> {
  const file = join(dir, name);
  writeFileSync(file, lines.join('\n') + '\n');
  return verifyAuditFiles([file], { keys: [{ publicKey: publicKey(), label: 'audit-signing.pub' }] });
}

const runCli = (args: string[]) => runGatehouse(args);

beforeAll(async () => {
  const keyPair = writeAuditKeyPair(keys, false);
  expect(keyPair.ok).toBe(true);
  // Two runs on the same file: the second continues the chain from the last line of the first.
  await writeRecords(log, 0, 25);
  await writeRecords(log, 25, 15);
  original = readFileSync(log, 'utf8').trimEnd().split('\n');
});

describe('the written chain', () => {
  it('numbers records 1..n across restarts, links each to the hash of the previous line, checkpoints every 10 records and at close', () => {
    const records = original.map((l) => JSON.parse(l) as { seq: number; prev: string; event: string; checkpoint?: { seq: number; hash: string; note?: string } });
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
    expect(records[0]?.prev).toBe(GENESIS_HASH);
    for (let i = 1; i < records.length; i += 1) expect(records[i]?.prev).toBe(lineHash(original[i - 1] ?? ''));
    // 25 records: checkpoints after 10, 20 and at close (5 more); 15 more: after 10 and at close (5).
    const checkpoints = records.filter((r) => r.event === 'audit.checkpoint');
    expect(checkpoints).toHaveLength(5);
    expect(records.filter((r) => r.event === 'request')).toHaveLength(40);
    expect(records.at(-1)?.event).toBe('audit.checkpoint');
    // A C2SP checkpoint note: origin, tree size (the records before it), root; a signature line.
    expect(checkpoints[0]?.checkpoint?.note).toMatch(/^\S+\n10\n[A-Za-z0-9+/]{43}=\n\n\u2014 \S+ [A-Za-z0-9+/=]{92}\n$/);
  });

  it('verifies: counts, range, signatures', async () => {
    const report = await verifyAuditFiles([log], { keys: [{ publicKey: publicKey(), label: 'audit-signing.pub' }] });
    expect(report.failure).toBeUndefined();
    expect(report).toMatchObject({ records: 45, checkpoints: 5, signaturesChecked: 5, firstSeq: 1, lastSeq: 45, startsChain: true, afterLastCheckpoint: 0 });
  });
});

describe('a restart on a file rotated away', () => {
  it('continues the chain from the head saved at close, so the new file links to the old one', async () => {
    const file = join(dir, 'restart', 'audit.log');
    await writeRecords(file, 0, 5);
    renameSync(file, `${file}.1`);
    await writeRecords(file, 5, 5);
    const first = JSON.parse(readFileSync(file, 'utf8').split('\n')[0] ?? '') as { seq: number; prev: string };
    const old = readFileSync(`${file}.1`, 'utf8').trimEnd().split('\n');
    expect(first).toMatchObject({ seq: old.length + 1, prev: lineHash(old.at(-1) ?? '') });
    const report = await verifyAuditFiles([`${file}.1`, file], { keys: [{ publicKey: publicKey(), label: 'audit-signing.pub' }] });
    expect(report.failure).toBeUndefined();
    expect(report.records).toBe(12);
  });
});

describe('a crash in the middle of a line', () => {
  it('continues the chain from the last complete line on a line of its own; verify names the torn line', async () => {
    const file = join(dir, 'torn', 'audit.log');
    await writeRecords(file, 0, 4);
    appendFileSync(file, '{"seq":6,"prev":"sha256:ab');
    await writeRecords(file, 4, 3);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(lines[5]).toBe('{"seq":6,"prev":"sha256:ab');
    expect(JSON.parse(lines[6] ?? '')).toMatchObject({ seq: 6, prev: lineHash(lines[4] ?? '') });
    const report = await verifyAuditFiles([file], { keys: [{ publicKey: publicKey(), label: 'audit-signing.pub' }] });
    expect(report.failure).toMatchObject({ problem: 'changed', line: 6, message: 'not a JSON record' });
  });
});

describe('a crash that tore a line after its prev', () => {
  it('continues after two crashes: the torn line is not taken for a record', async () => {
    const file = join(dir, 'torn-long', 'audit.log');
    await writeRecords(file, 0, 4);
    const last = readFileSync(file, 'utf8').trimEnd().split('\n').at(-1) ?? '';
    appendFileSync(file, `{"seq":6,"prev":"${lineHash(last)}","time":"2026-`);
    const head = join(dir, 'torn-long', '.audit.log.head');
    const savedBeforeCrash = readFileSync(head);
    await writeRecords(file, 4, 3);
    // A second crash before the state was saved again: the next start reads back from the old state.
    writeFileSync(head, savedBeforeCrash);
    await writeRecords(file, 7, 3);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(lines.filter((l) => l.includes('"event":"request"'))).toHaveLength(10);
    expect(JSON.parse(lines[6] ?? '')).toMatchObject({ seq: 6, prev: lineHash(lines[4] ?? '') });
  });
});

describe('audit verify pinpoints tampering', () => {
  it('one byte changed', async () => {
    const lines = [...original];
    lines[11] = (lines[11] ?? '').replace('"status":200', '"status":201');
    const report = await verifyLines('changed.log', lines);
    expect(report.failure).toMatchObject({ problem: 'changed', line: 12, seq: 12 });
  });

  it('a record deleted', async () => {
    const lines = original.filter((_, i) => i !== 14);
    const report = await verifyLines('deleted.log', lines);
    expect(report.failure).toMatchObject({ problem: 'missing', line: 15, seq: 16 });
    expect(report.failure?.message).toContain('seq 15 is missing');
  });

  it('a record inserted with a plausible seq and a correct prev', async () => {
    const lines = [...original];
    const forged = JSON.stringify({ seq: 8, prev: lineHash(lines[6] ?? ''), time: new Date().toISOString(), event: 'request', route: 'demo', decision: 'allow', status: 200 });
    lines.splice(7, 0, forged);
    const report = await verifyLines('inserted.log', lines);
    expect(report.failure).toMatchObject({ problem: 'inserted', line: 8, seq: 8 });
  });

  it('a copy of an earlier record inserted', async () => {
    const lines = [...original];
    lines.splice(20, 0, lines[2] ?? '');
    const report = await verifyLines('duplicated.log', lines);
    expect(report.failure).toMatchObject({ problem: 'inserted', line: 21, seq: 3 });
  });

  it('two records swapped', async () => {
    const lines = [...original];
    [lines[16], lines[17]] = [lines[17] ?? '', lines[16] ?? ''];
    const report = await verifyLines('swapped.log', lines);
    expect(report.failure).toMatchObject({ problem: 'reordered', line: 17, seq: 18 });
  });

  it('a checkpoint re-signed with another key', async () => {
    const other = generateKeyPairSync('ed25519');
    const lines = [...original];
    const cp = JSON.parse(lines[10] ?? '') as { seq: number; time: string; event: string; checkpoint: { note: string } };
    expect(cp.event).toBe('audit.checkpoint');
    const body = cp.checkpoint.note.slice(0, cp.checkpoint.note.indexOf('\n\n') + 1);
    const origin = body.split('\n')[0] ?? '';
    cp.checkpoint.note = `${body}\n${signatureLine(body, origin, other.privateKey)}\n`;
    lines[10] = JSON.stringify(cp);
    const report = await verifyLines('resigned.log', lines);
    expect(report.failure).toMatchObject({ problem: 'bad-signature', line: 11, seq: 11 });
    expect(report.failure?.message).toContain(`signed by ${origin}+${noteKeyHash(origin, other.publicKey).toString('hex')}`);
  });

  it('a rewritten stretch with every hash recomputed is caught at the next checkpoint: the Merkle root differs', async () => {
    const lines = [...original];
    lines[4] = (lines[4] ?? '').replace('"status":200', '"status":404');
    for (let i = 5; i <= 10; i += 1) {
      const r = JSON.parse(lines[i] ?? '') as { prev: string; checkpoint?: { hash: string } };
      r.prev = lineHash(lines[i - 1] ?? '');
      if (r.checkpoint) r.checkpoint.hash = r.prev;
      lines[i] = JSON.stringify(r);
    }
    const report = await verifyLines('rewritten.log', lines);
    expect(report.failure).toMatchObject({ problem: 'changed', line: 11, seq: 11 });
    expect(report.failure?.message).toContain('hash to Merkle root');
  });
});

describe('rotated files', () => {
  const rotated = join(dir, 'rotated');
  const files = [`${rotated}/audit.log.2.gz`, `${rotated}/audit.log.1`, `${rotated}/audit.log`];

  beforeAll(async () => {
    // The writer stays open while the file is renamed under it and reopened, as logrotate does.
    const file = `${rotated}/audit.log`;
    const audit = openAuditLog({ file, signingKey: `${keys}.key`, checkpoint: { records: 1000, seconds: 3600 } });
    const rotateTo = [`${rotated}/audit.log.2`, `${rotated}/audit.log.1`];
    for (let round = 0; round < 3; round += 1) {
      for (let i = 0; i < 20; i += 1) audit.write({ event: 'request', route: 'demo', status: 200, detail: { round, i } });
      const target = rotateTo[round];
      if (target) {
        // The file opens asynchronously; rename it once it exists, with records still in flight.
        while (!existsSync(file)) await new Promise((r) => setTimeout(r, 5));
        renameSync(file, target);
        audit.reopen();
      }
    }
    await audit.close();
    writeFileSync(files[0] ?? '', gzipSync(readFileSync(`${rotated}/audit.log.2`)));
  }, 20_000);

  it('verifies across the files, in any order given, .gz included; a reopen leaves no record lost or duplicated', async () => {
    const shuffled = [files[2], files[0], files[1]].map(String);
    const result = await runCli(['audit', 'verify', '--key', `${keys}.pub`, ...shuffled]);
    expect(result.stdout).toMatch(/^OK 3 file\(s\), 63 records, seq 1\.\.63/);
    expect(result.code).toBe(0);
    // Every file holds records: the reopen really moved the writer to the new file.
    for (const f of files.slice(1)) expect(readFileSync(f, 'utf8').trimEnd().split('\n').length).toBeGreaterThan(0);
  });

  it('--partial verifies the newest file alone from its first checkpoint on; without it the missing start is named', async () => {
    const strict = await runCli(['audit', 'verify', '--key', `${keys}.pub`, files[2] ?? '']);
    expect(strict.stdout).toMatch(/: missing-start: the first record is seq \d+/);
    expect(strict.code).toBe(1);
    const partial = await runCli(['audit', 'verify', '--key', `${keys}.pub`, '--partial', files[2] ?? '']);
    expect(partial.stdout).toMatch(/^OK 1 file\(s\)/);
    expect(partial.stdout).toMatch(/\(--partial\): \d+ record\(s\) before the first checkpoint with a range are chained but not covered/);
    expect(partial.code).toBe(0);
  });

  it('names a rotated file missing from the set', async () => {
    const result = await runCli(['audit', 'verify', '--key', `${keys}.pub`, files[0] ?? '', files[2] ?? '']);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^FAIL .*audit\.log:1 seq \d+: gap-between-files: .*audit\.log\.2\.gz ends at seq \d+ and .*audit\.log starts at seq \d+/);
  });
});

describe('a log from before the Merkle tree (version 1 chain and checkpoints)', () => {
  const v1 = join(import.meta.dirname, 'fixtures', 'audit-v1');
  it('still verifies with its key; one byte changed is still caught', async () => {
    const ok = await runCli(['audit', 'verify', '--key', join(v1, 'audit-signing.pub'), join(v1, 'audit.log')]);
    expect(ok.stdout).toMatch(/^OK 1 file\(s\), 15 records, seq 1\.\.15/);
    expect(ok.stdout).toContain('3 checkpoint(s), 3 signatures good');
    expect(ok.code).toBe(0);
    const lines = readFileSync(join(v1, 'audit.log'), 'utf8').trimEnd().split('\n');
    lines[7] = (lines[7] ?? '').replace('"status":200', '"status":201');
    const file = join(dir, 'v1-changed.log');
    writeFileSync(file, lines.join('\n') + '\n');
    const changed = await runCli(['audit', 'verify', '--key', join(v1, 'audit-signing.pub'), file]);
    expect(changed.stdout).toMatch(/^FAIL .*v1-changed\.log:8 seq 8: changed: /);
    expect(changed.code).toBe(1);
  });
});

describe('keys with validity periods, and a live log', () => {
  const rotation = join(dir, 'rotation');
  const oldKeys = join(dir, 'old-signing');
  const newKeys = join(dir, 'new-signing');
  const file = join(rotation, 'audit.log');
  let switchedAt = '';

  beforeAll(async () => {
    expect(writeAuditKeyPair(oldKeys, false).ok).toBe(true);
    expect(writeAuditKeyPair(newKeys, false).ok).toBe(true);
    // The same log, signed with the old key and then, after a restart, with the new one.
    for (const key of [oldKeys, newKeys]) {
      if (key === newKeys) {
        await new Promise((r) => setTimeout(r, 20));
        switchedAt = new Date().toISOString();
        await new Promise((r) => setTimeout(r, 20));
      }
      const log = openAuditLog({ file, origin: 'rotation.example.org/audit', signingKey: `${key}.key`, checkpoint: { records: 4, seconds: 3600 } });
      for (let i = 0; i < 9; i += 1) log.write({ event: 'request', route: 'demo', status: 200, path: `/k/${i}` });
      await log.close();
    }
  });

  it('verifies a log across a key rotation with both keys, each within its period; fails with one key alone or a period that excludes it', async () => {
    const both = await runCli(['audit', 'verify', '--key', `${oldKeys}.pub::${switchedAt}`, '--key', `${newKeys}.pub:${switchedAt}`, file]);
    expect(both.stdout).toMatch(/^OK 1 file\(s\), \d+ records/);
    expect(both.code).toBe(0);
    const oldOnly = await runCli(['audit', 'verify', '--key', `${oldKeys}.pub`, file]);
    // The log's own checkpoint file (the newest checkpoint, new key) is refused as an anchor first.
    expect(oldOnly.stderr).toMatch(/anchor .*audit\.checkpoint: not signed by any given key/);
    expect(oldOnly.code).toBe(2);
    const newOnly = await runCli(['audit', 'verify', '--key', `${newKeys}.pub`, file]);
    expect(newOnly.stdout).toMatch(/:\d+ seq 5: bad-signature: signed by rotation\.example\.org\/audit\+[0-9a-f]{8}; none of the given keys/);
    expect(newOnly.code).toBe(1);
    const outOfPeriod = await runCli(['audit', 'verify', '--key', `${oldKeys}.pub::2020-01-01`, '--key', `${newKeys}.pub`, file]);
    expect(outOfPeriod.stdout).toMatch(/: bad-signature: signed at .* by a key outside its validity period/);
    expect(outOfPeriod.code).toBe(1);
  });

  it('--live reports an unsealed tail and fails only past its age limit', async () => {
    const live = join(rotation, 'live.log');
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    const last = lines.at(-1) ?? '';
    const tail = JSON.stringify({ seq: lines.length + 1, prev: lineHash(last), time: new Date().toISOString(), event: 'request', route: 'demo', status: 200 });
    writeFileSync(live, [...lines, tail].join('\n') + '\n');
    const key = ['--key', `${oldKeys}.pub::${switchedAt}`, '--key', `${newKeys}.pub:${switchedAt}`];
    const strict = await runCli(['audit', 'verify', ...key, live]);
    expect(strict.stdout).toMatch(/: unsealed: 1 record\(s\) after the last checkpoint/);
    expect(strict.code).toBe(1);
    const running = await runCli(['audit', 'verify', ...key, '--live', '300', live]);
    expect(running.stdout).toMatch(/live: 1 record\(s\) after the last checkpoint, since /);
    expect(running.code).toBe(0);
    await new Promise((r) => setTimeout(r, 1100));
    const stale = await runCli(['audit', 'verify', ...key, '--live', '1', live]);
    expect(stale.stdout).toMatch(/: unsealed: 1 record\(s\) after the last checkpoint .* past the --live limit of 1 s/);
    expect(stale.code).toBe(1);
  });
});

describe('proofs from the stored hashes', () => {
  const indexed = join(dir, 'indexed');
  const file = join(indexed, 'audit.log');

  beforeAll(async () => {
    // Three runs and a rotation: the store continues across restarts and files.
    await writeRecords(file, 0, 23);
    renameSync(file, `${file}.1`);
    await writeRecords(file, 23, 30);
    await writeRecords(file, 53, 11);
  });

  it('holds every leaf and completed node of the whole log, and gives the proofs reading the files gives', async () => {
    const size = readFileSync(`${file}.1`, 'utf8').trimEnd().split('\n').length + readFileSync(file, 'utf8').trimEnd().split('\n').length;
    expect(statSync(join(indexed, '.audit.log.hashes')).size).toBe(storedHashCount(size) * 32);
    // The stored hashes answer (no scan of the files).
    expect((await proveRecordIndexed([file, `${file}.1`], 40))?.seq).toBe(40);
    const fast: string[] = [];
    for (const seq of [1, 2, 17, 40, size - 1]) fast.push((await runCli(['audit', 'prove', '--seq', String(seq), file, `${file}.1`])).stdout);
    copyFileSync(join(indexed, '.audit.log.hashes'), join(dir, 'hashes.saved'));
    rmSync(join(indexed, '.audit.log.hashes'));
    const slow: string[] = [];
    for (const seq of [1, 2, 17, 40, size - 1]) slow.push((await runCli(['audit', 'prove', '--seq', String(seq), file, `${file}.1`])).stdout);
    expect(fast).toEqual(slow);
    // A damaged store never yields a wrong proof: it is not used.
    const damaged = readFileSync(join(dir, 'hashes.saved'));
    const at = 32 * storedHashCount(39) + 5;
    damaged[at] = (damaged[at] ?? 0) ^ 1;
    writeFileSync(join(indexed, '.audit.log.hashes'), damaged);
    expect(await proveRecordIndexed([file, `${file}.1`], 40)).toBeUndefined();
    const checked = await runCli(['audit', 'prove', '--seq', '40', file, `${file}.1`]);
    expect(checked.stdout).toBe(slow[3]);
  });
});
