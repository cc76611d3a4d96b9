// A real gateway pushing its checkpoints to a real witness (a separate process with its own key and
// port, its own CA for mTLS): cosigned under load, anchors truncation checks, down without stopping
// the gateway (/readyz turns not ready), and refuses the gateway's log rewritten under the same key.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrivateKey, randomBytes } from 'node:crypto';
import { lineHash } from '../src/audit/auditChain.ts';
import { checkpointBody, signatureLine } from '../src/audit/signedNote.ts';
import { addCheckpointBody, witnessClient } from '../src/audit/witnessClient.ts';
import { auditKeys, runCli, serveAgain, signedAudit, webUpstream } from './support/auditFixtures.ts';
import { cli, curl, inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import { makeTestPki, type TestClientCertificate, type TestPki } from './support/pki.ts';
import { checkpointSize, startWitnessProcess, stopProc, until, witnessLines as witnessConfigLines, witnessSetup } from './support/witnessProcess.ts';

const ORIGIN = 'test.gatehouse/e2e-witnessed';
const WITNESS = 'witness.test/w1';
const routes = `  - name: web
    path: /web/
    upstream: unix:run/web.sock
    policy: |
      allow if user($u);
`;

const witnessLines = (port: number, vkey: string, pki: TestPki, cert: TestClientCertificate) => witnessConfigLines(ORIGIN, WITNESS, port, vkey, pki, cert);

describe('a gateway and its witness', () => {
  let pki: TestPki;
  let gatewayCert: TestClientCertificate;
  let setup: { dir: string; config: string };
  let witness: Awaited<ReturnType<typeof startWitnessProcess>>;
  let vkey: string;
  let h: Harness;
  let web: Server;
  let token: string;
  let metricsAddress: string;
  const witnessCheckpoint = () => join(setup.dir, 'state', `${encodeURIComponent(ORIGIN)}.checkpoint`);
  const witnessedSize = () => checkpointSize(witnessCheckpoint());
  const gatewayCheckpointSize = () => checkpointSize(join(h.dir, 'audit', 'audit.checkpoint'));
  const readyz = async () => (await fetch(`http://${metricsAddress}/readyz`)).status;

  beforeAll(async () => {
    pki = await makeTestPki(mkdtempSync(join(tmpdir(), 'gatehouse-witness-site-')));
    gatewayCert = await pki.client('gateway');
    setup = witnessSetup(pki, ORIGIN, ['cn:gateway']);
    witness = await startWitnessProcess(setup.config);
    // Pinned to its port: a restarted witness is found where the gateway's config says.
    writeFileSync(setup.config, readFileSync(setup.config, 'utf8').replace('listen: 127.0.0.1:0', `listen: 127.0.0.1:${witness.port}`));
    vkey = (await runCli(['audit', 'witness', '--config', setup.config, '--vkey'])).stdout.trim();
    h = await startHarness({ routes, extraTop: signedAudit(5) + witnessLines(witness.port, vkey, pki, gatewayCert) });
    web = await webUpstream(join(h.dir, 'run', 'web.sock'));
    token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
    metricsAddress = String(((await h.waitForAudit((r) => r.event === 'gateway.start')).detail as { metrics: string }).metrics);
  }, 60_000);

  afterAll(async () => {
    await h?.stop();
    web?.close();
    if (witness) await stopProc(witness.proc);
  });

  it('the witness cosigns the checkpoints of HTTP traffic through the gateway; round trip measured', async () => {
    const alice = await h.pki.client('alice');
    const statuses = await Promise.all(Array.from({ length: 40 }, (_, i) => curl(h, `/web/load-${i}`, { client: alice, token }).then((r) => r.status)));
    expect(statuses.every((s) => s === 200)).toBe(true);
    await h.waitForAudit((r) => r.path === '/web/load-39');
    // Every checkpoint the gateway publishes reaches the witness (the last one at least).
    await until('the witness to cosign the gateway\'s last checkpoint', () => (gatewayCheckpointSize() > 40 && witnessedSize() === gatewayCheckpointSize() ? true : undefined));
    const kept = readFileSync(join(h.dir, 'audit', `audit.checkpoint.${encodeURIComponent(WITNESS)}`), 'utf8');
    expect(kept).toContain(`\u2014 ${WITNESS} `);
    const metrics = await (await fetch(`http://${metricsAddress}/metrics`)).text();
    const sum = Number(/gatehouse_audit_witness_round_trip_seconds_sum\{witness="witness\.test\/w1"\} (\S+)/.exec(metrics)?.[1]);
    const count = Number(/gatehouse_audit_witness_round_trip_seconds_count\{witness="witness\.test\/w1"\} (\S+)/.exec(metrics)?.[1]);
    expect(count).toBeGreaterThan(0);
    process.stdout.write(`witness round trip: ${count} checkpoints cosigned, mean ${((sum / count) * 1000).toFixed(1)} ms\n`);
    expect(await readyz()).toBe(200);
  }, 60_000);

  it('audit verify --anchor <the witness checkpoint> --witness-key passes on the log and fails on a truncated copy', async () => {
    const anchor = join(h.dir, 'witnessed.checkpoint');
    copyFileSync(witnessCheckpoint(), anchor);
    const good = await runCli(['audit', 'verify', '--key', `${auditKeys}.pub`, '--anchor', anchor, '--witness-key', vkey, '--live', '3600', h.auditFile]);
    expect(good.stdout + good.stderr).toMatch(/OK/);
    expect(good.code).toBe(0);
    // Without --anchor, the note the witness cosigned as the gateway kept it beside the log.
    const beside = await runCli(['audit', 'verify', '--key', `${auditKeys}.pub`, '--witness-key', vkey, '--live', '3600', h.auditFile]);
    expect(beside.code).toBe(0);
    expect(beside.stdout).toContain(`audit.checkpoint.${encodeURIComponent(WITNESS)}`);
    const copy = join(h.dir, 'truncated.log');
    const lines = readFileSync(h.auditFile, 'utf8').split('\n');
    writeFileSync(copy, lines.slice(0, Math.floor(lines.length / 2)).join('\n') + '\n');
    const cut = await runCli(['audit', 'verify', '--key', `${auditKeys}.pub`, '--anchor', anchor, '--witness-key', vkey, '--live', '3600', copy]);
    expect(cut.code).toBe(1);
    expect(cut.stdout).toMatch(/shortened: .* the anchor .*witnessed\.checkpoint covers \d+ records/);
    // The same checkpoint without the witness's cosignature is not accepted as witnessed.
    const bare = join(h.dir, 'bare.checkpoint');
    writeFileSync(bare, readFileSync(anchor, 'utf8').split('\n').filter((l) => !l.startsWith(`\u2014 ${WITNESS} `)).join('\n'));
    const unwitnessed = await runCli(['audit', 'verify', '--key', `${auditKeys}.pub`, '--anchor', bare, '--witness-key', vkey, '--live', '3600', h.auditFile]);
    expect(unwitnessed.code).toBe(1);
    expect(unwitnessed.stdout).toContain(`no valid cosignature by witness ${WITNESS}`);
  }, 60_000);

  it('a witness that is down does not stop the gateway; /readyz turns not ready after witnessMaxAgeSeconds', async () => {
    await stopProc(witness.proc);
    const alice = await h.pki.client('alice');
    for (let i = 0; i < 12; i += 1) expect((await curl(h, `/web/alone-${i}`, { client: alice, token })).status).toBe(200);
    await h.waitForAudit((r) => r.path === '/web/alone-11');
    await until('/readyz to say not ready', async () => ((await readyz()) === 503 ? true : undefined));
    expect(await (await fetch(`http://${metricsAddress}/metrics`)).text()).toMatch(/gatehouse_audit_witness_failures_total\{witness="witness\.test\/w1",reason="unreachable"\} [1-9]/);
    // Back up: the backlog goes through with a proof from what it cosigned last, and the gateway is ready again.
    witness = await startWitnessProcess(setup.config);
    await until('ready again', async () => ((await readyz()) === 200 ? true : undefined), 90_000);
    expect(witnessedSize()).toBeGreaterThan(50);
  }, 120_000);

  it('refuses the gateway\'s log rewritten under the same origin and key (a new history from seq 1), and says so', async () => {
    const before = witnessedSize();
    await h.stop();
    // The insider with the signing key and the log directory: a fresh history, every trace removed.
    for (const f of readdirSync(join(h.dir, 'audit'))) rmSync(join(h.dir, 'audit', f));
    const proc = spawn(process.execPath, [cli, 'serve', '--config', join(h.dir, 'routes.yaml')], { cwd: h.dir, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      await until('the rewritten gateway to listen', () => (/listening on https/.test(stderr) ? true : undefined));
      const port = Number(/listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)?.[1]);
      const alice = await h.pki.client('alice');
      for (let i = 0; i < 12; i += 1) expect((await curl({ ...h, port, base: `https://localhost:${port}` }, `/web/forged-${i}`, { client: alice, token })).status).toBe(200);
      await until('the witness to refuse', () => (/REFUSED a checkpoint of test\.gatehouse\/e2e-witnessed: .*the log was cut back/.test(witness.stderr()) ? true : undefined));
      await until('the gateway to report the refusal', () => (/audit witness witness\.test\/w1 refused/.test(stderr) ? true : undefined));
      // A forged checkpoint of another, longer tree, signed with the log's key, pushed by hand: 422.
      const body = checkpointBody(ORIGIN, before + 10, randomBytes(32));
      const forged = `${body}\n${signatureLine(body, ORIGIN, createPrivateKey(readFileSync(`${auditKeys}.key`)))}\n`;
      const hand = witnessClient({ url: `https://localhost:${witness.port}`, ca: pki.caCert, cert: gatewayCert.cert, key: gatewayCert.key });
      expect((await hand.post(addCheckpointBody(before, [randomBytes(32), randomBytes(32)], forged))).status).toBe(422);
      hand.close();
      // The witness still holds the honest history's checkpoint.
      expect(witnessedSize()).toBe(before);
      const status = await runCli(['audit', 'witness', '--config', setup.config, '--status']);
      expect(status.code).toBe(1);
    } finally {
      await stopProc(proc);
    }
  }, 90_000);
});

/** A witness of its own and a gateway pushing to it (for the tests that stand alone). */
async function witnessedGateway(serveArgs: string[] = []) {
  const pki = await makeTestPki(mkdtempSync(join(tmpdir(), 'gatehouse-witness-site-')));
  const gatewayCert = await pki.client('gateway');
  const setup = witnessSetup(pki, ORIGIN, ['cn:gateway']);
  const witness = await startWitnessProcess(setup.config);
  const vkey = (await runCli(['audit', 'witness', '--config', setup.config, '--vkey'])).stdout.trim();
  const h = await startHarness({ routes, extraTop: signedAudit(5) + witnessLines(witness.port, vkey, pki, gatewayCert), serveArgs });
  const web = await webUpstream(join(h.dir, 'run', 'web.sock'));
  return { setup, witness, h, web };
}

describe('a gateway of several processes and its witness', () => {
  it('the primary (the one audit writer) pushes the checkpoints to the witness', async () => {
    const { setup, witness, h, web } = await witnessedGateway(['--processes', '2']);
    try {
      const token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
      const alice = await h.pki.client('alice');
      for (let i = 0; i < 10; i += 1) expect((await curl(h, `/web/group-${i}`, { client: alice, token })).status).toBe(200);
      const witnessed = join(setup.dir, 'state', `${encodeURIComponent(ORIGIN)}.checkpoint`);
      await until('the witness to cosign the group\'s checkpoint', () => (checkpointSize(witnessed) > 10 && checkpointSize(witnessed) === checkpointSize(join(h.dir, 'audit', 'audit.checkpoint')) ? true : undefined));
    } finally {
      await h.stop();
      web.close();
      await stopProc(witness.proc);
    }
  }, 90_000);
});

describe('a gateway stopped, its log cut back and its own traces removed, but the witness\'s cosigned note kept', () => {
  it('refuses to start: the log is shorter than, or disagrees with, the checkpoint the witness cosigned', async () => {
    const { witness, h, web } = await witnessedGateway();
    try {
      const token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
      const alice = await h.pki.client('alice');
      for (let i = 0; i < 20; i += 1) expect((await curl(h, `/web/covered-${i}`, { client: alice, token })).status).toBe(200);
      const kept = join(h.dir, 'audit', `audit.checkpoint.${encodeURIComponent(WITNESS)}`);
      await until('the witness to cosign', () => (checkpointSize(kept) > 20 ? true : undefined));
      expect(await h.stop()).toBe(0);
      // The insider with the log directory (not the witness): the log cut back below what the witness
      // cosigned, the log's own checkpoint file and saved chain head removed.
      const lines = readFileSync(h.auditFile, 'utf8').trimEnd().split('\n');
      writeFileSync(h.auditFile, lines.slice(0, 8).join('\n') + '\n');
      rmSync(join(h.dir, 'audit', 'audit.checkpoint'));
      for (const f of readdirSync(join(h.dir, 'audit')).filter((f) => f.startsWith('.'))) rmSync(join(h.dir, 'audit', f), { recursive: true });
      const again = await serveAgain(h);
      await again.stop();
      expect(again.stderr).toMatch(/audit log: .*audit\.log ends at seq 8 but the checkpoint witness witness\.test\/w1 cosigned \(.*audit\.checkpoint\.witness\.test%2Fw1\) covers \d+ records: the log was truncated/);
      expect(again.code).not.toBe(0);
      expect(again.code).not.toBeNull();
      expect(readFileSync(h.auditFile, 'utf8').trimEnd().split('\n').length).toBe(8);
      // Full length again, but a record before the cosigned size changed and the chain recomputed
      // (no key needed for that): the rebuilt tree disagrees with the cosigned root.
      const rewritten = lines.map((l) => l.replace('/web/covered-3"', '/web/covered-X"'));
      expect(rewritten).not.toEqual(lines);
      for (let i = 1; i < rewritten.length; i += 1) rewritten[i] = (rewritten[i] ?? '').replace(/"prev":"sha256:[0-9a-f]{64}"/, `"prev":"${lineHash(rewritten[i - 1] ?? '')}"`);
      writeFileSync(h.auditFile, rewritten.join('\n') + '\n');
      const changed = await serveAgain(h);
      await changed.stop();
      expect(changed.stderr).toMatch(/audit log: .*audit\.log: its first \d+ records do not have the root the checkpoint witness witness\.test\/w1 cosigned .*: the log was rewritten/);
      expect(changed.code).not.toBe(0);
      expect(changed.code).not.toBeNull();
      // The same note with its cosignature stripped is refused too (not silently ignored).
      writeFileSync(kept, readFileSync(kept, 'utf8').split('\n').filter((l) => !l.startsWith(`\u2014 ${WITNESS} `)).join('\n'));
      const stripped = await serveAgain(h);
      await stripped.stop();
      expect(stripped.stderr).toContain(`no valid cosignature by witness ${WITNESS}`);
      expect(stripped.code).not.toBe(0);
    } finally {
      await h.stop();
      web.close();
      await stopProc(witness.proc);
    }
  }, 90_000);
});
