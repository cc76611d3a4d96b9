// Real clients through `gatehouse tunnel` and a real `gatehouse serve`: ssh (ProxyCommand --stdio) to a
// real sshd, redis-cli and psql through -L to services on UNIX sockets, 64 MiB each way on both transports.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../src/audit/auditRecord.ts';
import { cli, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { freePort, startSshd, which } from './support/localServices.ts';
import { cleanEnv, countHandler, download, gatewayFlags, keystreamSha256, listenUnix, sinkSourceRoutes, sourceHandler, startTunnel, upload, writeToken } from './support/tunnelClient.ts';

const isRoot = process.getuid?.() === 0;

const postgresBin = ['/usr/lib/postgresql'].flatMap((d) => (existsSync(d) ? readdirSync(d).sort().reverse().map((v) => join(d, v, 'bin')) : [])).find((d) => existsSync(join(d, 'initdb')));
const missing = {
  ssh: ['/usr/sbin/sshd', 'ssh', 'ssh-keygen'].filter((b) => !which(b)),
  redis: ['redis-server', 'redis-cli'].filter((b) => !which(b)),
  psql: [...(postgresBin ? [] : ['postgresql (initdb, postgres)']), ...['psql'].filter((b) => !which(b))],
};
const skipReason = (names: string[]) => (names.length ? ` [skipped: ${names.join(', ')} not installed; .ci/run installs them]` : '');

let h: Harness;
let alice: TestClientCertificate;
let home: string;
let env: NodeJS.ProcessEnv;
let tokenFile: string;
let work: string;
let sshdPort = 0;
const children: ChildProcess[] = [];
const servers: Server[] = [];

const MiB = 1 << 20;
const TRANSFER = 64 * MiB;

function run(cmd: string, args: string[], opts: { input?: string | Buffer; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((ok) => {
    const child = execFile(cmd, args, { env, timeout: opts.timeoutMs ?? 30_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      ok({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout: stdout.toString(), stderr: stderr.toString() });
    });
    child.stdin?.end(opts.input ?? '');
  });
}

/** Starts a long-running service and waits until `ready()` holds. */
async function startService(cmd: string, args: string[], ready: () => boolean, what: string): Promise<ChildProcess> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  children.push(child);
  const until = Date.now() + 20_000;
  while (!ready()) {
    if (child.exitCode !== null || Date.now() > until) throw new Error(`${what} did not start (exit ${child.exitCode}):\n${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return child;
}

const tunnelRecords = (route: string) => h.audit().filter((r) => r.route === route && (r.event === 'tunnel.open' || r.event === 'tunnel.close'));

/** Every tunnel to `route` has exactly one allow decision and one close record; returns the pairs. */
async function expectOnePairPerTunnel(route: string, tunnels: number): Promise<Array<{ open: AuditRecord; close: AuditRecord }>> {
  let records = tunnelRecords(route);
  for (const until = Date.now() + 10_000; records.filter((r) => r.event === 'tunnel.close').length < tunnels && Date.now() < until; records = tunnelRecords(route)) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const opens = records.filter((r) => r.event === 'tunnel.open');
  expect(opens).toHaveLength(tunnels);
  return opens.map((open) => {
    expect(open.decision).toBe('allow');
    expect(open.client?.cn).toBe('alice');
    expect(open.token?.user).toBe('alice');
    const closes = records.filter((r) => r.event === 'tunnel.close' && r.req === open.req);
    expect(closes).toHaveLength(1);
    return { open, close: closes[0] as AuditRecord };
  });
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gatehouse-real-'));
  sshdPort = await freePort();
  const pgSocketDir = join(work, 'pg-run');
  h = await startHarness({
    routes: `  - name: sshd
    protocols: [tcp]
    upstream: tcp:127.0.0.1:${sshdPort}
    policy: |
      allow if user($u);
  - name: redis
    protocols: [tcp]
    upstream: unix:run/redis.sock
    policy: |
      allow if user($u);
  - name: pg
    protocols: [tcp]
    upstream: unix:${pgSocketDir}/.s.PGSQL.5432
    policy: |
      allow if user($u);
${sinkSourceRoutes}`,
  });
  alice = await h.pki.client('alice');
  home = mkdtempSync(join(tmpdir(), 'gatehouse-home-'));
  env = cleanEnv(home);
  tokenFile = writeToken(h, join(home, '.config', 'gatehouse', 'token'), 'alice');
  servers.push(await listenUnix(join(h.dir, 'run', 'sink.sock'), countHandler));
  servers.push(await listenUnix(join(h.dir, 'run', 'source.sock'), sourceHandler));
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  for (const s of servers) s.close();
  await h?.stop();
});

describe('ssh through --stdio as ProxyCommand', () => {
  it.skipIf(missing.ssh.length > 0)(`runs a remote command on a real sshd${skipReason(missing.ssh)}`, async () => {
    const sshd = await startSshd(join(work, 'sshd'), sshdPort);
    children.push(sshd.proc);

    const proxy = [process.execPath, cli, 'tunnel', '--stdio', 'sshd', ...gatewayFlags(h, alice, tokenFile)].join(' ');
    const ssh = (command: string, input?: Buffer) =>
      run('ssh', ['-F', '/dev/null', '-o', `ProxyCommand=${proxy}`, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-i', sshd.identityFile, `${sshd.user}@login-node`, command], input === undefined ? {} : { input });

    const hello = await ssh('echo hello-from-sshd; whoami');
    expect(hello.stderr).toBe('');
    expect(hello.stdout).toBe(`hello-from-sshd\n${userInfo().username}\n`);
    expect(hello.code).toBe(0);

    // A megabyte up through the same kind of tunnel, checked on the far side.
    const data = Buffer.alloc(MiB, 'ssh-payload.');
    const sum = await ssh('sha256sum', data);
    expect(sum.stdout.split(' ')[0]).toBe(execFileSync('sha256sum', { input: data }).toString().split(' ')[0]);

    const pairs = await expectOnePairPerTunnel('sshd', 2);
    for (const { close } of pairs) {
      expect(close.bytesIn).toBeGreaterThan(0);
      expect(close.bytesOut).toBeGreaterThan(0);
    }
    expect(pairs[1]?.close.bytesIn).toBeGreaterThan(MiB);
  });
});

describe('database and cache clients through -L', () => {
  it.skipIf(missing.redis.length > 0)(`redis-cli reaches redis-server's UNIX socket via a local port and a private socket${skipReason(missing.redis)}`, async () => {
    const sock = join(h.dir, 'run', 'redis.sock');
    await startService('redis-server', ['--port', '0', '--unixsocket', sock, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', work], () => existsSync(sock), 'redis-server');
    const local = join(home, 'redis', 'redis.sock');
    const t = await startTunnel([...gatewayFlags(h, alice, tokenFile), '-L', '0:redis', '-L', `unix:${local}:redis`], env, 2);
    try {
      const port = String(t.ready[0]?.port);
      expect((await run('redis-cli', ['-h', '127.0.0.1', '-p', port, 'ping'])).stdout).toBe('PONG\n');
      expect((await run('redis-cli', ['-h', '127.0.0.1', '-p', port, 'set', 'greeting', 'through the gateway'])).stdout).toBe('OK\n');
      expect((await run('redis-cli', ['-s', local, 'get', 'greeting'])).stdout).toBe('through the gateway\n');
    } finally {
      expect(await t.stop()).toBe(0);
    }
    await expectOnePairPerTunnel('redis', 3);
  });

  it.skipIf(missing.psql.length > 0)(`psql reaches PostgreSQL's own UNIX socket${skipReason(missing.psql)}`, async () => {
    const data = join(work, 'pg-data');
    const run_ = join(work, 'pg-run');
    mkdirSync(run_);
    // PostgreSQL refuses to run as root: as root, run it as the postgres user.
    const asPostgres = (bin: string, args: string[]): [string, string[]] => (isRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args]);
    if (isRoot) {
      chownSync(work, Number(execFileSync('id', ['-u', 'postgres']).toString()), 0);
      chownSync(run_, Number(execFileSync('id', ['-u', 'postgres']).toString()), 0);
    }
    const [initCmd, initArgs] = asPostgres(join(postgresBin as string, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'gatehouse', '--no-sync', '-E', 'UTF8']);
    execFileSync(initCmd, initArgs, { stdio: 'ignore' });
    const [pgCmd, pgArgs] = asPostgres(join(postgresBin as string, 'postgres'), ['-D', data, '-k', run_, '-c', 'listen_addresses=', '-c', 'fsync=off']);
    await startService(pgCmd, pgArgs, () => existsSync(join(run_, '.s.PGSQL.5432')), 'postgres');
    await new Promise((r) => setTimeout(r, 300));

    // psql -h DIR looks for DIR/.s.PGSQL.5432: the tunnel's private socket has exactly that name.
    const localDir = join(home, 'pg');
    const t = await startTunnel([...gatewayFlags(h, alice, tokenFile, 'websocket'), '-L', `unix:${join(localDir, '.s.PGSQL.5432')}:pg`, '-L', '0:pg'], env, 2);
    try {
      const viaSocket = await run('psql', ['-h', localDir, '-U', 'gatehouse', '-d', 'postgres', '-Atc', 'create table t(v text); insert into t values ($$from a laptop$$); select count(*) from t']);
      expect(viaSocket.stderr).toBe('');
      expect(viaSocket.stdout).toBe('CREATE TABLE\nINSERT 0 1\n1\n');
      const viaPort = await run('psql', ['-h', '127.0.0.1', '-p', String(t.ready[1]?.port), '-U', 'gatehouse', '-d', 'postgres', '-Atc', 'select v from t']);
      expect(viaPort.stdout).toBe('from a laptop\n');
    } finally {
      expect(await t.stop()).toBe(0);
    }
    await expectOnePairPerTunnel('pg', 2);
  });
});

describe('64 MiB through one tunnel, each direction, both transports', () => {
  for (const transport of ['connect', 'websocket'] as const) {
    it(`${transport}: byte-identical up and down, with matching close records`, async () => {
      const t = await startTunnel([...gatewayFlags(h, alice, tokenFile, transport), '-L', '0:sink', '-L', '0:source'], env, 2);
      const before = { sink: tunnelRecords('sink').length, source: tunnelRecords('source').length };
      let up, down;
      try {
        up = await upload(t.ready[0]?.port as number, TRANSFER);
        down = await download(t.ready[1]?.port as number, TRANSFER);
      } finally {
        expect(await t.stop()).toBe(0);
      }
      expect(up.bytes).toBe(TRANSFER);
      expect(up.sha256).toBe(up.sentSha256);
      expect(down.bytes).toBe(TRANSFER);
      expect(down.sha256).toBe(keystreamSha256(TRANSFER));

      const wire = transport === 'connect' ? 'connect' : 'websocket-tunnel';
      const [sink] = (await expectOnePairPerTunnel('sink', before.sink / 2 + 1)).filter((p) => (p.open.detail as { transport?: string }).transport === wire);
      const [source] = (await expectOnePairPerTunnel('source', before.source / 2 + 1)).filter((p) => (p.open.detail as { transport?: string }).transport === wire);
      expect(sink?.close).toMatchObject({ bytesIn: TRANSFER, bytesOut: `${TRANSFER} ${up.sha256}\n`.length });
      expect(source?.close).toMatchObject({ bytesIn: `${TRANSFER}\n`.length, bytesOut: TRANSFER });
    }, 60_000);
  }
});
