// The benchmark's world: a dev PKI, a token, the UNIX-socket upstreams (HTTP and a holder for idle
// tunnels), and the servers under test (gatehouse, nginx, HAProxy), each started on demand with a config.
import { type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { initPki, issueClientCertificate } from '../../src/pki/index.ts';
import { mintToken } from '../../src/token/mintToken.ts';
import { readPrivateKey, writeKeyPair } from '../../src/token/keyFiles.ts';
import { freePort } from '../../test/support/localServices.ts';
import { nginxStreamModule } from './streamPeers.ts';
import { spawnWithFds } from './loadGenerator.ts';
import type { Target } from './loadWorker.ts';

const repo = resolve(import.meta.dirname, '..', '..');
/**
 * Descriptors for the servers: as many as the hard limit allows (raising it needs privileges a
 * container may not have). A proxy holds two per tunnel, so this caps the idle-tunnel scenario.
 */
export const SERVER_FDS = Math.min(65536, hardFdLimit());

function hardFdLimit(): number {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  const hard = line?.trim().split(/\s+/)[4];
  return hard === undefined || hard === 'unlimited' ? 65536 : Number(hard);
}

/** The most idle tunnels a proxy can hold here: two descriptors each, some to spare. */
export const maxIdleTunnels = (): number => Math.floor((SERVER_FDS - 400) / 2);

export interface BenchEnv {
  dir: string;
  certs: string;
  token: string;
  tls: { cert: string; key: string; ca: string };
  httpSocket: string;
  holdSocket: string;
  stop(): Promise<void>;
}

export interface RunningServer {
  name: string;
  pid: number;
  target: Target;
  stop(): Promise<void>;
}

export type ServerKind = 'gatehouse' | 'nginx' | 'haproxy' | 'nginx-stream';

/** Why a peer cannot run here (its package is missing), or undefined when it can. */
export function missingPeer(kind: ServerKind): string | undefined {
  if (kind === 'gatehouse') return undefined;
  if (kind === 'haproxy') return existsSync('/usr/sbin/haproxy') ? undefined : 'haproxy not installed (Debian package haproxy)';
  if (!existsSync('/usr/sbin/nginx')) return 'nginx not installed (Debian package nginx)';
  if (kind === 'nginx-stream' && nginxStreamModule() === undefined) return 'nginx stream module not installed (Debian package libnginx-mod-stream)';
  return undefined;
}

/** Waits until `proc` prints `pattern` on stdout or stderr; fails when it exits first or `ms` passes. */
export function waitForOutput(proc: ChildProcess, pattern: RegExp, ms = 30_000): Promise<void> {
  return new Promise((ok, fail) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`timed out waiting for ${pattern}: ${out}`)), ms);
    const on = (d: Buffer) => {
      out += d.toString();
      if (pattern.test(out)) {
        clearTimeout(timer);
        ok();
      }
    };
    proc.stdout?.on('data', on);
    proc.stderr?.on('data', on);
    proc.once('exit', (code) => (clearTimeout(timer), fail(new Error(`exited ${code}: ${out.slice(-2000)}`))));
  });
}

async function waitForPort(port: number, proc: ChildProcess): Promise<void> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  for (let i = 0; i < 300; i++) {
    if (proc.exitCode !== null) throw new Error(`exited ${proc.exitCode}`);
    if (readFileSync('/proc/net/tcp', 'utf8').split('\n').some((l) => l.includes(hex) && / 0A /.test(l))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`port ${port} never listened`);
}

function stopper(proc: ChildProcess, graceMs = 20_000): () => Promise<void> {
  return () =>
    new Promise((ok) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return ok();
      proc.once('exit', () => ok());
      proc.kill('SIGTERM');
      setTimeout(() => proc.kill('SIGKILL'), graceMs).unref();
    });
}

export async function createBenchEnv(): Promise<BenchEnv> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'));
  const certs = join(dir, 'certs');
  await initPki({ dir: certs });
  const client = await issueClientCertificate({ dir: certs, name: 'bench' });
  const keys = writeKeyPair(join(certs, 'root.key'), join(certs, 'root.pub'));
  if (!keys.ok) throw new Error(keys.error.message);
  const key = readPrivateKey(join(certs, 'root.key'));
  if (!key.ok) throw new Error(key.error.message);
  const token = mintToken({ privateKey: key.value, user: 'bench', ttlSeconds: 4 * 3600 });
  if (!token.ok) throw new Error(token.error.message);
  writeFileSync(join(certs, 'revoked.txt'), '');
  const httpSocket = join(dir, 'upstream.sock');
  const holdSocket = join(dir, 'hold.sock');
  // The upstreams run in their own processes (own event loops). The holder keeps idle tunnels, discards
  // what it is sent (a sink), and answers `SEND <n>\n` with n bytes (a source).
  const code = `const n=require('net'),h=require('http');
h.createServer((q,s)=>{s.writeHead(200,{'content-type':'text/plain','content-length':3});s.end('ok\\n')}).listen(${JSON.stringify(httpSocket)},()=>{
n.createServer({allowHalfOpen:true},(s)=>{s.on('error',()=>{});let first=true;const z=Buffer.alloc(1<<20);
s.on('data',(d)=>{if(!first)return;first=false;const m=/^SEND (\\d+)\\n/.exec(d.toString('latin1',0,32));if(!m)return;let left=+m[1];
const pump=()=>{while(left>0){const c=left>=z.length?z:z.subarray(0,left);left-=c.length;if(!s.write(c))return void s.once('drain',pump)}s.end()};pump()});
s.on('end',()=>s.end())}).listen(${JSON.stringify(holdSocket)},()=>console.log('up'))})`;
  const upstream = spawnWithFds(process.execPath, ['-e', code], SERVER_FDS, { cwd: dir });
  await waitForOutput(upstream, /up/);
  // nginx and HAProxy workers may run as another user: let them reach the sockets.
  chmodSync(dir, 0o755);
  chmodSync(httpSocket, 0o666);
  chmodSync(holdSocket, 0o666);
  return { dir, certs, token: token.value, tls: { cert: client.cert, key: client.key, ca: join(certs, 'ca.crt') }, httpSocket, holdSocket, stop: async () => {
    await stopper(upstream)();
    rmSync(dir, { recursive: true, force: true });
  } };
}

