// `gatehouse serve --processes 2`: two gateway processes share the port, both serve, the primary writes
// one audit chain for both (each record names its process's pid), SIGHUP reloads both, SIGUSR1 reopens
// the file, SIGTERM drains both.
import { spawnSync } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEchoService } from '../src/demo/echoService.ts';
import { runCli } from './support/auditFixtures.ts';
import { cli, curl, inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';

const routes = `  - name: demo
    path: /demo/
    upstream: unix:run/demo.sock
    policy: |
      allow if user($u);
`;

describe('serve --processes 2', () => {
  let h: Harness;
  let echo: Server;
  let alice: TestClientCertificate;
  let token: string;

  beforeAll(async () => {
    h = await startHarness({ routes, serveArgs: ['--processes', '2'] });
    echo = await startEchoService(join(h.dir, 'run', 'demo.sock'));
    alice = await h.pki.client('alice');
    token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
  }, 60_000);
  afterAll(async () => {
    await h.stop('SIGKILL');
    echo.close();
  });

  it('starts two gateway processes that both serve requests, each record naming its pid', async () => {
    expect(h.stderr()).toMatch(/2 gateway processes \(pids \d+, \d+\)/);
    const starts = (await waitFor(h, (r) => r.event === 'gateway.start', 2)).map((r) => r.pid);
    expect(new Set(starts).size).toBe(2);
    // Each curl is a new connection; the cluster hands connections to the processes in turn.
    for (let i = 0; i < 8; i++) {
      const res = await curl(h, '/demo/x', { client: alice, token });
      expect(res.status).toBe(200);
    }
    const opens = await waitFor(h, (r) => r.event === 'connection.open', 8);
    const pids = new Set(opens.map((r) => r.pid));
    expect(pids).toEqual(new Set(starts));
    const served = await waitFor(h, (r) => r.event === 'request' && r.status === 200, 8);
    expect(new Set(served.map((r) => r.pid))).toEqual(new Set(starts));
  }, 60_000);

  it('stops with exit 1, promptly, when a gateway process cannot start (its port is taken)', async () => {
    const config = join(h.dir, 'taken.yaml');
    writeFileSync(config, readFileSync(join(h.dir, 'routes.yaml'), 'utf8').replace('tcp: 127.0.0.1:0', `tcp: 127.0.0.1:${h.port}`).replace('audit/audit.log', 'audit-taken/audit.log'));
    const started = Date.now();
    const run = spawnSync(process.execPath, [cli, 'serve', '--config', config, '--processes', '2'], { cwd: h.dir, encoding: 'utf8', timeout: 25_000 });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/not started/);
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 30_000);

  it('reloads every process on SIGHUP to the primary', async () => {
    const config = join(h.dir, 'routes.yaml');
    writeFileSync(config, readFileSync(config, 'utf8') + routes.replace('name: demo', 'name: added').replace('path: /demo/', 'path: /added/'));
    h.proc.kill('SIGHUP');
    const reloads = await waitFor(h, (r) => r.event === 'config.reload' && r.decision === 'allow', 2);
    expect(new Set(reloads.map((r) => r.pid)).size).toBe(2);
    for (let i = 0; i < 4; i++) expect((await curl(h, '/added/y', { client: alice, token })).status).toBe(200);
  }, 60_000);

  it('reopens the one audit file on SIGUSR1 to the primary (after a rotation)', async () => {
    const before = h.audit().length;
    renameSync(h.auditFile, `${h.auditFile}.1`);
    h.proc.kill('SIGUSR1');
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 4; i++) expect((await curl(h, '/demo/z', { client: alice, token })).status).toBe(200);
    const after = await waitFor(h, (r) => r.event === 'request', 4);
    expect(before).toBeGreaterThan(0);
    expect(new Set(after.map((r) => r.pid)).size).toBe(2);
  }, 60_000);

  it('drains both on SIGTERM, exits 0, and leaves one chain that audit verify accepts', async () => {
    expect(await h.stop('SIGTERM')).toBe(0);
    const rotated = readFileSync(`${h.auditFile}.1`, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { seq: number; event: string; pid?: number });
    const records = [...rotated, ...h.audit()] as Array<{ seq?: number; event: string; pid?: number }>;
    expect(new Set(records.filter((r) => r.event === 'gateway.stop').map((r) => r.pid)).size).toBe(2);
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
    const verified = await runCli(['audit', 'verify', '--unsigned', `${h.auditFile}.1`, h.auditFile]);
    expect(verified.stdout).toContain(`OK 2 file(s), ${records.length} records`);
    expect(verified.code).toBe(0);
  }, 60_000);
});

async function waitFor(h: Harness, pred: (r: ReturnType<Harness['audit']>[number]) => boolean, count: number, timeoutMs = 10_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const hits = h.audit().filter(pred);
    if (hits.length >= count) return hits;
    if (Date.now() > until) throw new Error(`expected ${count} matching records, have ${hits.length}:\n${h.audit().map((r) => JSON.stringify(r)).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
