// The forwarding designs compared (not part of `npm run bench`): the HTTP scenario's load
// against minimal mTLS proxies in several forwarding designs, nginx and gatehouse, in one run.
// Usage: node bench/forwarding-designs.ts [--seconds 8] [--rounds 3]
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../test/support/localServices.ts';
import { createBenchEnv, missingPeer, startServer, type BenchEnv, type RunningServer } from './support/benchEnv.ts';
import { runLoad } from './support/loadGenerator.ts';
import { cpuDuring } from './support/procStats.ts';
import { median } from './support/scenarios.ts';

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '8' }, rounds: { type: 'string', default: '3' } } });
const variants = ['http-proxy-3', 'http-proxy-3-fetch', 'node-http', 'undici-pool'];

async function startVariant(env: BenchEnv, variant: string): Promise<RunningServer> {
  const port = await freePort();
  const proc = spawn(process.execPath, [join(import.meta.dirname, 'support', 'forwardingDesignProxy.ts'), variant, String(port), env.httpSocket, join(env.certs, 'server.crt'), join(env.certs, 'server.key'), join(env.certs, 'ca.crt')], { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((ok, fail) => {
    proc.stderr?.on('data', (d: Buffer) => (/listening/.test(d.toString()) ? ok() : undefined));
    proc.once('exit', (code) => fail(new Error(`${variant} exited ${code}`)));
  });
  return { name: variant, pid: proc.pid as number, target: { url: `https://localhost:${port}`, tls: env.tls }, stop: () => new Promise((ok) => (proc.once('exit', () => ok()), proc.kill('SIGTERM'))) };
}

const env = await createBenchEnv();
const results = new Map<string, Array<{ rps: number; p99: number; cpu: number | undefined }>>();
try {
  const names = [...(missingPeer('nginx') ? [] : ['nginx 1 worker']), ...variants, 'gatehouse 1 process'];
  for (let round = 1; round <= Number(args.rounds); round++) {
    for (const name of names) {
      const server = name.startsWith('nginx') ? await startServer(env, 'nginx', 1, name) : name.startsWith('gatehouse') ? await startServer(env, 'gatehouse', 1, name) : await startVariant(env, name);
      try {
        const { value: r, cores } = await cpuDuring(server.pid, () => runLoad({ mode: 'http', target: server.target, connections: 32, seconds: Number(args.seconds), warmupSeconds: 2, token: env.token }));
        results.set(name, [...(results.get(name) ?? []), { rps: r.perSecond, p99: r.p99, cpu: cores }]);
        process.stderr.write(`round ${round} ${name}: ${r.perSecond.toFixed(0)} req/s, p99 ${r.p99.toFixed(1)} ms, errors ${r.errors}${r.firstError ? ` (${r.firstError})` : ''}, server ${cores?.toFixed(2)} cores, load ${r.loadCpuCores.toFixed(2)} cores\n`);
      } finally {
        await server.stop();
      }
    }
  }
} finally {
  await env.stop();
}
const ref = median(results.get('nginx 1 worker')?.map((r) => r.rps) ?? []);
const base = median(results.get('http-proxy-3')?.map((r) => r.rps) ?? []);
console.log(`\n| server | req/s | p99 ms | server cores | vs nginx | vs http-proxy-3 |\n| --- | ---: | ---: | ---: | ---: | ---: |`);
for (const [name, rs] of results) {
  const rps = median(rs.map((r) => r.rps));
  console.log(`| ${name} | ${rps.toFixed(0)} | ${median(rs.map((r) => r.p99)).toFixed(1)} | ${median(rs.map((r) => r.cpu ?? NaN)).toFixed(2)} | ${(rps / ref).toFixed(2)} | ${(rps / base).toFixed(2)} |`);
}
