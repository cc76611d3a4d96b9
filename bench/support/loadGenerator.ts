// The benchmark's load generator: N separate processes (one per core given to the load), each running
// loadWorker.ts on its share of the job; merges their reports and the CPU they used.
import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { LoadJob, LoadReport } from './loadWorker.ts';

const workerFile = join(import.meta.dirname, 'loadWorker.ts');

/** Processes to use: one per core available to this process (the whole machine when nothing pins us). */
export const loadProcesses = (): number => availableParallelism();

export interface MergedLoad {
  completed: number;
  errors: number;
  firstError?: string;
  perSecond: number;
  p50: number;
  p99: number;
  resumed?: number;
  /** Cores the load generator kept busy during the measured window (sum over its processes). */
  loadCpuCores: number;
  processes: number;
  /** The longest measured window of the processes. */
  seconds: number;
}

/** Runs a command with the fd limit raised (as `ulimit -n` in a shell, then exec). */
export function spawnWithFds(cmd: string, args: string[], fds: number, opts: { cwd?: string; stdio?: Array<'ignore' | 'pipe'> } = {}): ChildProcess {
  return spawn('/bin/sh', ['-c', `ulimit -n ${fds} 2>/dev/null || ulimit -n $(ulimit -Hn); exec "$@"`, 'sh', cmd, ...args], { cwd: opts.cwd, stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'] });
}

function runWorker(job: LoadJob, keepStdin = false): { proc: ChildProcess; report: Promise<LoadReport> } {
  const proc = spawnWithFds(process.execPath, [workerFile, JSON.stringify(job)], 65536, { stdio: [keepStdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const report = new Promise<LoadReport>((ok, fail) => {
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) ok(JSON.parse(out.slice(0, nl)) as LoadReport);
    });
    // 'close', not 'exit': the last stdout data may arrive after the exit event.
    proc.once('close', (code) => fail(new Error(`load worker exited ${code} without a report: ${err.slice(-2000)}`)));
  });
  return { proc, report };
}

export const quantile = (sorted: number[], q: number): number => (sorted.length === 0 ? NaN : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number));

function merge(reports: LoadReport[]): MergedLoad {
  const latencies = reports.flatMap((r) => r.latencies).sort((a, b) => a - b);
  const seconds = Math.max(...reports.map((r) => r.seconds));
  const resumed = reports.reduce((n, r) => n + (r.resumed ?? 0), 0);
  return {
    completed: reports.reduce((n, r) => n + r.completed, 0),
    errors: reports.reduce((n, r) => n + r.errors, 0),
    firstError: reports.find((r) => r.firstError)?.firstError,
    perSecond: reports.reduce((n, r) => n + r.completed, 0) / seconds,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    ...(reports.some((r) => r.resumed !== undefined) && { resumed }),
    loadCpuCores: reports.reduce((n, r) => n + r.cpuSeconds, 0) / seconds,
    processes: reports.length,
    seconds,
  };
}

/** Splits a closed-loop job (connections or concurrency) over `processes` workers and merges the result. */
export async function runLoad(job: LoadJob, processes = loadProcesses()): Promise<MergedLoad> {
  const share = (total: number, i: number) => Math.floor(total / processes) + (i < total % processes ? 1 : 0);
  const jobs: LoadJob[] = Array.from({ length: processes }, (_, i) => {
    if (job.mode === 'http') return { ...job, connections: share(job.connections, i) };
    if (job.mode === 'handshake') return { ...job, concurrency: share(job.concurrency, i) };
    if (job.mode === 'bulk') return { ...job, streams: share(job.streams, i) };
    return job;
  }).filter((j) => !('connections' in j && j.connections === 0) && !('concurrency' in j && j.concurrency === 0) && !('streams' in j && j.streams === 0));
  return merge(await Promise.all(jobs.map((j) => runWorker(j).report)));
}

export interface HeldConnections {
  opened: number;
  errors: number;
  firstError?: string;
  seconds: number;
  release(): Promise<void>;
}

/** Opens `job.count` idle connections spread over the worker processes and holds them until release(). */
export async function holdConnections(job: Extract<LoadJob, { mode: 'idle' }>, processes = loadProcesses()): Promise<HeldConnections> {
  const workers = Array.from({ length: processes }, (_, i) => runWorker({ ...job, count: Math.floor(job.count / processes) + (i < job.count % processes ? 1 : 0) }, true));
  const reports = await Promise.all(workers.map((w) => w.report));
  return {
    opened: reports.reduce((n, r) => n + (r.opened ?? 0), 0),
    errors: reports.reduce((n, r) => n + r.errors, 0),
    firstError: reports.find((r) => r.firstError)?.firstError,
    seconds: Math.max(...reports.map((r) => r.seconds)),
    release: async () => {
      await Promise.all(workers.map((w) => new Promise<void>((ok) => {
        if (w.proc.exitCode !== null) return ok();
        w.proc.once('exit', () => ok());
        w.proc.stdin?.end();
        setTimeout(() => w.proc.kill('SIGKILL'), 10_000).unref();
      })));
    },
  };
}
