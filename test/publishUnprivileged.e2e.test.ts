// The deployment the issue asks for, with real OS users: the gateway runs as an unprivileged user that
// cannot enter alice's home; alice (another OS user) runs her services in a 0700 directory and publishes them.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { curl, inOneHour, mintRaw, repoRoot, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { cleanEnv, gatewayFlags, startTunnel, type TunnelProcess } from './support/tunnelClient.ts';
import { echoThrough, publishedRoute, publishTop, restartGateway, startPublisher, type PublisherProcess } from './support/publishPeers.ts';

const MiB = 1 << 20;
const isRoot = process.getuid?.() === 0;
const suffix = Math.random().toString(36).slice(2, 8);
const gatewayUser = `gh-gw-${suffix}`;
const aliceUser = `gh-alice-${suffix}`;

let h: Harness;
let gateway: ChildProcess | undefined;
let services: ChildProcess | undefined;
let publisher: PublisherProcess | undefined;
let tunnel: TunnelProcess | undefined;
let aliceHome: string;
let alice: TestClientCertificate;
let bob: TestClientCertificate;
const ids: Record<string, number> = {};

const as = (user: string) => ['setpriv', `--reuid=${ids[user]}`, `--regid=${ids[user]}`, '--clear-groups', '--'];
const token = (user: string) => mintRaw(h.rootKey.privateKey, `user("${user}"); publish_right("*"); check if time($t), $t <= ${inOneHour()};`);

describe.skipIf(!isRoot)('gateway as an unprivileged user, alice publishing as herself (needs root to create the OS users)', () => {
  beforeAll(async () => {
    aliceHome = mkdtempSync(join(tmpdir(), 'gatehouse-alice-home-'));
    for (const [user, home] of [[gatewayUser, join(tmpdir(), gatewayUser)], [aliceUser, aliceHome]] as const) {
      execFileSync('useradd', ['--system', '--no-create-home', '--home-dir', home, '--shell', '/usr/sbin/nologin', user]);
      ids[user] = Number(execFileSync('id', ['-u', user]).toString().trim());
    }
    // alice's home and the directory of her sockets: hers alone.
    const sockets = join(aliceHome, '.gatehouse');
    mkdirSync(sockets, { mode: 0o700 });
    const config = join(aliceHome, '.config', 'gatehouse');
    mkdirSync(config, { recursive: true, mode: 0o700 });
    // A unix: route straight to alice's socket shows what the gateway's own user can (not) reach.
    const direct = `  - name: direct\n    path: /direct/\n    upstream: unix:${sockets}/web.sock\n    policy: |\n      allow if user($u);\n`;
    h = await startHarness({ routes: publishedRoute + direct, extraTop: publishTop });
    alice = await h.pki.client('alice');
    bob = await h.pki.client('bob');
    for (const [from, name] of [[alice.certPath, 'alice.crt'], [alice.keyPath, 'alice.key'], [h.pki.caCertPath, 'ca.crt']] as const) copyFileSync(from, join(config, name));
    writeFileSync(join(config, 'token'), token('alice') + '\n', { mode: 0o600 });
    chmodSync(aliceHome, 0o700);
    execFileSync('chown', ['-R', `${ids[aliceUser]}:${ids[aliceUser]}`, aliceHome]);
    // The gateway's files become its user's, and it restarts as that user on the same port.
    execFileSync('chown', ['-R', `${ids[gatewayUser]}:${ids[gatewayUser]}`, h.dir]);
    gateway = await restartGateway(h, 0, as(gatewayUser));

    services = spawn(as(aliceUser)[0] as string, [...as(aliceUser).slice(1), process.execPath, join(repoRoot, 'test', 'support', 'runServices.ts'), sockets], { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      services?.stdout?.once('data', () => resolve());
      services?.once('exit', (code) => reject(new Error(`services exited with ${code}`)));
    });
    publisher = startPublisher(
      ['--gateway', `https://localhost:${h.port}`, '--ca', join(config, 'ca.crt'), '--cert', join(config, 'alice.crt'), '--key', join(config, 'alice.key'), 'web=unix:~/.gatehouse/web.sock', 'echo=unix:~/.gatehouse/echo.sock'],
      cleanEnv(aliceHome),
      as(aliceUser),
    );
    await publisher.waitForStderr(/published as alice/);
  }, 90_000);

  afterAll(async () => {
    await tunnel?.stop('SIGKILL');
    await publisher?.stop('SIGKILL');
    // userdel refuses a user that still runs a process: wait for each to be gone.
    const gone = (proc: ChildProcess | undefined) =>
      new Promise<void>((resolve) => {
        if (!proc || proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGKILL');
      });
    await Promise.all([gone(services), gone(gateway)]);
    for (const user of [gatewayUser, aliceUser]) {
      try {
        execFileSync('userdel', [user], { stdio: 'ignore' });
      } catch {
        // not created
      }
    }
    rmSync(aliceHome, { recursive: true, force: true });
  });

  it('runs the gateway and the publisher as the unprivileged users', () => {
    const uidOf = (pid: number) => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
    expect(uidOf(gateway?.pid as number)).toBe(ids[gatewayUser]);
    expect(uidOf(publisher?.proc.pid as number)).toBe(ids[aliceUser]);
  });

  it('cannot reach alice\'s socket directly (502, EACCES), but reaches her published service', async () => {
    const aliceToken = token('alice');
    expect((await curl(h, '/direct/', { client: alice, token: aliceToken })).status).toBe(502);
    await h.waitForAudit((r) => r.event === 'request' && r.route === 'direct' && /EACCES/.test(r.reason ?? ''));
    const res = await curl(h, '/~alice/web/through', { client: alice, token: aliceToken });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ path: '/through', user: 'alice' });
  });

  it('carries a WebSocket', async () => {
    const echoed = await new Promise<string>((resolve, reject) => {
      const ws = new WebSocket(`wss://localhost:${h.port}/~alice/web/ws`, { ca: h.pki.caCert, cert: alice.cert, key: alice.key, headers: { authorization: `Bearer ${token('alice')}` } });
      ws.on('open', () => ws.send('as alice'));
      ws.on('message', (data) => {
        resolve(data.toString());
        ws.close();
      });
      ws.on('error', reject);
    });
    expect(echoed).toBe('as alice');
  });

  it('carries 64 MiB through gatehouse tunnel -L PORT:echo.alice, sha256-identical', async () => {
    const home = mkdtempSync(join(tmpdir(), 'gatehouse-laptop-'));
    const tokenFile = join(home, 'token');
    writeFileSync(tokenFile, token('alice') + '\n', { mode: 0o600 });
    tunnel = await startTunnel([...gatewayFlags(h, alice, tokenFile), '-L', '0:echo.alice'], cleanEnv(home));
    const run = await echoThrough(tunnel.ready[0]?.port as number, 64 * MiB);
    expect(run.got).toBe(64 * MiB);
    expect(run.gotSha).toBe(run.sentSha);
  }, 60_000);

  it('refuses bob on alice\'s service (403) and answers an unpublished name with 503', async () => {
    expect((await curl(h, '/~alice/web/', { client: bob, token: token('bob') })).status).toBe(403);
    expect((await curl(h, '/~alice/nothing/', { client: alice, token: token('alice') })).status).toBe(503);
  });
});
