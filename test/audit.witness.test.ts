// `gatehouse audit witness` as a separate process on its own port with its own key: the C2SP
// tlog-witness answers (200 cosignature, 409 size, 422 bad proof, 403/404), state across restarts.
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeAuditKeyPair } from '../src/audit/auditCheckpoint.ts';
import { cosignedBy, parseWitnessVerifierKey } from '../src/audit/cosignature.ts';
import { CompactTree, consistencyProof, leafHash, subtreeRoot } from '../src/audit/merkleTree.ts';
import { checkpointBody, parseNote, signatureLine } from '../src/audit/signedNote.ts';
import { addCheckpointBody, witnessClient } from '../src/audit/witnessClient.ts';
import { auditKeys } from './support/auditFixtures.ts';
import { makeRootKey, runGatehouse } from './support/gatewayHarness.ts';
import { startWitnessProcess, stopProc, witnessSetup } from './support/witnessProcess.ts';
import { makeTestPki, type TestClientCertificate, type TestPki } from './support/pki.ts';

const ORIGIN = 'test.gatehouse/witnessed';

/** A log of `n` records named by `tag`, and its signed checkpoint at `size`. */
function makeLog(tag: string, n: number): { note: (size: number) => string; proof: (m: number, size: number) => Buffer[] } {
  const leaves = Array.from({ length: n }, (_, i) => leafHash(`{"seq":${i + 1},"tag":"${tag}"}`));
  const signer = createPrivateKey(readFileSync(`${auditKeys}.key`));
  return {
    note(size) {
      const tree = new CompactTree();
      for (const l of leaves.slice(0, size)) tree.append(l);
      const body = checkpointBody(ORIGIN, size, tree.root());
      return `${body}\n${signatureLine(body, ORIGIN, signer)}\n`;
    },
    proof: (m, size) => consistencyProof((a, b) => subtreeRoot((i) => leaves[i] as Buffer, a, b), m, size),
  };
}

