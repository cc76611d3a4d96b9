// The scenarios of `npm run bench`: each starts its servers (gatehouse and every installed peer), runs
// the load in separate processes round by round, and returns medians and the gatehouse-vs-peer lines.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { directTarget, maxIdleTunnels, missingPeer, startServer, type BenchEnv, type RunningServer, type ServerKind } from './benchEnv.ts';
import { holdConnections, loadProcesses, runLoad, type MergedLoad } from './loadGenerator.ts';
import type { LoadJob, Target } from './loadWorker.ts';
import { cpuDuring, treeRssMiB } from './procStats.ts';
import type { Comparison, Measurement } from './report.ts';

export interface ScenarioOptions {
  seconds: number;
  rounds: number;
  warmupSeconds: number;
  idleTunnels: number;
  tunnelMiB: number;
  /** Whole-machine runs (gatehouse --processes auto vs nginx auto, HAProxy nbthread = cores). */
  wholeMachine: boolean;
  /** Another checkout of gatehouse (with its node_modules), run beside this one in the HTTP scenario: before/after a change in one run. */
  baseline?: string;
}

export interface ScenarioResult {
  measurements: Measurement[];
  comparisons: Comparison[];
  skipped: string[];
}

const log = (text: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${text}\n`);
export const median = (xs: number[]): number => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

interface ServerSpec {
  name: string;
  kind: ServerKind | 'direct';
  processes: 1 | 'auto';
  /** The checkout whose gatehouse runs (default: this one). */
  repo?: string;
}

/** The specs whose package is installed; the others become skip reasons. */
function available(specs: ServerSpec[], skipped: string[], scenario: string): ServerSpec[] {
  return specs.filter((s) => {
    const missing = s.kind === 'direct' ? undefined : missingPeer(s.kind);
    if (missing) skipped.push(`${scenario}, ${s.name}: ${missing}`);
    return !missing;
  });
}

type Figures = Record<string, number | undefined>;

/** Runs `measure` against each server, `rounds` times, a fresh server per round (interleaved, so drift hits all alike). */
async function roundsOf(env: BenchEnv, scenario: string, specs: ServerSpec[], rounds: number, measure: (target: Target, server: RunningServer | undefined) => Promise<Figures>, skipped: string[]): Promise<Map<string, Measurement>> {
  const out = new Map<string, Measurement>();
  const broken = new Set<string>();
  for (let round = 1; round <= rounds; round++) {
    for (const spec of specs.filter((s) => !broken.has(s.name))) {
      let server: RunningServer | undefined;
      try {
        server = spec.kind === 'direct' ? undefined : await startServer(env, spec.kind, spec.processes, spec.name, [], spec.repo);
      } catch (err) {
        // A server that does not start is reported and left out; the others still run.
        broken.add(spec.name);
        skipped.push(`${scenario}, ${spec.name}: did not start: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`);
        continue;
      }
      try {
        const figures = await measure(server?.target ?? directTarget(env), server);
        const m = out.get(spec.name) ?? { scenario, server: spec.name, rounds: [], median: {} };
        m.rounds.push(figures);
        out.set(spec.name, m);
        log(`${scenario} round ${round}/${rounds} ${spec.name}: ${Object.entries(figures).map(([k, v]) => `${k} ${v === undefined ? '-' : v.toFixed(2)}`).join(', ')}`);
      } finally {
        await server?.stop();
      }
    }
  }
  for (const m of out.values()) {
    const keys = new Set(m.rounds.flatMap((r) => Object.keys(r)));
    for (const k of keys) m.median[k] = median(m.rounds.map((r) => r[k]).filter((v): v is number => typeof v === 'number'));
  }
  return out;
}

const loadFigures = (r: MergedLoad, serverCores: number | undefined): Figures => ({
  perSecond: r.perSecond,
  p50ms: r.p50,
  p99ms: r.p99,
  errors: r.errors,
  loadCpuCores: r.loadCpuCores,
  serverCpuCores: serverCores,
  // CPU per request (or handshake) is steadier than throughput on a shared machine: it does not depend on how much of a core the server got.
  ...(serverCores !== undefined && { serverCpuUsPerOp: (serverCores / r.perSecond) * 1e6 }),
  ...(r.resumed !== undefined && { resumedShare: r.resumed / Math.max(1, r.completed) }),
});

function compare(ms: Map<string, Measurement>, gatehouse: string, peers: string[], key: string, c: Omit<Comparison, 'gatehouse' | 'peer' | 'peerValue'>): Comparison[] {
  const g = ms.get(gatehouse)?.median[key];
  if (g === undefined) return [];
  return peers.flatMap((p) => {
    const v = ms.get(p)?.median[key];
    return v === undefined ? [] : [{ ...c, gatehouse: g, peer: p, peerValue: v }];
  });
}

/** `--baseline DIR`: the other checkout's gatehouse, compared like a peer. */
const BASELINE = 'gatehouse baseline 1 process';
const perCore: ServerSpec[] = [
  { name: 'nginx 1 worker', kind: 'nginx', processes: 1 },
  { name: 'HAProxy 1 thread', kind: 'haproxy', processes: 1 },
  { name: 'gatehouse 1 process', kind: 'gatehouse', processes: 1 },
];
const wholeMachine: ServerSpec[] = [
  { name: 'nginx workers auto', kind: 'nginx', processes: 'auto' },
  { name: 'HAProxy nbthread=cores', kind: 'haproxy', processes: 'auto' },
  { name: 'gatehouse --processes auto', kind: 'gatehouse', processes: 'auto' },
];

export async function httpThroughput(env: BenchEnv, o: ScenarioOptions): Promise<ScenarioResult> {
  const skipped: string[] = [];
  const scenario = 'HTTP req/s, 32 keep-alive mTLS connections';
  const baseline: ServerSpec[] = o.baseline === undefined ? [] : [{ name: BASELINE, kind: 'gatehouse', processes: 1, repo: o.baseline }];
  const specs = available([{ name: 'direct (no TLS)', kind: 'direct', processes: 1 }, ...perCore, ...baseline, ...(o.wholeMachine ? wholeMachine : [])], skipped, scenario);
  const ms = await roundsOf(env, scenario, specs, o.rounds, async (target, server) => {
    const job: LoadJob = { mode: 'http', target, connections: 32, seconds: o.seconds, warmupSeconds: o.warmupSeconds, token: env.token };
    const { value, cores } = await cpuDuring(server?.pid, () => runLoad(job));
    return loadFigures(value, cores);
  }, skipped);
  const c = (g: string, peers: string[], note: string): Comparison[] => [
    ...compare(ms, g, peers, 'perSecond', { scenario: `HTTP req/s, token checked per request (${note})`, unit: 'req/s', higherIsBetter: true, goal: 0.6, goalText: '>= 0.6' }),
    ...compare(ms, g, peers, 'p99ms', { scenario: `HTTP p99 under that load (${note})`, unit: 'ms', higherIsBetter: false, goal: 1 / 1.5, goalText: '<= 1.5x' }),
    ...compare(ms, g, peers, 'serverCpuUsPerOp', { scenario: `HTTP server CPU per request (${note})`, unit: 'µs', higherIsBetter: false }),
  ];
  return {
    measurements: [...ms.values()],
    comparisons: [...c('gatehouse 1 process', ['nginx 1 worker', 'HAProxy 1 thread', ...(o.baseline === undefined ? [] : [BASELINE])], 'per core'), ...c('gatehouse --processes auto', ['nginx workers auto', 'HAProxy nbthread=cores'], 'whole machine')],
    skipped,
  };
}

export async function lowLoadLatency(env: BenchEnv, o: ScenarioOptions): Promise<ScenarioResult> {
  const skipped: string[] = [];
  const scenario = 'latency at low load (1 connection, 200 req/s)';
  const specs = available([{ name: 'direct (no TLS)', kind: 'direct', processes: 1 }, ...perCore], skipped, scenario);
  const ms = await roundsOf(env, scenario, specs, o.rounds, async (target, server) => {
    const job: LoadJob = { mode: 'latency', target, rate: 200, seconds: o.seconds, warmupSeconds: o.warmupSeconds, token: env.token };
    const { value, cores } = await cpuDuring(server?.pid, () => runLoad(job, 1));
    return loadFigures(value, cores);
  }, skipped);
  // Added latency: the proxy's median (and p99) minus the direct path's in the same run.
  const direct = ms.get('direct (no TLS)')?.median;
  for (const m of ms.values()) {
    m.median.addedP50ms = (m.median.p50ms ?? NaN) - (direct?.p50ms ?? NaN);
    m.median.addedP99ms = (m.median.p99ms ?? NaN) - (direct?.p99ms ?? NaN);
  }
  const peers = ['nginx 1 worker', 'HAProxy 1 thread'];
  const added = (key: string) => `added vs direct: ${[...ms.values()].filter((m) => m.server !== 'direct (no TLS)').map((m) => `${m.server} ${(m.median[key] ?? NaN).toFixed(2)} ms`).join(', ')}`;
  return {
    measurements: [...ms.values()],
    comparisons: [
      // The ratio is on the whole latency; the added part (minus direct) is in the measurements and the note.
      ...compare(ms, 'gatehouse 1 process', peers, 'p50ms', { scenario: 'latency per request at low load, p50', unit: 'ms', higherIsBetter: false, note: added('addedP50ms') }),
      ...compare(ms, 'gatehouse 1 process', peers, 'p99ms', { scenario: 'latency per request at low load, p99', unit: 'ms', higherIsBetter: false, note: added('addedP99ms') }),
    ],
    skipped,
  };
}

export async function handshakes(env: BenchEnv, o: ScenarioOptions): Promise<ScenarioResult> {
  const skipped: string[] = [];
  const out: ScenarioResult = { measurements: [], comparisons: [], skipped };
  for (const resume of [false, true]) {
    const scenario = `TLS handshakes/s with a client certificate, ${resume ? 'session resumption' : 'full'}`;
    const specs = available(perCore, skipped, scenario);
    const ms = await roundsOf(env, scenario, specs, o.rounds, async (target, server) => {
      const job: LoadJob = { mode: 'handshake', target, resume, concurrency: 16, seconds: o.seconds, warmupSeconds: o.warmupSeconds };
      const { value, cores } = await cpuDuring(server?.pid, () => runLoad(job));
      return loadFigures(value, cores);
    }, skipped);
    out.measurements.push(...ms.values());
    out.comparisons.push(...compare(ms, 'gatehouse 1 process', ['nginx 1 worker', 'HAProxy 1 thread'], 'perSecond', { scenario: `${scenario} (per core)`, unit: '/s', higherIsBetter: true }));
    out.comparisons.push(...compare(ms, 'gatehouse 1 process', ['nginx 1 worker', 'HAProxy 1 thread'], 'serverCpuUsPerOp', { scenario: `${scenario}: server CPU per handshake`, unit: 'µs', higherIsBetter: false }));
  }
  return out;
}

export async function idleTunnels(env: BenchEnv, o: ScenarioOptions): Promise<ScenarioResult> {
  const skipped: string[] = [];
  const count = Math.min(o.idleTunnels, maxIdleTunnels());
  if (count < o.idleTunnels) skipped.push(`idle tunnels: ${o.idleTunnels} asked, ${count} held: the hard fd limit here (ulimit -Hn) allows no more in a proxy holding two descriptors per tunnel`);
  const scenario = `${count.toLocaleString('en-US')} idle tunnels held open`;
  const specs = available([{ name: 'gatehouse 1 process', kind: 'gatehouse', processes: 1 }, { name: 'nginx stream mTLS 1 worker', kind: 'nginx-stream', processes: 1 }], skipped, scenario);
  const ms = await roundsOf(env, scenario, specs, 1, async (target, server) => {
    const pid = server?.pid as number;
    await new Promise((r) => setTimeout(r, 1000));
    const before = treeRssMiB(pid);
    // gatehouse: CONNECT through the gateway to a UNIX socket; nginx stream: TLS then straight to it.
    const held = await holdConnections({ mode: 'idle', target, count, concurrency: 32, token: env.token, ...(server?.name.startsWith('gatehouse') && { connectRoute: 'hold' }) });
    await new Promise((r) => setTimeout(r, 2000));
    const after = treeRssMiB(pid);
    await held.release();
    if (held.errors > 0) log(`${scenario} ${server?.name}: ${held.errors} failed, first: ${held.firstError}`);
    return { opened: held.opened, failed: held.errors, openSeconds: held.seconds, rssBeforeMiB: before, rssHeldMiB: after, kibPerTunnel: ((after - before) * 1024) / Math.max(1, held.opened) };
  }, skipped);
  return {
    measurements: [...ms.values()],
    comparisons: compare(ms, 'gatehouse 1 process', ['nginx stream mTLS 1 worker'], 'kibPerTunnel', { scenario: 'memory per idle tunnel (RSS growth / tunnels)', unit: 'KiB', higherIsBetter: false }),
    skipped,
  };
}

/**
 * The server side of tunnels alone: plain TLS clients in the load processes (no tunnel client, no ssh),
 * through gatehouse CONNECT and through nginx stream mTLS to the same holder socket; 1 and 8 streams.
 */
export async function serverTunnels(env: BenchEnv, o: ScenarioOptions): Promise<ScenarioResult> {
  const skipped: string[] = [];
  const scenario = `tunnel server side only (TLS clients, ${o.tunnelMiB} MiB each way)`;
  const specs = available([{ name: 'gatehouse 1 process', kind: 'gatehouse', processes: 1 }, { name: 'nginx stream mTLS 1 worker', kind: 'nginx-stream', processes: 1 }], skipped, scenario);
  const total = o.tunnelMiB * (1 << 20);
  const ms = await roundsOf(env, scenario, specs, Math.min(o.rounds, 2), async (target, server) => {
    const figures: Figures = {};
    for (const streams of [1, 8]) {
      for (const direction of ['up', 'down'] as const) {
        const r = await runLoad({ mode: 'bulk', target, streams, bytes: Math.floor(total / streams), direction, token: env.token, ...(server?.name.startsWith('gatehouse') && { connectRoute: 'hold' }) }, Math.min(streams, loadProcesses()));
        if (r.errors > 0) throw new Error(`${r.errors} streams incomplete`);
        figures[`${direction}${streams}MBps`] = total / 1e6 / r.seconds;
        figures[`${direction}${streams}LoadCpuCores`] = r.loadCpuCores;
      }
    }
    figures.rssMiB = server ? treeRssMiB(server.pid) : undefined;
    return figures;
  }, skipped);
  const comparisons: Comparison[] = [];
  for (const key of ['up1MBps', 'down1MBps', 'up8MBps', 'down8MBps']) {
    const [dir, streams] = [key.startsWith('up') ? 'up' : 'down', key.includes('8') ? 8 : 1];
    comparisons.push(...compare(ms, 'gatehouse 1 process', ['nginx stream mTLS 1 worker'], key, { scenario: `tunnel server side only, ${streams} stream${streams > 1 ? 's' : ''}, ${dir} MB/s`, unit: 'MB/s', higherIsBetter: true, goal: 1, goalText: '>= 1.0x' }));
  }
  return { measurements: [...ms.values()], comparisons, skipped };
}

/** Runs bench/tunnel-integrity.ts (gatehouse tunnel -L vs ssh -L, nginx stream, socat) and reads its JSON. */
export async function tunnelThroughput(env: BenchEnv, o: ScenarioOptions, parallel: number): Promise<ScenarioResult> {
  const file = join(env.dir, `tunnel-${parallel}.json`);
  const args = [join(import.meta.dirname, '..', 'tunnel-integrity.ts'), '--size-mib', String(o.tunnelMiB), '--rounds', String(o.rounds), '--parallel', String(parallel), '--json', file, '--only', 'connect,ssh,nginx,socat'];
  log(`tunnel throughput, ${parallel} stream(s): ${o.tunnelMiB} MiB each way, ${o.rounds} round(s)`);
  await new Promise<void>((ok, fail) => spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] }).once('exit', (code) => (code === 0 ? ok() : fail(new Error(`tunnel-integrity exited ${code}`)))));
  type Path = { upMedian: number; downMedian: number; up: number[]; down: number[]; intact: boolean; clientPeakMiB?: number; gatewayPeakMiB?: number; clientCpuUpMsPerMB?: number; clientCpuDownMsPerMB?: number };
  const data = JSON.parse(readFileSync(file, 'utf8')) as { skipped: string[]; clientForm: string; paths: Record<string, Path> };
  const label = parallel > 1 ? `${parallel} parallel bulk tunnels` : 'bulk tunnel';
  const measurements: Measurement[] = Object.entries(data.paths).map(([path, p]) => ({
    scenario: `${label}, ${o.tunnelMiB} MiB each way`,
    server: path,
    rounds: p.up.map((up, i) => ({ upMBps: up, downMBps: p.down[i] })),
    median: { upMBps: p.upMedian, downMBps: p.downMedian, intact: p.intact ? 1 : 0, clientPeakMiB: p.clientPeakMiB, gatewayPeakMiB: p.gatewayPeakMiB, clientCpuUpMsPerMB: p.clientCpuUpMsPerMB, clientCpuDownMsPerMB: p.clientCpuDownMsPerMB },
  }));
  const g = data.paths['gatehouse tunnel (connect)'];
  const comparisons: Comparison[] = [];
  for (const [peer, goal] of [['ssh -L (sshd, default cipher)', 1.5], ['nginx stream mTLS (1 worker) + socat TLS client', 1.0]] as const) {
    const p = data.paths[peer];
    if (!g || !p) continue;
    const name = peer.startsWith('ssh') ? 'ssh -L' : 'nginx stream mTLS';
    for (const dir of ['up', 'down'] as const) {
      comparisons.push({ scenario: `${label}, CONNECT, ${dir} MB/s`, unit: 'MB/s', gatehouse: g[`${dir}Median`], peer: name, peerValue: p[`${dir}Median`], higherIsBetter: true, goal, goalText: `>= ${goal}x`, ...(!g.intact && { note: 'NOT byte-identical' }) });
    }
  }
  if (g?.gatewayPeakMiB !== undefined) comparisons.push({ scenario: `${label}: gateway peak RSS`, unit: 'MiB', gatehouse: g.gatewayPeakMiB, peer: 'goal', peerValue: 64, higherIsBetter: false, goal: 1, goalText: '< 64 MiB' });
  const ssh = data.paths['ssh -L (sshd, default cipher)'];
  if (g?.clientPeakMiB !== undefined && ssh?.clientPeakMiB !== undefined) comparisons.push({ scenario: `${label}: tunnel client peak RSS`, unit: 'MiB', gatehouse: g.clientPeakMiB, peer: 'ssh', peerValue: ssh.clientPeakMiB, higherIsBetter: false, note: `goal < 60 MiB; client run as the ${data.clientForm}` });
  for (const dir of ['Up', 'Down'] as const) {
    const [ours, theirs] = [g?.[`clientCpu${dir}MsPerMB`], ssh?.[`clientCpu${dir}MsPerMB`]];
    if (ours !== undefined && theirs !== undefined) comparisons.push({ scenario: `${label}: tunnel client CPU per MB, ${dir.toLowerCase()}`, unit: 'ms', gatehouse: ours, peer: 'ssh', peerValue: theirs, higherIsBetter: false });
  }
  return { measurements, comparisons, skipped: data.skipped.map((s) => `${label}: ${s}`) };
}
