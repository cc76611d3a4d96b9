// Profiles gatehouse's HTTP path under the benchmark's load: `--cpu-prof` on a real `gatehouse serve`
// (1 process), the HTTP scenario's load for --seconds, then self time by function and by module.
// Usage: node bench/profile-http.ts [--seconds 10] [--top 30]
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createBenchEnv, startServer } from './support/benchEnv.ts';
import { runLoad } from './support/loadGenerator.ts';
import { sourceFilesOnStacks, summarize, type Profile } from './support/cpuProfile.ts';

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, top: { type: 'string', default: '30' } } });

const env = await createBenchEnv();
const profDir = join(env.dir, 'profiles');
const server = await startServer(env, 'gatehouse', 1, 'gatehouse 1 process', ['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
const r = await runLoad({ mode: 'http', target: server.target, connections: 32, seconds: Number(args.seconds), warmupSeconds: 2, token: env.token });
await server.stop();
process.stdout.write(`load: ${r.perSecond.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, errors ${r.errors}, load generator ${r.loadCpuCores.toFixed(2)} cores\n\n`);
// One profile per thread: the largest is the main thread (the others are authorization workers).
const files = readdirSync(profDir).map((f) => join(profDir, f)).sort((a, b) => readFileSync(b).length - readFileSync(a).length);
const kept = join(import.meta.dirname, 'results', `http-main-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
if (files[0]) copyFileSync(files[0], kept);
process.stdout.write(`main-thread profile kept as ${kept} (open in Chrome DevTools or speedscope)\n\n`);
if (files[0]) {
  // The files a request passes through, as sampled under load (a lower bound: a file too quick to be sampled is missed).
  const onPath = sourceFilesOnStacks(JSON.parse(readFileSync(files[0], 'utf8')) as Parameters<typeof sourceFilesOnStacks>[0]);
  process.stdout.write(`source files on the main thread's stacks under load: ${onPath.length}\n${onPath.map((f) => `  ${f}`).join('\n')}\n\n`);
}
for (const [i, f] of files.entries()) {
  process.stdout.write(`## ${i === 0 ? 'main thread' : `thread ${i}`} (${f})\n\n${summarize(JSON.parse(readFileSync(f, 'utf8')) as Profile, i === 0 ? Number(args.top) : 8)}\n\n`);
}
await env.stop();
