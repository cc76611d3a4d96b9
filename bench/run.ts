// `npm run bench`: every scenario against every peer installed on this machine, in one run; writes
// JSON, a Markdown table and an SVG chart of the ratios to bench/results/ (see bench/README.md).
// Usage: npm run bench [-- --quick] [--only http,latency,handshake,idle,tunnel,parallel,server-tunnel,udp] [--seconds 8 --rounds 3]
//        [--baseline DIR] (another checkout's gatehouse beside this one in the HTTP scenario: before/after a change)
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createBenchEnv } from './support/benchEnv.ts';
import { loadProcesses } from './support/loadGenerator.ts';
import { markdown, writeResults, type BenchRun } from './support/report.ts';
import { udpStream } from './support/udpScenario.ts';
import { handshakes, httpThroughput, idleTunnels, lowLoadLatency, serverTunnels, tunnelThroughput, type ScenarioOptions, type ScenarioResult } from './support/scenarios.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    seconds: { type: 'string' },
    rounds: { type: 'string' },
    'idle-tunnels': { type: 'string' },
    'tunnel-mib': { type: 'string' },
    'no-whole-machine': { type: 'boolean', default: false },
    baseline: { type: 'string' },
  },
});
const quick = args.quick;
const options: ScenarioOptions = {
  seconds: Number(args.seconds ?? (quick ? 3 : 8)),
  rounds: Number(args.rounds ?? (quick ? 1 : 3)),
  warmupSeconds: quick ? 1 : 2,
  idleTunnels: Number(args['idle-tunnels'] ?? (quick ? 2000 : 10_000)),
  tunnelMiB: Number(args['tunnel-mib'] ?? (quick ? 128 : 512)),
  wholeMachine: !args['no-whole-machine'],
  ...(args.baseline !== undefined && { baseline: resolve(args.baseline) }),
};
const scenarios: Record<string, (env: Awaited<ReturnType<typeof createBenchEnv>>) => Promise<ScenarioResult>> = {
  http: (env) => httpThroughput(env, options),
  latency: (env) => lowLoadLatency(env, options),
  handshake: (env) => handshakes(env, options),
  idle: (env) => idleTunnels(env, options),
  tunnel: (env) => tunnelThroughput(env, { ...options, rounds: Math.min(options.rounds, 2) }, 1),
  parallel: (env) => tunnelThroughput(env, { ...options, rounds: 1 }, 8),
  'server-tunnel': (env) => serverTunnels(env, options),
  udp: (env) => udpStream(env, options),
};
const wanted = args.only ? args.only.split(',') : Object.keys(scenarios);

const run: BenchRun = {
  date: new Date().toISOString(),
  machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30), loadAverage: loadavg(), node: process.versions.node },
  options: { ...options, quick, only: wanted, loadGeneratorProcesses: loadProcesses() },
  skipped: [],
  measurements: [],
  comparisons: [],
};
process.stderr.write(`bench: ${wanted.join(', ')}; ${options.seconds} s x ${options.rounds} rounds; load generator ${loadProcesses()} processes; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);

const env = await createBenchEnv();
let failed = false;
try {
  for (const name of wanted) {
    const scenario = scenarios[name];
    if (!scenario) throw new Error(`unknown scenario ${name} (known: ${Object.keys(scenarios).join(', ')})`);
    try {
      const r = await scenario(env);
      run.measurements.push(...r.measurements);
      run.comparisons.push(...r.comparisons);
      run.skipped.push(...r.skipped);
    } catch (err) {
      // One broken scenario must not cost the others' figures: report it and go on.
      failed = true;
      run.skipped.push(`${name}: FAILED: ${err instanceof Error ? err.message : String(err)}`);
      process.stderr.write(`scenario ${name} failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    }
  }
} finally {
  await env.stop();
}
const file = writeResults(join(import.meta.dirname, 'results'), run);
process.stdout.write('\n' + markdown(run) + `\nwritten: ${file} (and .json, .svg; latest.* alongside)\n`);
process.exitCode = failed ? 1 : 0;
