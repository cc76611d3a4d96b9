// One engine worker as the pool sees it: the thread, its result channel, the calls it was sent, and
// the CPU probe that tells a worker stuck on a call from one merely starved of CPU.
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { FairItem } from './fairQueue.ts';
import type { EngineFailure, EngineWorkerInit, FromWorker, ReplaceReason, ToWorker, TokenInfo } from './workerProtocol.ts';
import type { WorkerSources } from './workerSources.ts';

/** A worker's answer to one call. */
export type WorkerAnswer = Extract<FromWorker, { type: 'result' | 'session-result' }>;

/** One call on its way through the pool: queued per party, then sent to a worker. */
export interface Job extends FairItem {
  id: number;
  message: Extract<ToWorker, { type: 'authorize' | 'session' }>;
  /** Hard deadline once a worker starts it, ms. */
  deadlineMs: number;
  answer(message: WorkerAnswer, job: Job): void;
  fail(failure: EngineFailure): void;
  /** What the worker verified about the token, sent before the Datalog ran. */
  info?: TokenInfo;
}

export interface Handle {
  worker: Worker;
  results: MessagePort;
  slot: number;
  state: 'starting' | 'active' | 'retiring' | 'dead';
  /** Calls posted to the worker, in order; the first one is running. */
  sent: Job[];
  headStartedAt: number;
  wasmBytes: number;
  /** WebAssembly memory when it became ready: what a fresh worker costs. */
  readyBytes?: number;
  count: number;
  /** Past its threshold, waiting for its successor: it takes new work only when no other worker can. */
  full: boolean;
  /** Why a successor was asked for. */
  retireReason?: ReplaceReason;
  /** CPU sample of the running call once it is past its deadline. */
  probe?: { job: Job; cpuMicros?: number; at?: number; busy: boolean };
}

/** Worker.cpuUsage() (Node >= 24.6): the thread's own CPU time. */
type CpuUsage = () => Promise<{ user: number; system: number }>;
/** Share of a sampling window a worker must spend computing to be judged stuck rather than starved. */
const stuckCpuShare = 0.4;

// This module runs as TypeScript from the sources and as JavaScript from dist/: the worker is its sibling.
export const workerUrl = new URL(import.meta.url.endsWith('.ts') ? './workerEntry.ts' : './workerEntry.js', import.meta.url);
/** Starts a worker thread; it announces `ready` on `results` once it has warmed up. */
export function spawnHandle(init: EngineWorkerInit, prepared: WorkerSources | undefined, slot: number): Handle {
  // A worker's JS heap stays small: a 4 MB young generation (V8 sizes it far larger by default, and
  // each worker would hold that much resident) saves ~20 MB per worker; the old-space limit only stops a runaway.
  // Results come back on their own channel, so the deadline check can drain the ones already sent.
  const { port1: results, port2 } = new MessageChannel();
  const workerData = { ...init, results: port2, ...(prepared && { sources: prepared.sources }) };
  const worker = new Worker(prepared?.bootstrap ?? workerUrl, { workerData, transferList: [port2], resourceLimits: { maxOldGenerationSizeMb: 128, maxYoungGenerationSizeMb: 4 } });
  worker.unref();
  results.unref();
  return { worker, results, slot, state: 'starting', sent: [], headStartedAt: 0, wasmBytes: 0, count: 0, full: false };
}

/**
 * The running call is past its deadline: sample the worker's CPU time over a short window and call
 * `stop` if it is computing (or at ten times the deadline); a thread starved of CPU is watched on.
 */
export function probeOverdue(handle: Handle, head: Job, elapsedMs: number, stop: (elapsedMs: number, cpuMs?: number) => void): void {
  const cpuUsage = (handle.worker as unknown as { cpuUsage?: CpuUsage }).cpuUsage;
  if (typeof cpuUsage !== 'function' || elapsedMs > head.deadlineMs * 10) return stop(elapsedMs);
  if (handle.probe?.job !== head) handle.probe = { job: head, busy: false };
  const probe = handle.probe;
  const windowMs = Math.max(20, head.deadlineMs / 2);
  if (probe.busy || (probe.at !== undefined && performance.now() - probe.at < windowMs)) return;
  probe.busy = true;
  cpuUsage.call(handle.worker).then(
    (usage) => {
      probe.busy = false;
      if (handle.state === 'dead' || handle.sent[0] !== head) return;
      const cpuMicros = usage.user + usage.system;
      const at = performance.now();
      if (probe.cpuMicros !== undefined && probe.at !== undefined && (cpuMicros - probe.cpuMicros) / 1000 >= stuckCpuShare * (at - probe.at)) {
        return stop(at - handle.headStartedAt, (cpuMicros - probe.cpuMicros) / 1000);
      }
      probe.cpuMicros = cpuMicros;
      probe.at = at;
    },
    () => {
      probe.busy = false;
    },
  );
}
