// The tunnel benchmark's peers: a local sshd with `ssh -L`, socat, and nginx `stream` with mTLS, each
// giving local TCP ports that lead to the same UNIX-socket sink and source; skipped with a reason when missing.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
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
 * A private sshd on a loopback port with a fresh host key and one authorized user key, in `dir`.
 * As root it needs /run/sshd (privilege separation) and permits key-only root login.
 */
export async function startSshd(dir: string): Promise<Sshd> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const key = (name: string) => execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, name)]);
  key('host_key');
  key('id_user');
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'id_user.pub')));
  const port = await freePort();
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

/** A forwarding from a local TCP port to a UNIX socket. */
export interface Forward {
  port: number;
  socket: string;
}

/** `ssh -N -L 127.0.0.1:PORT:SOCKET ...` to `sshd`, default ciphers. */
export function sshForward(sshd: Sshd, forwards: Forward[]): Promise<PeerProcess> {
  const args = ['-N', '-F', '/dev/null', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'ExitOnForwardFailure=yes', '-o', 'LogLevel=ERROR', '-i', sshd.identityFile, '-p', String(sshd.port)];
  for (const f of forwards) args.push('-L', `127.0.0.1:${f.port}:${f.socket}`);
  return startListening('ssh', [...args, `${sshd.user}@127.0.0.1`], forwards.map((f) => f.port), 'ssh -L');
}

/**
 * socat from a local TCP port to `target` (a socat address), one child per connection, 64 KiB reads.
 * `-t 600`: after one side's EOF socat keeps copying the other direction (half-close), not just 0.5 s.
 */
export function socatForward(port: number, target: string): Promise<PeerProcess> {
  return startListening('socat', ['-b', '65536', '-t', '600', `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, target], [port], 'socat');
}

export interface TlsFiles {
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** The stream module's path when nginx loads it dynamically, '' when built in, undefined when absent. */
export function nginxStreamModule(): string | undefined {
  const nginx = which('nginx') ?? which('/usr/sbin/nginx');
  if (!nginx) return undefined;
  const configure = spawnSync(nginx, ['-V'], { encoding: 'utf8' }).stderr;
  if (/--with-stream(?:\s|$)/.test(configure) && !/--with-stream=dynamic/.test(configure)) return '';
  return ['/usr/lib/nginx/modules/ngx_stream_module.so', '/usr/lib64/nginx/modules/ngx_stream_module.so'].find((p) => existsSync(p));
}

/**
 * nginx (1 worker) terminating mTLS (`ssl_verify_client on`) on loopback ports and proxying each to a UNIX
 * socket with half-close; the worker runs as the current user so it can reach the sockets.
 */
export async function nginxStreamMtls(dir: string, module: string, tls: TlsFiles, forwards: Forward[]): Promise<PeerProcess> {
  mkdirSync(dir, { recursive: true });
  const servers = forwards.map((f) => `  server { listen 127.0.0.1:${f.port} ssl; proxy_pass unix:${f.socket}; proxy_half_close on; }`);
  const conf = [
    module ? `load_module ${module};` : '',
    `worker_processes 1; daemon off; pid ${join(dir, 'nginx.pid')}; error_log ${join(dir, 'nginx.err')};`,
    process.getuid?.() === 0 ? 'user root;' : '',
    'events { worker_connections 1024; }',
    'stream {',
    `  ssl_certificate ${tls.serverCert}; ssl_certificate_key ${tls.serverKey};`,
    `  ssl_client_certificate ${tls.caCert}; ssl_verify_client on;`,
    ...servers,
    '}',
  ];
  writeFileSync(join(dir, 'nginx.conf'), conf.join('\n') + '\n');
  return startListening('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], forwards.map((f) => f.port), 'nginx');
}

/** The socat address of a TLS client presenting the client certificate and verifying the server as `localhost`. */
export function socatTlsClient(port: number, tls: TlsFiles): string {
  return `OPENSSL:127.0.0.1:${port},cert=${tls.clientCert},key=${tls.clientKey},cafile=${tls.caCert},commonname=localhost,verify=1`;
}
