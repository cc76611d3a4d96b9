// Real local services for tests and benchmarks: find a program, pick a free loopback port, start a
// process and wait until it listens, and a private sshd with its own keys (key-only login).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { delimiter, join } from 'node:path';

/** The absolute path of `bin` on PATH (or `bin` itself when absolute and present). */
export function which(bin: string): string | undefined {
  if (bin.startsWith('/')) return existsSync(bin) ? bin : undefined;
  return (process.env.PATH ?? '').split(delimiter).map((d) => join(d, bin)).find((p) => existsSync(p));
}

/** A loopback port free right now (for programs that cannot report the port they bound). */
export function freePort(): Promise<number> {
  return new Promise((ok) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

/** True when something listens on 127.0.0.1:`port` (read from /proc, so no probe connection reaches the peer). */
function listening(port: number): boolean {
  const hex = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'utf8').split('\n').some((l) => l.includes(` ${hex} `) && / 0A /.test(l));
}

/** Waits until something listens on 127.0.0.1:`port` (up to `timeoutMs`). */
export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!listening(port)) {
    if (Date.now() > until) throw new Error(`nothing listens on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface PeerProcess {
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** Spawns `cmd` and waits until every port in `ports` listens (or the process exits: then throws with its stderr). */
export async function startListening(cmd: string, args: string[], ports: number[], what: string): Promise<PeerProcess> {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const stop = () =>
    new Promise<void>((ok) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return ok();
      proc.once('exit', () => ok());
      proc.kill('SIGTERM');
    });
  const until = Date.now() + 15_000;
  while (!ports.every(listening)) {
    if (proc.exitCode !== null || Date.now() > until) {
      await stop();
      throw new Error(`${what} did not start (exit ${proc.exitCode}):\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, stop };
}

export interface Sshd extends PeerProcess {
  port: number;
  identityFile: string;
  user: string;
}

/**
 * A private sshd on a loopback port (`listenPort`, or a free one) with a fresh host key and one
 * authorized user key, in `dir`.
 * As root it needs /run/sshd (privilege separation) and permits key-only root login.
 */
export async function startSshd(dir: string, listenPort?: number): Promise<Sshd> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const key = (name: string) => execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, name)]);
  key('host_key');
  key('id_user');
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'id_user.pub')));
  const port = listenPort ?? (await freePort());
  const config = [
    `ListenAddress 127.0.0.1:${port}`,
    `HostKey ${join(dir, 'host_key')}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    'PermitRootLogin prohibit-password',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes no',
    'AllowStreamLocalForwarding yes',
    'LogLevel ERROR',
  ];
  writeFileSync(join(dir, 'sshd_config'), config.join('\n') + '\n');
  const sshd = await startListening('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], [port], 'sshd');
  return { ...sshd, port, identityFile: join(dir, 'id_user'), user: userInfo().username };
}
