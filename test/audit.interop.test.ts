// The audit log's checkpoints and proofs checked by an implementation we did not write: Go's
// golang.org/x/mod/sumdb/note and sumdb/tlog (Debian golang-golang-x-mod-dev), built offline.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readAuditPublicKey, writeAuditKeyPair } from '../src/audit/auditCheckpoint.ts';
import { openAuditLog } from '../src/audit/auditLog.ts';
import { verifierKey } from '../src/audit/signedNote.ts';
import { runCli } from './support/auditFixtures.ts';
import { which } from './support/localServices.ts';

const GOCODE = '/usr/share/gocode';
const go = which('go');
const haveGo = go !== undefined && existsSync(join(GOCODE, 'src', 'golang.org', 'x', 'mod', 'sumdb', 'tlog'));
const ORIGIN = 'gateway.example.org/audit';

describe.skipIf(!haveGo)(`Go sumdb/note + sumdb/tlog accept the audit log's checkpoints and proofs${haveGo ? '' : ' (skipped: needs golang-go and golang-golang-x-mod-dev)'}`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-audit-interop-'));
  const keys = join(dir, 'audit-signing');
  const file = join(dir, 'audit.log');
  const verifier = join(dir, 'verifier');
  let vkey = '';

  async function write(from: number, count: number): Promise<void> {
    const log = openAuditLog({ file, origin: ORIGIN, signingKey: `${keys}.key`, checkpoint: { records: 7, seconds: 3600 } });
    for (let i = from; i < from + count; i += 1) log.write({ event: 'request', route: 'web', decision: 'allow', status: 200, path: `/web/${i}` });
    await log.close();
  }

  const goVerify = (mode: string, input: string) => spawnSync(verifier, [vkey, mode, input], { encoding: 'utf8' });
  const tamper = (from: string, name: string, change: (text: string) => string): string => {
    const to = join(dir, name);
    writeFileSync(to, change(readFileSync(from, 'utf8')));
    return to;
  };

  beforeAll(async () => {
    // GOPATH mode over Debian's source tree: no network, no module proxy.
    const src = join(dir, 'go', 'src', 'tlogverifier');
    mkdirSync(src, { recursive: true });
    copyFileSync(join(import.meta.dirname, 'fixtures', 'tlog-verifier', 'main.go'), join(src, 'main.go'));
    execFileSync(go as string, ['build', '-o', verifier, 'tlogverifier'], { env: { ...process.env, GO111MODULE: 'off', GOPATH: `${join(dir, 'go')}:${GOCODE}`, GOPROXY: 'off', GOFLAGS: '', GOCACHE: join(dir, 'gocache') } });
    expect(writeAuditKeyPair(keys, false).ok).toBe(true);
    const pub = readAuditPublicKey(`${keys}.pub`);
    if (!pub.ok) throw new Error(pub.error.message);
    vkey = verifierKey(ORIGIN, pub.value);
    await write(0, 40);
    copyFileSync(join(dir, 'audit.checkpoint'), join(dir, 'old.checkpoint'));
    await write(40, 33);
  }, 120_000);

  it('the checkpoint file is a signed note Go opens with the verifier key', () => {
    const result = goVerify('checkpoint', join(dir, 'audit.checkpoint'));
    expect(result.stdout).toMatch(new RegExp(`^OK checkpoint ${ORIGIN} \\d+ `));
    expect(result.status).toBe(0);
    const forged = tamper(join(dir, 'audit.checkpoint'), 'forged.checkpoint', (t) => t.replace(/\n(\d+)\n/, (_, n: string) => `\n${Number(n) + 1}\n`));
    expect(goVerify('checkpoint', forged).stdout).toMatch(/^FAIL /);
  });

  it('an inclusion proof from audit prove: accepted; with the record altered: rejected', async () => {
    const proved = await runCli(['audit', 'prove', '--seq', '23', file]);
    expect(proved.code).toBe(0);
    const proof = join(dir, 'inclusion.json');
    writeFileSync(proof, proved.stdout);
    const result = goVerify('inclusion', proof);
    expect(result.stdout).toMatch(/^OK inclusion 22 \d+/);
    expect(result.status).toBe(0);
    const altered = tamper(proof, 'inclusion-altered.json', (t) => t.replace('"status\\":200', '"status\\":500'));
    expect(goVerify('inclusion', altered).stdout).toMatch(/^FAIL /);
    // And our own verify-proof agrees on both.
    expect((await runCli(['audit', 'verify-proof', '--key', `${keys}.pub`, proof])).code).toBe(0);
    const ours = await runCli(['audit', 'verify-proof', '--key', `${keys}.pub`, altered]);
    expect(ours.stdout).toMatch(/^FAIL the record seq 23 is not in the log/);
    expect(ours.code).toBe(1);
  });

  it('a consistency proof from an earlier checkpoint: accepted; with a hash altered: rejected', async () => {
    const proved = await runCli(['audit', 'prove', '--from', join(dir, 'old.checkpoint'), file]);
    expect(proved.code).toBe(0);
    const proof = join(dir, 'consistency.json');
    writeFileSync(proof, proved.stdout);
    const result = goVerify('consistency', proof);
    expect(result.stdout).toMatch(/^OK consistency \d+ \d+/);
    expect(result.status).toBe(0);
    const altered = tamper(proof, 'consistency-altered.json', (t) => t.replace(/"proof": \[\n\s+"(.)/, (m, c: string) => m.slice(0, -1) + (c === 'A' ? 'B' : 'A')));
    expect(goVerify('consistency', altered).stdout).toMatch(/^FAIL /);
    expect((await runCli(['audit', 'verify-proof', '--key', `${keys}.pub`, altered])).code).toBe(1);
  });
});
