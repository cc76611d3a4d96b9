// The gateway's life cycle, end to end: a bad config on reload keeps the running one, a good one
// takes effect without a restart, and SIGTERM drains requests in flight and flushes the audit log.
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEchoService } from '../src/demo/echoService.ts';
import { curl, inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';

let h: Harness;
let alice: TestClientCertificate;
let echo: Server;
let slow: Server;
let token: string;

const routes = `  - name: demo
    path: /demo/
    upstream: unix:run/demo.sock
    policy: |
      allow if user($u);
  - name: slow
    path: /slow/
    upstream: unix:run/slow.sock
    policy: |
      allow if user($u);
`;

beforeAll(async () => {
  h = await startHarness({ routes });
  alice = await h.pki.client('alice');
  echo = await startEchoService(join(h.dir, 'run', 'demo.sock'));
  slow = createServer((_req, res) => setTimeout(() => res.end('finally\n'), 1500));
  await new Promise<void>((ok) => slow.listen(join(h.dir, 'run', 'slow.sock'), ok));
  token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
});

afterAll(async () => {
  echo?.close();
  slow?.close();
  await h?.stop('SIGKILL');
});

const config = () => join(h.dir, 'routes.yaml');

async function reloadAndWait(count: number): Promise<void> {
  h.proc.kill('SIGHUP');
  const until = Date.now() + 10_000;
  while (h.audit().filter((r) => r.event === 'config.reload').length < count) {
    if (Date.now() > until) throw new Error(`no config.reload record:\n${h.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('gateway life cycle', () => {
  it('keeps the running config when a reload brings a broken one, and says why', async () => {
    const good = readFileSync(config(), 'utf8');
    writeFileSync(config(), good.replace('upstream: unix:run/demo.sock', 'upstream: nowhere:at/all').replace('audit:', 'bogusKey: 1\naudit:'));
    await reloadAndWait(1);
    const record = h.audit().filter((r) => r.event === 'config.reload').at(-1);
    expect(record?.decision).toBe('deny');
    expect(record?.reason).toMatch(/kept the running config/);
    expect(record?.reason).toMatch(/routes\.yaml:\d+:\d+: routes\[0\]\.upstream/);
    expect(record?.reason).toMatch(/bogusKey/);
    expect(h.stderr()).toMatch(/reload refused/);
    expect((await curl(h, '/demo/still-here', { client: alice, token })).status).toBe(200);
    writeFileSync(config(), good);
  });

  it('applies a good config on SIGHUP without dropping the listener', async () => {
    const good = readFileSync(config(), 'utf8');
    expect((await curl(h, '/added/x', { client: alice, token })).status).toBe(404);
    writeFileSync(config(), good + `  - name: added\n    path: /added/\n    upstream: unix:run/demo.sock\n    policy: |\n      allow if user("alice");\n`);
    await reloadAndWait(2);
    expect(h.audit().filter((r) => r.event === 'config.reload').at(-1)?.decision).toBe('allow');
    const res = await curl(h, '/added/x', { client: alice, token });
    expect(res.status).toBe(200);
  });

  it('drains a request in flight on SIGTERM, then writes gateway.stop and closes every connection record', async () => {
    const inFlight = curl(h, '/slow/wait', { client: alice, token });
    await h.waitForAudit((r) => r.event === 'connection.open' && r.conn !== undefined && !h.audit().some((c) => c.event === 'connection.close' && c.conn === r.conn), 5000);
    await new Promise((r) => setTimeout(r, 300));
    const exit = h.stop('SIGTERM');
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(res.body).toBe('finally\n');
    expect(await exit).toBe(0);
    const records = h.audit();
    // The audit log's own closing checkpoint follows gateway.stop.
    expect(records.filter((r) => r.event !== 'audit.checkpoint').at(-1)?.event).toBe('gateway.stop');
    const opened = records.filter((r) => r.event === 'connection.open').map((r) => r.conn);
    const closed = new Set(records.filter((r) => r.event === 'connection.close').map((r) => r.conn));
    expect(opened.filter((c) => !closed.has(c))).toEqual([]);
    expect(records.some((r) => r.event === 'request' && r.path === '/slow/wait' && r.status === 200)).toBe(true);
  });
});

describe('an audit log that cannot be written', () => {
  it('makes the gateway refuse traffic (503) and say so on stderr', async () => {
    // /dev/full accepts the open and fails every write with ENOSPC: a full disk, even for root.
    const g = await startHarness({ routes, auditFile: '/dev/full' });
    try {
      const client = await g.pki.client('alice');
      await startEchoService(join(g.dir, 'run', 'demo.sock'));
      const t = mintRaw(g.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
      let res = await curl(g, '/demo/x', { client, token: t });
      for (let i = 0; i < 20 && res.status !== 503; i++) {
        await new Promise((r) => setTimeout(r, 100));
        res = await curl(g, '/demo/x', { client, token: t });
      }
      expect(res.status).toBe(503);
      expect(JSON.parse(res.body)).toEqual({ error: 'gateway unavailable' });
      expect(g.stderr()).toMatch(/audit log \/dev\/full cannot be written .*refusing all traffic/);
    } finally {
      await g.stop('SIGKILL');
    }
  });
});
