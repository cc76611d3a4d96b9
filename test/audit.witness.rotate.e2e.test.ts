// A witness (a separate process, its own key and port) cosigns a gateway's checkpoints while HTTP
// requests and CONNECT tunnels run and real logrotate rotates the live file: one anchored verify after.
import { copyFileSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditKeys, runCli, signedAudit, webUpstream } from './support/auditFixtures.ts';
import { inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import { logrotate, rotateRepeatedly } from './support/logrotate.ts';
import { makeTestPki } from './support/pki.ts';
import { connectTunnel, unixService, type UnixService } from './support/tunnelPeers.ts';
import { checkpointSize, startWitnessProcess, stopProc, until, witnessLines, witnessSetup } from './support/witnessProcess.ts';

const ORIGIN = 'test.gatehouse/e2e-witnessed-rotated';
const WITNESS = 'witness.test/w1';
const ROTATIONS = 2;
const HTTP_WORKERS = 4;
const TUNNEL_WORKERS = 2;
const routes = `  - name: web
    path: /web/
    upstream: unix:run/web.sock
    policy: |
      allow if user($u);
  - name: echo
    protocols: [tcp]
    upstream: unix:run/echo.sock
    policy: |
      allow if user($u), protocol("tcp");
`;

describe('a witness under load: HTTP, tunnels and rotation by logrotate', () => {
  let witness: Awaited<ReturnType<typeof startWitnessProcess>>;
  let setup: { dir: string; config: string };
  let vkey: string;
  let h: Harness;
  let web: Server;
  let echo: UnixService;
  let metricsAddress: string;

  beforeAll(async () => {
    if (!logrotate) return;
    const pki = await makeTestPki(mkdtempSync(join(tmpdir(), 'gatehouse-witness-site-')));
    const gatewayCert = await pki.client('gateway');
    setup = witnessSetup(pki, ORIGIN, ['cn:gateway']);
    witness = await startWitnessProcess(setup.config);
    vkey = (await runCli(['audit', 'witness', '--config', setup.config, '--vkey'])).stdout.trim();
    // The load comes from one certificate, far over the default request rate: raise it, so every request is forwarded.
    h = await startHarness({ routes, extraTop: signedAudit(25) + witnessLines(ORIGIN, WITNESS, witness.port, vkey, pki, gatewayCert) + 'limits:\n  requestsPerSecond: 100000\n  requestBurst: 100000\n' });
    web = await webUpstream(join(h.dir, 'run', 'web.sock'));
    echo = await unixService(join(h.dir, 'run', 'echo.sock'), (s) => s.pipe(s));
    metricsAddress = String(((await h.waitForAudit((r) => r.event === 'gateway.start')).detail as { metrics: string }).metrics);
  }, 60_000);

  afterAll(async () => {
    await h?.stop();
    web?.close();
    echo?.close();
    if (witness) await stopProc(witness.proc);
  });

  it.skipIf(!logrotate)(`the witness cosigns the end of the rotated log; anchored verify passes; every request and tunnel has its record${logrotate ? '' : ' (skipped: logrotate is not installed)'}`, async () => {
    const alice = await h.pki.client('alice');
    const token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
    const pool = new Pool(`https://localhost:${h.port}`, { connections: HTTP_WORKERS, connect: { ca: h.pki.caCert, cert: alice.cert, key: alice.key, servername: 'localhost' } });
    const requested: string[] = [];
    let ok = 0;
    let tunnels = 0;
    let stop = false;
    const httpWorker = async (w: number) => {
      for (let i = 0; !stop; i += 1) {
        const path = `/web/load-${w}-${i}`;
        requested.push(path);
        const res = await pool.request({ path, method: 'GET', headers: { authorization: `Bearer ${token}` } });
        await res.body.text();
        if (res.statusCode === 200) ok += 1;
      }
    };
    // Each tunnel carries a few KB each way (echoed back whole) before it closes.
    const tunnelWorker = async () => {
      while (!stop) {
        const opened = await connectTunnel(h, alice, 'echo:443', { 'Proxy-Authorization': `Bearer ${token}` });
        if (!opened.ok) throw new Error(`tunnel refused: ${opened.status} ${opened.body}`);
        tunnels += 1;
        const payload = Buffer.alloc(8192, tunnels % 251);
        let back = 0;
        const echoed = new Promise<void>((resolve) => opened.end.onData((d) => ((back += d.length) >= payload.length ? resolve() : undefined)));
        await opened.end.write(payload);
        await echoed;
        opened.end.end();
        await opened.end.closed;
      }
    };
    const load = Promise.all([...Array.from({ length: HTTP_WORKERS }, (_, w) => httpWorker(w)), ...Array.from({ length: TUNNEL_WORKERS }, () => tunnelWorker())]);
    await rotateRepeatedly(h, ROTATIONS, 600);
    stop = true;
    await load;
    await pool.close();
    const logFiles = () => readdirSync(join(h.dir, 'audit')).filter((f) => f.startsWith('audit.log')).map((f) => join(h.dir, 'audit', f));
    const query = async (event: string, route: string) => (await runCli(['audit', 'query', '--event', event, '--route', route, '--format', 'json', ...logFiles()])).stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { path?: string });
    await until('every tunnel to be recorded', async () => ((await query('tunnel.close', 'echo')).length === tunnels ? true : undefined));

    // SIGUSR1 seals the tail with a checkpoint (none is written when the last record already is one,
    // 1 time in 25 here): the log then ends with a checkpoint, published, that the witness must cosign.
    h.proc.kill('SIGUSR1');
    const sealed = await until('the gateway to seal the tail', () => {
      const lines = readFileSync(h.auditFile, 'utf8').trimEnd().split('\n');
      const last = JSON.parse(lines[lines.length - 1] ?? '{}') as { event?: string; checkpoint?: { seq: number } };
      const size = checkpointSize(join(h.dir, 'audit', 'audit.checkpoint'));
      return last.event === 'audit.checkpoint' && last.checkpoint?.seq === size ? size : undefined;
    });
    const witnessCheckpoint = join(setup.dir, 'state', `${encodeURIComponent(ORIGIN)}.checkpoint`);
    await until('the witness to cosign the sealing checkpoint', () => (checkpointSize(witnessCheckpoint) === sealed ? true : undefined), 30_000);
    const anchor = join(h.dir, 'witnessed.checkpoint');
    copyFileSync(witnessCheckpoint, anchor);

    const metrics = await (await fetch(`http://${metricsAddress}/metrics`)).text();
    const sum = Number(/gatehouse_audit_witness_round_trip_seconds_sum\{witness="witness\.test\/w1"\} (\S+)/.exec(metrics)?.[1]);
    const count = Number(/gatehouse_audit_witness_round_trip_seconds_count\{witness="witness\.test\/w1"\} (\S+)/.exec(metrics)?.[1]);
    expect(count).toBeGreaterThan(0);

    const files = logFiles();
    expect(files.length).toBe(ROTATIONS + 1);
    const verified = await runCli(['audit', 'verify', '--key', `${auditKeys}.pub`, '--anchor', anchor, '--witness-key', vkey, '--live', '3600', ...files]);
    expect(verified.stdout + verified.stderr).toMatch(new RegExp(`^OK ${ROTATIONS + 1} file\\(s\\), \\d+ records, seq 1\\.\\.`));
    expect(verified.code).toBe(0);
    const records = Number(/, (\d+) records,/.exec(verified.stdout)?.[1]);
    // The cosigned checkpoint covers the end of the log: the sealing checkpoint is the log's last line
    // (seq `records`) and covers every record before it; nothing was written after it (the gateway is idle).
    expect(verified.stdout).toContain(`last at seq ${records}`);
    expect(sealed).toBe(records - 1);

    const paths = (await query('request', 'web')).map((r) => r.path);
    expect(ok).toBe(requested.length);
    expect(paths.length).toBe(requested.length);
    expect(new Set(paths)).toEqual(new Set(requested));
    expect((await query('tunnel.open', 'echo')).length).toBe(tunnels);
    expect((await query('tunnel.close', 'echo')).length).toBe(tunnels);
    expect(witness.stderr()).not.toMatch(/REFUSED/);
    expect((await runCli(['audit', 'witness', '--config', setup.config, '--status'])).code).toBe(0);
    process.stderr.write(`witness under load: ${records} records (${requested.length} requests, ${tunnels} tunnels), ${ROTATIONS} rotations, ${count} checkpoints cosigned, witness round trip mean ${((sum / count) * 1000).toFixed(1)} ms, ${files.length} files verified against the cosigned checkpoint of size ${sealed}\n`);
  }, 120_000);
});
