// The audit trail of a real `gatehouse serve` under real traffic (HTTP allowed and denied, a proxied
// WebSocket, CONNECT and WebSocket tunnels, a reload, a TLS refusal): the exact records, a valid
// chain, signed checkpoints that `gatehouse audit verify` accepts; failing closed and recovering.
import { renameSync, rmSync, symlinkSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { auditKeys, runCli, signedAudit, webUpstream } from './support/auditFixtures.ts';
import { curl, inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import { echoHandler } from './support/tunnelClient.ts';
import { connectTunnel, unixService, webSocketTunnel, type UnixService } from './support/tunnelPeers.ts';

const routes = `  - name: web
    path: /web/
    protocols: [http, websocket]
    upstream: unix:run/web.sock
    policy: |
      allow if user($u);
  - name: ops
    path: /ops/
    upstream: unix:run/web.sock
    policy: |
      allow if group("ops");
  - name: echo
    protocols: [tcp]
    upstream: unix:run/echo.sock
    policy: |
      allow if user($u), protocol("tcp");
`;

describe('audit trail of real traffic', () => {
  let h: Harness;
  let web: Server;
  let echo: UnixService;
  let token: string;

  beforeAll(async () => {
    h = await startHarness({ routes, extraTop: signedAudit() });
    web = await webUpstream(join(h.dir, 'run', 'web.sock'));
    echo = await unixService(join(h.dir, 'run', 'echo.sock'), echoHandler);
    token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
  }, 30_000);

  afterAll(async () => {
    await h?.stop();
    web?.close();
    await echo?.close();
  });

  it('records every decision and connection once, in one valid signed chain', async () => {
    const alice = await h.pki.client('alice');
    expect((await curl(h, '/web/a', { client: alice, token })).status).toBe(200);
    expect((await curl(h, '/web/b', { client: alice })).status).toBe(401);
    expect((await curl(h, '/ops/c', { client: alice, token })).status).toBe(403);
    expect((await curl(h, '/web/d')).exitCode).not.toBe(0); // no client certificate: refused in the handshake

    const ws = new WebSocket(`wss://localhost:${h.port}/web/ws`, { ca: h.pki.caCert, cert: alice.cert, key: alice.key, headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false });
    await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
    const reply = new Promise<string>((resolve) => ws.once('message', (d: Buffer) => resolve(d.toString())));
    ws.send('ping');
    expect(await reply).toBe('ping');
    ws.close();
    await new Promise((resolve) => ws.once('close', resolve));

    for (const open of [connectTunnel(h, alice, 'echo:443', { 'proxy-authorization': `Bearer ${token}` }), webSocketTunnel(h, alice, 'echo', token)]) {
      const tunnel = await open;
      if (!tunnel.ok) throw new Error(`tunnel refused: ${tunnel.status} ${tunnel.body}`);
      const got = new Promise<string>((resolve) => tunnel.end.onData((d) => resolve(d.toString())));
      await tunnel.end.write(Buffer.from('hello tunnel'));
      expect(await got).toBe('hello tunnel');
      tunnel.end.end();
      await tunnel.end.closed;
    }
    await h.waitForAudit((r) => r.event === 'tunnel.close' && r.detail?.transport === 'websocket-tunnel');

    h.proc.kill('SIGHUP');
    await h.waitForAudit((r) => r.event === 'config.reload');
    expect(await h.stop()).toBe(0);

    const records = h.audit() as Array<ReturnType<Harness['audit']>[number] & { seq: number; prev: string }>;
    const count = (pred: (r: (typeof records)[number]) => boolean) => records.filter(pred).length;
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
    expect(count((r) => r.event === 'request' && r.decision === 'allow' && r.status === 200 && r.route === 'web')).toBe(1);
    expect(count((r) => r.event === 'request' && r.status === 401)).toBe(1);
    expect(count((r) => r.event === 'request' && r.status === 403 && r.route === 'ops')).toBe(1);
    expect(count((r) => r.event === 'request')).toBe(3);
    expect(count((r) => r.event === 'tls.reject')).toBe(1);
    expect(count((r) => r.event === 'tunnel.open' && r.protocol === 'websocket')).toBe(1);
    expect(count((r) => r.event === 'tunnel.close' && r.protocol === 'websocket')).toBe(1);
    expect(count((r) => r.event === 'tunnel.open' && r.protocol === 'tcp')).toBe(2);
    expect(count((r) => r.event === 'tunnel.close' && r.protocol === 'tcp' && r.bytesIn === 12 && r.bytesOut === 12)).toBe(2);
    expect(count((r) => r.event === 'config.reload' && r.decision === 'allow')).toBe(1);
    expect(count((r) => r.event === 'gateway.start')).toBe(1);
    expect(count((r) => r.event === 'gateway.stop')).toBe(1);
    expect(count((r) => r.event === 'connection.open')).toBe(count((r) => r.event === 'connection.close'));
    expect(count((r) => r.event === 'connection.open')).toBe(6);
    // A checkpoint at least every 7 records (and at the SIGHUP's reopen), and one at shutdown after gateway.stop.
    const runs = records.map((r) => r.event).join(' ').split('audit.checkpoint').map((run) => run.trim().split(' ').filter(Boolean).length);
    expect(Math.max(...runs)).toBeLessThanOrEqual(7);
    expect(count((r) => r.event === 'audit.checkpoint')).toBeGreaterThanOrEqual(Math.ceil(count((r) => r.event !== 'audit.checkpoint') / 7));
    expect(records.at(-1)?.event).toBe('audit.checkpoint');
    expect(records.at(-2)?.event).toBe('gateway.stop');

    const verified = await runCli(['audit', 'verify', '--key', `${auditKeys}.pub`, h.auditFile]);
    expect(verified.stdout).toContain(`OK 1 file(s), ${records.length} records, seq 1..${records.length}`);
    expect(verified.stdout).toMatch(/\d+ signatures good/);
    expect(verified.code).toBe(0);
  }, 60_000);
});

describe('a failed audit write', () => {
  let h: Harness;
  let web: Server;
  let token: string;

  beforeAll(async () => {
    h = await startHarness({ routes, extraTop: `${signedAudit(1000)}metrics:\n  listen: 127.0.0.1:0\n` });
    web = await webUpstream(join(h.dir, 'run', 'web.sock'));
    token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
  }, 30_000);

  afterAll(async () => {
    await h?.stop();
    web?.close();
  });

  it('refuses traffic while the file fails, serves again after a reopen onto a good file, and loses no record', async () => {
    const alice = await h.pki.client('alice');
    expect((await curl(h, '/web/1', { client: alice, token })).status).toBe(200);
    await h.waitForAudit((r) => r.event === 'request');
    const metricsAddress = String((await h.waitForAudit((r) => r.event === 'gateway.start')).detail?.metrics);
    // A full disk: the path now leads to /dev/full (every write fails with ENOSPC).
    renameSync(h.auditFile, `${h.auditFile}.1`);
    symlinkSync('/dev/full', h.auditFile);
    h.proc.kill('SIGUSR1');
    const statuses: number[] = [];
    for (let i = 0; i < 20 && !statuses.includes(503); i += 1) {
      statuses.push((await curl(h, `/web/full-${i}`, { client: alice, token })).status);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(statuses).toContain(503);
    expect(h.stderr()).toContain('refusing all traffic until a write succeeds');
    rmSync(h.auditFile);
    h.proc.kill('SIGUSR1');
    let status = 0;
    for (let i = 0; i < 40 && status !== 200; i += 1) {
      await new Promise((r) => setTimeout(r, 50));
      status = (await curl(h, `/web/back-${i}`, { client: alice, token })).status;
    }
    expect(status).toBe(200);
    expect(h.stderr()).toContain('written again: serving');
    // The logging itself is monitored: the failures, the records and the last good write are in the metrics.
    const metrics = await (await fetch(`http://${metricsAddress}/metrics`)).text();
    expect(Number(/^gatehouse_audit_write_errors_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    // Counted by event: add them up.
    const records = [...metrics.matchAll(/^gatehouse_audit_records_total\{event="[^"]+"\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    expect(records).toBeGreaterThan(statuses.length);
    expect(Number(/^gatehouse_audit_checkpoints_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(2);
    expect(/^gatehouse_audit_healthy 1$/m.test(metrics)).toBe(true);
    expect(Math.abs(Number(/^gatehouse_audit_last_write_timestamp_seconds (\S+)/m.exec(metrics)?.[1]) - Date.now() / 1000)).toBeLessThan(30);
    expect(await h.stop()).toBe(0);
    // Every request made has its record (the ones written while the disk was full were held and written after the reopen).
    const verified = await runCli(['audit', 'verify', '--key', `${auditKeys}.pub`, h.auditFile, `${h.auditFile}.1`]);
    expect(verified.stdout).toMatch(/^OK 2 file\(s\)/);
    const requests = await runCli(['audit', 'query', '--event', 'request', '--format', 'json', `${h.auditFile}.1`, h.auditFile]);
    const paths = requests.stdout.trim().split('\n').map((l) => { const r = JSON.parse(l) as { path?: string; target?: string }; return r.path ?? r.target ?? ''; });
    expect(paths.length).toBe(1 + statuses.length + paths.filter((p) => p.includes('/back-')).length);
    expect(new Set(paths).size).toBe(paths.length);
  }, 60_000);
});