describe('audit witness', () => {
  let pki: TestPki;
  let gateway: TestClientCertificate;
  let stranger: TestClientCertificate;
  let setup: { dir: string; config: string };
  let witness: Awaited<ReturnType<typeof startWitnessProcess>>;
  let vkey: string;
  const log = makeLog('honest', 40);

  beforeAll(async () => {
    pki = await makeTestPki(mkdtempSync(join(tmpdir(), 'gatehouse-witness-pki-')));
    gateway = await pki.client('gateway');
    stranger = await pki.client('stranger');
    setup = witnessSetup(pki, ORIGIN, ['cn:gateway']);
    vkey = (await runGatehouse(['audit', 'witness', '--config', setup.config, '--vkey'])).stdout.trim();
    witness = await startWitnessProcess(setup.config);
  }, 30_000);

  afterAll(async () => {
    if (witness) await stopProc(witness.proc);
  });

  const client = (who: TestClientCertificate) => witnessClient({ url: `https://localhost:${witness.port}`, ca: pki.caCert, cert: who.cert, key: who.key });

  it('cosigns a first checkpoint (cosignature/v1 over the body, verifiable with its vkey), then answers 409 with its size to a stale old size', async () => {
    const c = client(gateway);
    const first = await c.post(addCheckpointBody(0, [], log.note(10)));
    expect(first.status).toBe(200);
    const key = parseWitnessVerifierKey(vkey);
    if (!key.ok) throw new Error(key.message);
    const cosigned = parseNote(log.note(10) + first.body);
    if (!cosigned.ok) throw new Error(cosigned.message);
    expect(cosignedBy(cosigned.body, cosigned.signatures, key.value)).toBeGreaterThan(Date.now() / 1000 - 60);
    const stale = await c.post(addCheckpointBody(0, [], log.note(20)));
    expect(stale).toMatchObject({ status: 409, body: '10\n' });
    const next = await c.post(addCheckpointBody(10, log.proof(10, 20), log.note(20)));
    expect(next.status).toBe(200);
    c.close();
  });

  it('refuses a checkpoint of another history under the same origin and key (422), logs it and counts it in status', async () => {
    const c = client(gateway);
    const forged = makeLog('rewritten', 40);
    const answer = await c.post(addCheckpointBody(20, forged.proof(20, 30), forged.note(30)));
    expect(answer.status).toBe(422);
    const sameSize = await c.post(addCheckpointBody(20, [], forged.note(20)));
    expect(sameSize.status).toBe(409);
    const back = await c.post(addCheckpointBody(20, [], log.note(15)));
    expect(back.status).toBe(400);
    c.close();
    expect(witness.stderr()).toMatch(/REFUSED a checkpoint of test\.gatehouse\/witnessed: .*does not extend the cosigned size 20/);
    const status = await runGatehouse(['audit', 'witness', '--config', setup.config, '--status']);
    expect(status.code).toBe(1);
    expect(status.stdout).toContain('refused: 3');
    // What it keeps is still the honest checkpoint it cosigned, with its cosignature.
    const kept = readFileSync(join(setup.dir, 'state', `${encodeURIComponent(ORIGIN)}.checkpoint`), 'utf8');
    expect(kept.startsWith(log.note(20))).toBe(true);
    expect(kept).toMatch(/\n\u2014 witness\.test\/w1 \S+\n$/);
  });

  it('answers 403 to a client certificate not listed and to a checkpoint signed by another key, 404 to an unknown origin', async () => {
    const c = client(stranger);
    expect((await c.post(addCheckpointBody(20, log.proof(20, 25), log.note(25)))).status).toBe(403);
    c.close();
    const g = client(gateway);
    const other = join(setup.dir, 'other');
    writeAuditKeyPair(other, false);
    const body = checkpointBody(ORIGIN, 25, Buffer.alloc(32));
    const forgedKey = `${body}\n${signatureLine(body, ORIGIN, createPrivateKey(readFileSync(`${other}.key`)))}\n`;
    expect((await g.post(addCheckpointBody(20, [], forgedKey))).status).toBe(403);
    const elsewhere = checkpointBody('other.log/audit', 5, Buffer.alloc(32));
    expect((await g.post(addCheckpointBody(0, [], `${elsewhere}\n${signatureLine(elsewhere, 'other.log/audit', createPrivateKey(readFileSync(`${auditKeys}.key`)))}\n`))).status).toBe(404);
    g.close();
  });

  it('answers 400 to malformed requests and keeps serving', async () => {
    const c = client(gateway);
    const sig = log.note(20).split('\n').at(-2) ?? '';
    for (const body of ['', 'old\n\n', 'old 20\nnot base64!\n\n' + log.note(20), 'old 20\n\nnot a note', `old 20\n\n${log.note(20).replace(sig, `${sig.slice(0, -8)}AAAA`)}`, `old 99999999999999999999\n\n${log.note(20)}`, `old 20\n${'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n'.repeat(64)}\n${log.note(20)}`]) {
      expect([400, 403]).toContain((await c.post(body)).status);
    }
    expect((await c.post(addCheckpointBody(20, [], log.note(20)))).status).toBe(200);
    c.close();
  });

  it('keeps what it cosigned across a restart', async () => {
    await stopProc(witness.proc);
    witness = await startWitnessProcess(setup.config);
    const c = client(gateway);
    expect(await c.post(addCheckpointBody(0, [], log.note(30)))).toMatchObject({ status: 409, body: '20\n' });
    expect((await c.post(addCheckpointBody(20, log.proof(20, 30), log.note(30)))).status).toBe(200);
    c.close();
  }, 30_000);

  it('gatehouse check reads audit.witnesses: a vkey whose key ID does not match, an unreadable client certificate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-witness-check-'));
    writeFileSync(join(dir, 'token-root.pub'), `${makeRootKey().publicKey}\n`);
    const tampered = vkey.replace(/\+[0-9a-f]{8}\+/, '+00000000+');
    const config = (key: string, cert: string) => `listen:\n  - tcp: 127.0.0.1:0\ntls:\n  cert: ${pki.serverCertPath}\n  key: ${pki.serverKeyPath}\n  clientCa: ${pki.caCertPath}\nauthz:\n  rootKey: token-root.pub\naudit:\n  file: audit/audit.log\n  witnesses:\n    - url: https://localhost:7380\n      name: witness.test/w1\n      vkey: ${key}\n      ca: ${pki.caCertPath}\n      cert: ${cert}\n      key: ${gateway.keyPath}\nroutes:\n  - name: web\n    path: /web/\n    upstream: unix:web.sock\n    policy: allow if user($u);\n`;
    writeFileSync(join(dir, 'good.yaml'), config(vkey, gateway.certPath));
    writeFileSync(join(dir, 'bad.yaml'), config(tampered, join(dir, 'missing.crt')));
    const good = await runGatehouse(['check', '--config', join(dir, 'good.yaml')]);
    expect(good.stdout + good.stderr).not.toMatch(/witnesses/);
    const bad = await runGatehouse(['check', '--config', join(dir, 'bad.yaml')]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr + bad.stdout).toMatch(/audit\.witnesses\[0\]\.vkey: verifier key of witness\.test\/w1: the key ID does not match/);
    expect(bad.stderr + bad.stdout).toMatch(/audit\.witnesses\[0\]\.cert: cannot read/);
  });
});
