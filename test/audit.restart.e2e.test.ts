// The audit writer of a real gateway refuses to continue a log shorter than its last checkpoint
// (truncated while stopped), starts a new log only on purpose (recorded), and holds its records
// while the live file is deleted under it (503 until SIGUSR1 reopens it; nothing lost).
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lineHash } from '../src/audit/auditChain.ts';
import { auditKeys, runCli, serveAgain, signedAudit, webUpstream } from './support/auditFixtures.ts';
import { curl, inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';

const routes = `  - name: web
    path: /web/
    upstream: unix:run/web.sock
    policy: |
      allow if user($u);
`;

const lines = (file: string): string[] => readFileSync(file, 'utf8').trimEnd().split('\n');

describe('the audit writer across restarts', () => {
  let h: Harness;
  let web: Server;
  let token: string;

  beforeAll(async () => {
    h = await startHarness({ routes, extraTop: signedAudit(5) });
    web = await webUpstream(join(h.dir, 'run', 'web.sock'));
    token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
  }, 30_000);

  afterAll(async () => {
    await h?.stop();
    web?.close();
  });

  it('holds records while the live file is deleted: 503 until a reopen, then every held record is in the new file', async () => {
    const alice = await h.pki.client('alice');
    expect((await curl(h, '/web/before', { client: alice, token })).status).toBe(200);
    await h.waitForAudit((r) => r.path === '/web/before');
    await h.waitForAudit((r) => r.event === 'connection.close');
    const lastBefore = (JSON.parse(lines(h.auditFile).at(-1) ?? '') as { seq: number }).seq;
    rmSync(h.auditFile);
    const statuses: number[] = [];
    for (let i = 0; i < 20 && !statuses.includes(503); i += 1) statuses.push((await curl(h, `/web/gone-${i}`, { client: alice, token })).status);
    expect(statuses).toContain(503);
    expect(h.stderr()).toContain('was deleted');
    h.proc.kill('SIGUSR1');
    let status = 0;
    for (let i = 0; i < 40 && status !== 200; i += 1) {
      await new Promise((r) => setTimeout(r, 50));
      status = (await curl(h, `/web/back-${i}`, { client: alice, token })).status;
    }
    expect(status).toBe(200);
    await h.waitForAudit((r) => typeof r.path === 'string' && r.path.startsWith('/web/back-'));
    const written = lines(h.auditFile);
    const records = written.map((l) => JSON.parse(l) as { seq: number; event: string; status?: number });
    // Every record since the deletion is in the reopened file, from the next seq on, still chained;
    // each refused request among them.
    expect(records[0]?.seq).toBe(lastBefore + 1);
    expect(records.filter((r) => r.event === 'request' && r.status === 503).length).toBe(statuses.filter((s) => s === 503).length);
    for (let i = 1; i < written.length; i += 1) expect((JSON.parse(written[i] ?? '') as { prev: string }).prev).toBe(lineHash(written[i - 1] ?? ''));
  }, 60_000);

  let full: string[] = [];
  it('refuses to continue a log truncated while the gateway was stopped', async () => {
    expect(await h.stop()).toBe(0);
    full = lines(h.auditFile);
    writeFileSync(h.auditFile, full.slice(0, Math.floor(full.length / 2)).join('\n') + '\n');
    const again = await serveAgain(h);
    await again.stop();
    expect(again.stderr).toMatch(/audit log: .*audit\.log ends at seq \d+ but the log had reached seq \d+ .*the file was truncated/);
    expect(again.code).not.toBe(0);
    expect(again.code).not.toBeNull();
    // Nothing was appended to the shortened file.
    expect(lines(h.auditFile).length).toBe(Math.floor(full.length / 2));
  }, 30_000);

  it('starts a new log only on purpose: files moved away and a new origin, recorded in its first record', async () => {
    writeFileSync(h.auditFile, full.join('\n') + '\n');
    const previous = readFileSync(join(h.dir, 'audit', 'audit.checkpoint'), 'utf8');
    // A new origin alone, with the old files still there: refused.
    writeFileSync(join(h.dir, 'routes.yaml'), readFileSync(join(h.dir, 'routes.yaml'), 'utf8').replace('routes:\n', '  origin: gw.example.org/audit/2\nroutes:\n'));
    const refused = await serveAgain(h);
    await refused.stop();
    expect(refused.stderr).toContain('a log keeps its origin');
    expect(refused.code).not.toBe(0);
    mkdirSync(join(h.dir, 'old-log'));
    for (const f of ['audit.log', '.audit.log.head']) renameSync(join(h.dir, 'audit', f), join(h.dir, 'old-log', f));
    const started = await serveAgain(h);
    expect(started.code).toBeNull();
    // Stopped once it is running (its start record written), not while it sets up its signal handlers.
    await h.waitForAudit((r) => r.event === 'gateway.start');
    await started.stop();
    const first = JSON.parse(lines(h.auditFile)[0] ?? '') as { seq: number; event: string; detail: { origin: string; size: number; root: string } };
    expect(first).toMatchObject({ seq: 1, event: 'audit.log.new', detail: { reason: 'new origin', origin: 'gw.example.org/audit/2', size: Number(previous.split('\n')[1]), root: previous.split('\n')[2] } });
    const verified = await runCli(['audit', 'verify', '--key', `${auditKeys}.pub`, '--origin', 'gw.example.org/audit/2', h.auditFile]);
    expect(verified.stdout).toMatch(/^OK 1 file\(s\)/);
    expect(verified.code).toBe(0);
  }, 30_000);
});
