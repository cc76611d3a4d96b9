// What a `gatehouse serve` costs by thread: CPU per second of the process and of each of its threads,
// idle (timers and watchdogs) or under the HTTP or low-load latency scenario's load (`--load`).
// Usage: node bench/idle-cpu.ts [--seconds 10] [--load none|http|latency] [--profile out.cpuprofile] [--node-arg --flag ...]
import { copyFileSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createBenchEnv, startServer } from './support/benchEnv.ts';
import { runLoad } from './support/loadGenerator.ts';

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, load: { type: 'string', default: 'none' }, profile: { type: 'string' }, 'node-arg': { type: 'string', multiple: true, default: [] } } });
const ticksPerSecond = 100;

/** utime + stime in clock ticks, by thread id (name in parentheses), from /proc. */
function threadTicks(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    const name = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    out.set(`${tid} ${name}`, Number(fields[11]) + Number(fields[12]));
  }
  return out;
}

const env = await createBenchEnv();
const profDir = join(env.dir, 'profiles');
const server = await startServer(env, 'gatehouse', 1, 'gatehouse 1 process', [...args['node-arg'], ...(args.profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [])]);
await new Promise((r) => setTimeout(r, 3000));
const seconds = Number(args.seconds);
let before = threadTicks(server.pid);
let requests = 0;
if (args.load === 'none') await new Promise((r) => setTimeout(r, seconds * 1000));
else {
  // The load's own warm-up is left out of the window: the threads are read when the measured part starts.
  setTimeout(() => (before = threadTicks(server.pid)), 2000);
  const load = await runLoad(args.load === 'latency' ? { mode: 'latency', target: server.target, rate: 200, seconds, warmupSeconds: 2, token: env.token } : { mode: 'http', target: server.target, connections: 32, seconds, warmupSeconds: 2, token: env.token }, args.load === 'latency' ? 1 : undefined);
  requests = load.perSecond * seconds;
}
const after = threadTicks(server.pid);
let total = 0;
const rows: string[] = [];
for (const [thread, ticks] of after) {
  const used = (ticks - (before.get(thread) ?? 0)) / ticksPerSecond;
  total += used;
  if (used > 0) rows.push(`${((used / seconds) * 1000).toFixed(1).padStart(7)} ms/s  ${thread}`);
}
const perRequest = requests > 0 ? `, ${((total / requests) * 1e6).toFixed(0)} µs per request (${requests.toFixed(0)} requests)` : '';
process.stdout.write(`gateway, load ${args.load}: ${((total / seconds) * 1000).toFixed(1)} ms CPU per second over ${seconds} s${perRequest}\n${rows.join('\n')}\n`);
await server.stop();
if (args.profile) {
  // The largest profile is the main thread's.
  const main = readdirSync(profDir).map((f) => join(profDir, f)).sort((a, b) => statSync(b).size - statSync(a).size)[0];
  if (main) copyFileSync(main, args.profile);
}
await env.stop();
