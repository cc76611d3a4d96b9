// Real logrotate, with the shipped systemd/gatehouse.logrotate (paths and signal adapted to the test),
// rotates the live audit log of a real gateway under mTLS load: verify passes across the files and
// every request the load generator made has exactly one record.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import { logrotate, rotateRepeatedly } from './support/logrotate.ts';
import type { Server } from 'node:http';
import { auditKeys, runCli, signedAudit, webUpstream } from './support/auditFixtures.ts';

const ROTATIONS = 4;
const CONCURRENCY = 8;

const routes = `  - name: web
    path: /web/
    upstream: unix:run/web.sock
    policy: |
      allow if user($u);
`;

describe('rotation by logrotate under load', () => {
  let h: Harness;
  let web: Server;

  beforeAll(async () => {
    if (!logrotate) return;
    // The load comes from one certificate, far over the default request rate: raise it, so every request is forwarded.
    h = await startHarness({ routes, extraTop: signedAudit(500) + 'limits:\n  requestsPerSecond: 100000\n  requestBurst: 100000\n' });
    web = await webUpstream(join(h.dir, 'run', 'web.sock'));
  }, 30_000);

  afterAll(async () => {
    await h?.stop();
    web?.close();
  });

  it.skipIf(!logrotate)(`verify passes across the rotated files and every request has one record${logrotate ? '' : ' (skipped: logrotate is not installed)'}`, async () => {
    const alice = await h.pki.client('alice');
    const token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
    const pool = new Pool(`https://localhost:${h.port}`, { connections: CONCURRENCY, connect: { ca: h.pki.caCert, cert: alice.cert, key: alice.key, servername: 'localhost' } });
    let made = 0;
    let ok = 0;
    let stop = false;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i += 1) {
        made += 1;
        const res = await pool.request({ path: `/web/load-${w}-${i}`, method: 'GET', headers: { authorization: `Bearer ${token}` } });
        await res.body.text();
        if (res.statusCode === 200) ok += 1;
      }
    };
    const load = Promise.all(Array.from({ length: CONCURRENCY }, (_, w) => worker(w)));
    await rotateRepeatedly(h, ROTATIONS, 400);
    stop = true;
    await load;
    await pool.close();
    expect(await h.stop()).toBe(0);

    const files = readdirSync(join(h.dir, 'audit')).filter((f) => f.startsWith('audit.log')).map((f) => join(h.dir, 'audit', f));
    // audit.log, audit.log.1 (delaycompress) and audit.log.2.gz .. audit.log.N.gz
    expect(files.length).toBe(ROTATIONS + 1);
    expect(files.filter((f) => f.endsWith('.gz')).length).toBe(ROTATIONS - 1);
    const verified = await runCli(['audit', 'verify', '--key', `${auditKeys}.pub`, ...files]);
    expect(verified.stdout).toMatch(new RegExp(`^OK ${ROTATIONS + 1} file\\(s\\), \\d+ records, seq 1\\.\\.`));
    expect(verified.code).toBe(0);
    const summary = await runCli(['audit', 'query', '--event', 'request', '--route', 'web', '--format', 'json', ...files]);
    const paths = summary.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { path: string }).path);
    expect(ok).toBe(made);
    expect(paths.length).toBe(made);
    expect(new Set(paths).size).toBe(made);
    process.stderr.write(`logrotate under load: ${made} requests, ${ROTATIONS} rotations, ${files.length} files verified\n`);
  }, 90_000);
});
