// A real, throw-away PostgreSQL for one test file: initdb in a temporary directory, a free loopback port,
// its socket in that directory, run as an unprivileged user (postgres when the tests run as root), fsync off.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { migrate } from '../../src/cluster/migrations.ts';
import { freePort } from './localServices.ts';

/** The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/<major>/bin). */
export const postgresBin = ['/usr/lib/postgresql']
  .flatMap((d) => (existsSync(d) ? readdirSync(d).sort((a, b) => Number(b) - Number(a)).map((v) => join(d, v, 'bin')) : []))
  .find((d) => existsSync(join(d, 'initdb')) && existsSync(join(d, 'postgres')));

/** A test name suffix saying why the test is skipped, or '' when PostgreSQL is installed. */
export const postgresSkipReason = postgresBin ? '' : ' [skipped: PostgreSQL (initdb, postgres) not installed; .ci/run installs the postgresql package]';

const isRoot = process.getuid?.() === 0;

export interface TestPostgres {
  /** Connection URL for the superuser `gatehouse` (trust authentication on loopback), database `postgres`. */
  readonly url: string;
  readonly port: number;
  /** The temporary directory: data/ and the server's UNIX socket. */
  readonly dir: string;
  /** Fast shutdown (clients are disconnected); the data stays, `start()` brings it back on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Freezes the server (SIGSTOP on the postmaster and its backends) until `resume()`: a database that hangs. */
  pause(): void;
  resume(): void;
  /** Stops the server and removes the directory. */
  remove(): Promise<void>;
}

/** As root, PostgreSQL refuses to run: run its programs as the postgres user, which owns the directory. */
const serverUser: { uid?: number; gid?: number } = isRoot ? { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) } : {};

export async function startPostgres(): Promise<TestPostgres> {
  if (!postgresBin) throw new Error('PostgreSQL is not installed');
  const bin = postgresBin;
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-pg-'));
  if (serverUser.uid !== undefined && serverUser.gid !== undefined) chownSync(dir, serverUser.uid, serverUser.gid);
  const data = join(dir, 'data');
  execFileSync(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'gatehouse', '--no-sync', '-E', 'UTF8', '--no-instructions'], { stdio: 'ignore', cwd: dir, ...serverUser });
  const port = await freePort();
  let server: ChildProcess | undefined;

  const start = async (): Promise<void> => {
    // Durability is worthless for a test database: no fsync, no full pages, commits return at once.
    const settings = ['listen_addresses=127.0.0.1', `port=${port}`, `unix_socket_directories=${dir}`, 'fsync=off', 'synchronous_commit=off', 'full_page_writes=off', 'max_connections=200'];
    const child = spawn(join(bin, 'postgres'), ['-D', data, ...settings.flatMap((s) => ['-c', s])], { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir, ...serverUser });
    server = child;
    let log = '';
    await new Promise<void>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`postgres did not start:\n${log}`)), 30_000);
      child.stderr?.on('data', (d: Buffer) => {
        log += d.toString();
        if (log.includes('database system is ready to accept connections')) {
          clearTimeout(timer);
          ok();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        fail(new Error(`postgres exited with ${code}:\n${log}`));
      });
    });
    // Keep draining its log so the pipe never fills.
    child.stderr?.resume();
  };

  const stop = async (): Promise<void> => {
    const child = server;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    // SIGINT is PostgreSQL's fast shutdown (a paused server is woken first to hear it).
    await new Promise<void>((ok) => {
      child.once('exit', () => ok());
      signalAll('SIGCONT');
      child.kill('SIGINT');
    });
    server = undefined;
  };

  /** The postmaster and every backend (its children). */
  const signalAll = (signal: 'SIGSTOP' | 'SIGCONT'): void => {
    const root = server?.pid;
    if (root === undefined) return;
    const rows = execFileSync('ps', ['-e', '-o', 'pid=,ppid=']).toString().trim().split('\n');
    const children = rows.map((l) => l.trim().split(/\s+/).map(Number)).flatMap(([pid, ppid]) => (ppid === root && pid !== undefined ? [pid] : []));
    for (const pid of [root, ...children]) process.kill(pid, signal);
  };

  await start();
  return {
    url: `postgres://gatehouse@127.0.0.1:${port}/postgres`,
    port,
    dir,
    stop,
    start,
    pause: () => signalAll('SIGSTOP'),
    resume: () => signalAll('SIGCONT'),
    async remove() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A started server with the cluster schema migrated in, as every gateway of a cluster test expects it. */
export async function startMigratedPostgres(): Promise<TestPostgres> {
  const db = await startPostgres();
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await migrate(client, 'test');
  } finally {
    await client.end();
  }
  return db;
}