/** Direct to the HTTP upstream's socket, no TLS: the floor every proxy adds to. */
export function directTarget(env: BenchEnv): Target {
  return { url: 'http://localhost', socketPath: env.httpSocket };
}

/**
 * Starts one server under test. `processes`: gatehouse `--processes`, nginx `worker_processes`,
 * HAProxy `nbthread` (1 = per core; 'auto' = the whole machine).
 */
export async function startServer(env: BenchEnv, kind: ServerKind, processes: 1 | 'auto', name: string, nodeArgs: string[] = [], checkout = repo): Promise<RunningServer> {
  const port = await freePort();
  const pem = (f: string) => join(env.certs, f);
  const cores = availableParallelism();
  const tag = `${kind}-${processes}${checkout === repo ? '' : '-baseline'}`;
  let proc: ChildProcess;
  if (kind === 'gatehouse') {
    // Limits raised past what the bench opens: it measures the path, not the limits.
    const config = `listen:\n  - tcp: 127.0.0.1:${port}\ntls:\n  cert: ${pem('server.crt')}\n  key: ${pem('server.key')}\n  clientCa: ${pem('ca.crt')}\nauthz:\n  rootKey: ${pem('root.pub')}\n  revocationList: ${pem('revoked.txt')}\naudit:\n  file: ${join(env.dir, `audit-${tag}`, 'audit.log')}\nlimits:\n  connections: 30000\n  connectionsPerSource: 30000\n  tunnelsPerIdentity: 30000\n  requestsPerSecond: 1000000\n  requestBurst: 1000000\nroutes:\n  - name: bench\n    path: /\n    upstream: unix:${env.httpSocket}\n    policy: |\n      allow if user($u);\n  - name: hold\n    protocols: [tcp]\n    upstream: unix:${env.holdSocket}\n    policy: |\n      allow if user($u);\n`;
    const file = join(env.dir, `${tag}.yaml`);
    writeFileSync(file, config);
    const args = [...nodeArgs, join(checkout, 'bin', 'gatehouse.js'), 'serve', '--config', file, ...(processes === 1 ? [] : ['--processes', 'auto'])];
    proc = spawnWithFds(process.execPath, args, SERVER_FDS, { cwd: env.dir });
    await waitForOutput(proc, /listening on/);
  } else if (kind === 'nginx' || kind === 'nginx-stream') {
    const module = kind === 'nginx-stream' ? nginxStreamModule() : '';
    const tlsConf = `ssl_certificate ${pem('server.crt')}; ssl_certificate_key ${pem('server.key')}; ssl_client_certificate ${pem('ca.crt')}; ssl_verify_client on;`;
    const body = kind === 'nginx'
      ? `http { access_log off; upstream u { server unix:${env.httpSocket}; keepalive 64; }
  server { listen 127.0.0.1:${port} ssl; ${tlsConf} ssl_session_cache shared:SSL:10m;
    location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; } } }`
      : `stream { server { listen 127.0.0.1:${port} ssl; ${tlsConf} proxy_pass unix:${env.holdSocket}; proxy_half_close on; } }`;
    const conf = `${module ? `load_module ${module};` : ''}
worker_processes ${processes}; worker_rlimit_nofile ${SERVER_FDS}; daemon off; pid ${env.dir}/${tag}.pid; error_log ${env.dir}/${tag}.err;
${process.getuid?.() === 0 ? 'user root;' : ''}
events { worker_connections ${SERVER_FDS - 100}; }
${body}\n`;
    writeFileSync(join(env.dir, `${tag}.conf`), conf);
    proc = spawnWithFds('/usr/sbin/nginx', ['-c', join(env.dir, `${tag}.conf`), '-p', env.dir], SERVER_FDS, { cwd: env.dir });
    await waitForPort(port, proc);
  } else {
    writeFileSync(join(env.dir, 'server.pem'), readFileSync(pem('server.crt'), 'utf8') + readFileSync(pem('server.key'), 'utf8'));
    const cfg = `global\n  nbthread ${processes === 1 ? 1 : cores}\n  maxconn ${Math.floor((SERVER_FDS - 100) / 2)}\ndefaults\n  mode http\n  maxconn ${Math.floor((SERVER_FDS - 100) / 2)}\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  option http-keep-alive\nfrontend f\n  bind 127.0.0.1:${port} ssl crt ${env.dir}/server.pem ca-file ${pem('ca.crt')} verify required\n  default_backend b\nbackend b\n  server s unix@${env.httpSocket}\n`;
    writeFileSync(join(env.dir, `${tag}.cfg`), cfg);
    proc = spawnWithFds('/usr/sbin/haproxy', ['-f', join(env.dir, `${tag}.cfg`)], SERVER_FDS, { cwd: env.dir });
    await waitForPort(port, proc);
  }
  proc.stdout?.resume();
  proc.stderr?.resume();
  return { name, pid: proc.pid as number, target: { url: `https://localhost:${port}`, tls: env.tls }, stop: stopper(proc) };
}
