// What an idle `gatehouse serve` costs: CPU per second of the process and of each of its threads
// with no traffic at all (timers and watchdogs), the floor under the low-load latency scenario's CPU.
// Usage: node bench/scratch/idle-cpu.ts [--seconds 10]
import { readdirSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createBenchEnv, startServer } from '../support/benchEnv.ts';

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '10' } } });
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
const server = await startServer(env, 'gatehouse', 1, 'gatehouse 1 process');
await new Promise((r) => setTimeout(r, 3000));
const before = threadTicks(server.pid);
const seconds = Number(args.seconds);
await new Promise((r) => setTimeout(r, seconds * 1000));
const after = threadTicks(server.pid);
let total = 0;
const rows: string[] = [];
for (const [thread, ticks] of after) {
  const used = (ticks - (before.get(thread) ?? 0)) / ticksPerSecond;
  total += used;
  if (used > 0) rows.push(`${((used / seconds) * 1000).toFixed(1).padStart(7)} ms/s  ${thread}`);
}
process.stdout.write(`idle gateway: ${((total / seconds) * 1000).toFixed(1)} ms CPU per second over ${seconds} s\n${rows.join('\n')}\n`);
await server.stop();
await env.stop();
