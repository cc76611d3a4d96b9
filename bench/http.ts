// HTTP benchmark: small responses from one UNIX-socket upstream, 32 keep-alive mTLS connections,
// through gatehouse and through its peers (nginx, HAProxy, and direct to the socket) in one run.
// Usage: npm run bench:http [-- --seconds 8 --rounds 3 --connections 32]
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { initPki, issueClientCertificate } from '../src/pki/index.ts';
import { mintToken } from '../src/token/mintToken.ts';
import { readPrivateKey, writeKeyPair } from '../src/token/keyFiles.ts';
import { waitForOutput } from './support/benchEnv.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    only: { type: 'string' },
  },
});
const seconds = Number(args.seconds);
const rounds = Number(args.rounds);
const connections = Number(args.connections);
const repo = resolve(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'));
const sock = join(dir, 'upstream.sock');

interface Peer {
  name: string;
  url: string;
  tls: boolean;
  start(): Promise<ChildProcess | undefined>;
}

async function startProc(cmd: string, argv: string[], ready?: RegExp): Promise<ChildProcess> {
  const proc = spawn(cmd, argv, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  // A peer that prints nothing when ready gets half a second.
  if (ready) await waitForOutput(proc, ready, 15_000);
  else await new Promise((r) => setTimeout(r, 500));
  return proc;
}

/** The upstream: a minimal HTTP server on a UNIX socket, in its own process so it has its own event loop. */
async function startUpstream(): Promise<ChildProcess> {
  const code = `require('http').createServer((q,s)=>{s.writeHead(200,{'content-type':'text/plain','content-length':3});s.end('ok\\n')}).listen(${JSON.stringify(sock)},()=>console.log('up'))`;
  const proc = await startProc(process.execPath, ['-e', code], /up/);
  // nginx workers run as an unprivileged user: let them reach the socket.
  chmodSync(dir, 0o755);
  chmodSync(sock, 0o666);
  return proc;
}

async function setup() {
  const certs = join(dir, 'certs');
  await initPki({ dir: certs });
  const client = await issueClientCertificate({ dir: certs, name: 'bench' });
  const keys = writeKeyPair(join(certs, 'root.key'), join(certs, 'root.pub'));
  if (!keys.ok) throw new Error(keys.error.message);
  const key = readPrivateKey(join(certs, 'root.key'));
  if (!key.ok) throw new Error(key.error.message);
  const token = mintToken({ privateKey: key.value, user: 'bench', ttlSeconds: 3600 });
  if (!token.ok) throw new Error(token.error.message);
  writeFileSync(join(certs, 'revoked.txt'), '');
  return { certs, client, token: token.value };
}

function peers(certs: string): Peer[] {
  const port = { gatehouse: 18443, nginx: 18444, haproxy: 18445 };
  const pem = (f: string) => join(certs, f);
  return [
    {
      name: 'direct (no TLS)',
      url: 'http://localhost',
      tls: false,
      start: async () => undefined,
    },
    {
      name: 'nginx 1 worker',
      url: `https://localhost:${port.nginx}`,
      tls: true,
      start: async () => {
        writeFileSync(join(dir, 'nginx.conf'), `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err;
events { worker_connections 1024; }
http { access_log off; upstream u { server unix:${sock}; keepalive 64; }
  server { listen 127.0.0.1:${port.nginx} ssl; ssl_certificate ${pem('server.crt')}; ssl_certificate_key ${pem('server.key')};
    ssl_client_certificate ${pem('ca.crt')}; ssl_verify_client on;
    location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; } } }`);
        return startProc('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], undefined);
      },
    },
    {
      name: 'haproxy 1 thread',
      url: `https://localhost:${port.haproxy}`,
      tls: true,
      start: async () => {
        writeFileSync(join(dir, 'server.pem'), readFileSync(pem('server.crt'), 'utf8') + readFileSync(pem('server.key'), 'utf8'));
        writeFileSync(join(dir, 'haproxy.cfg'), `global\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  option http-keep-alive\nfrontend f\n  bind 127.0.0.1:${port.haproxy} ssl crt ${dir}/server.pem ca-file ${pem('ca.crt')} verify required\n  default_backend b\nbackend b\n  server s unix@${sock}\n`);
        return startProc('haproxy', ['-f', join(dir, 'haproxy.cfg')], undefined);
      },
    },
    {
      name: 'gatehouse',
      url: `https://localhost:${port.gatehouse}`,
      tls: true,
      start: async () => {
        writeFileSync(join(dir, 'routes.yaml'), `listen:\n  - tcp: 127.0.0.1:${port.gatehouse}\ntls:\n  cert: certs/server.crt\n  key: certs/server.key\n  clientCa: certs/ca.crt\nauthz:\n  rootKey: certs/root.pub\n  revocationList: certs/revoked.txt\naudit:\n  file: audit.log\nlimits:\n  requestsPerSecond: 1000000\n  requestBurst: 1000000\nroutes:\n  - name: bench\n    path: /\n    upstream: unix:${sock}\n    policy: |\n      allow if user($u);\n`);
        return startProc(process.execPath, [join(repo, 'bin', 'gatehouse.js'), 'serve', '--config', join(dir, 'routes.yaml')], /listening on/);
      },
    },
  ].filter((p) => !args.only || p.name.startsWith(args.only));
}

interface Result {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function load(peer: Peer, tls: { cert: Buffer; key: Buffer; ca: Buffer }, token: string): Promise<Result> {
  const pool = new Pool(peer.url, {
    connections,
    pipelining: 1,
    ...(peer.tls ? { connect: { ...tls, servername: 'localhost' } } : { socketPath: sock }),
  });
  const headers = { authorization: `Bearer ${token}` };
  const latencies: number[] = [];
  let errors = 0;
  const warmUntil = performance.now() + 1000;
  const until = warmUntil + seconds * 1000;
  const worker = async () => {
    while (performance.now() < until) {
      const t0 = performance.now();
      try {
        const res = await pool.request({ path: '/bench', method: 'GET', headers });
        await res.body.text();
        if (res.statusCode !== 200) errors++;
      } catch {
        errors++;
      }
      if (t0 >= warmUntil) latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  await pool.close();
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return { rps: latencies.length / seconds, p50: q(0.5), p99: q(0.99), errors };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function main() {
  const { certs, client, token } = await setup();
  const tls = { cert: readFileSync(client.cert), key: readFileSync(client.key), ca: readFileSync(join(certs, 'ca.crt')) };
  const upstream = await startUpstream();
  const list = peers(certs).filter((p) => p.name.startsWith('direct') || p.name.startsWith('gatehouse') || existsSync(`/usr/sbin/${p.name.split(' ')[0]}`));
  const results = new Map<string, Result[]>();
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const peer of list) {
        const proc = await peer.start();
        try {
          const r = await load(peer, tls, token);
          results.set(peer.name, [...(results.get(peer.name) ?? []), r]);
          console.error(`round ${round} ${peer.name}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, errors ${r.errors}`);
        } finally {
          proc?.kill('SIGTERM');
          await new Promise((r) => setTimeout(r, 300));
        }
      }
    }
  } finally {
    upstream.kill();
  }
  const ref = median(results.get('nginx 1 worker')?.map((r) => r.rps) ?? [NaN]);
  console.log(`\nHTTP, ${connections} keep-alive connections, ${seconds} s x ${rounds} rounds, medians (machine: ${(await import('node:os')).cpus().length} cores)`);
  console.log('peer               req/s    p50 ms   p99 ms   errors  vs nginx');
  for (const [name, rs] of results) {
    const rps = median(rs.map((r) => r.rps));
    console.log(
      `${name.padEnd(17)} ${rps.toFixed(0).padStart(7)} ${median(rs.map((r) => r.p50)).toFixed(2).padStart(8)} ${median(rs.map((r) => r.p99)).toFixed(2).padStart(8)} ${String(rs.reduce((n, r) => n + r.errors, 0)).padStart(8)}  ${Number.isNaN(ref) ? '-' : (rps / ref).toFixed(2)}`,
    );
  }
}

await main();
