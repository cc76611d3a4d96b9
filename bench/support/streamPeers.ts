// The tunnel benchmark's peers: a local sshd with `ssh -L`, socat, and nginx `stream` with mTLS, each
// giving local TCP ports that lead to the same UNIX-socket sink and source; skipped with a reason when missing.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startListening, which, type PeerProcess, type Sshd } from '../../test/support/localServices.ts';

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
