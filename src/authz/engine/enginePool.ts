// A small pool of engine worker threads. Bounds biscuit-wasm's never-returned memory by replacing a
// worker past a threshold (the successor warms up first; the old one finishes its queue), and bounds
// each call by a hard deadline enforced from here: a stuck worker is terminated and replaced.
//
// The deadline is wall-clock, confirmed by CPU: past it, the worker's CPU time is sampled over a short
// window and the worker is stopped only if it is computing (a thread merely starved of CPU on a busy
// machine is not the token's fault). Ten times the deadline stops it regardless.
//
// Calls wait in one queue per party (client certificate), served by engine time used (fairQueue.ts),
// and a worker is sent a call ahead only while what it holds is expected to be short: one party's
// expensive calls wait behind each other, not in front of everyone else's.
//
// The parts: poolWorkers.ts (worker life and call accounting), poolScheduling.ts (which worker takes a
// call), poolDeadlines.ts (the watchdog); this file starts the pool and takes calls in.
import { FairQueue } from './fairQueue.ts';
import { checkDeadlines } from './poolDeadlines.ts';
import { authorizeJob, sessionJob } from './poolJobs.ts';
import { dispatch, pipelineMs } from './poolScheduling.ts';
import type { PoolOptions, PoolState } from './poolState.ts';
import { startWorker, terminateWorker } from './poolWorkers.ts';
import { sharedWasmModule } from './sharedWasm.ts';
import { workerUrl, type Handle, type Job } from './workerHandle.ts';
import type { EngineCall, EngineOutcome, SessionCall, SessionOutcome, ToWorker } from './workerProtocol.ts';
import { workerSources } from './workerSources.ts';

export type { EngineCall, EngineOutcome, ReplaceReason, SessionCall, SessionOutcome } from './workerProtocol.ts';
export type { PoolObserver, PoolOptions } from './poolState.ts';

/** A refused call is answered this much later by default: as long as a refusal under the per-identity limits is held. */
const defaultRefusalHoldMs = 1000;
/** Calls that may wait, all parties together. */
const queueTotal = 10_000;

export interface PoolStats {
  workers: { slot: number; wasmBytes: number; authorizations: number; inflight: number }[];
  replacements: number;
  waiting: number;
}

export interface EnginePool {
  run(call: EngineCall): Promise<EngineOutcome>;
  /** Sign-in token work (see sessionWork.ts), queued and charged like an authorization. */
  runSession(call: SessionCall): Promise<SessionOutcome>;
  /** Sends a new revocation list to every worker (and to the ones started later). */
  setRevoked(ids: readonly string[]): void;
  stats(): PoolStats;
  /** Stops taking calls, lets the ones queued finish, then terminates every worker. */
  close(): Promise<void>;
}

/** Starts the workers and resolves once all of them have warmed up (rejects if one cannot start). */
export async function createEnginePool(options: PoolOptions): Promise<EnginePool> {
  const count = options.count ?? 2;
  const [wasmModule, prepared] = await Promise.all([sharedWasmModule(), workerSources(workerUrl)]);
  const state: PoolState = {
    options,
    observer: options.observer ?? {},
    maxInflight: options.maxInflightPerWorker ?? 4,
    queueTimeoutMs: options.queueTimeoutMs ?? 10_000,
    wasmModule,
    prepared,
    slots: Array.from({ length: count }, () => ({ failures: 0 })),
    retiring: new Set<Handle>(),
    waiting: new FairQueue<Job>({ perParty: options.queuePerParty ?? 64, total: queueTotal, initialEstimateMs: pipelineMs }),
    revoked: [...options.init.revoked],
    replacements: 0,
    pending: 0,
    closed: false,
  };
  await startAll(state);
  let nextId = 1;
  return {
    run: (call) => new Promise((resolve) => enqueue(state, authorizeJob(nextId++, call, resolve))),
    runSession: (call) => new Promise((resolve) => enqueue(state, sessionJob(nextId++, call, resolve))),
    setRevoked(ids) {
      state.revoked = [...ids];
      const message: ToWorker = { type: 'revocations', ids: state.revoked };
      for (const s of state.slots) for (const h of [s.active, s.replacement]) if (h && h.state !== 'dead') h.worker.postMessage(message);
      for (const h of state.retiring) h.worker.postMessage(message);
    },
    stats() {
      return {
        workers: state.slots.flatMap((s) => (s.active ? [{ slot: s.active.slot, wasmBytes: s.active.wasmBytes, authorizations: s.active.count, inflight: s.active.sent.length }] : [])),
        replacements: state.replacements,
        waiting: state.waiting.size,
      };
    },
    close: () => close(state),
  };
}

/** Initial start: waits for every worker's warm-up, fails (stopping them all) if one reports a problem. */
async function startAll(state: PoolState): Promise<void> {
  const firstHandles = state.slots.map((s, slot) => (s.replacement = startWorker(state, slot)));
  await new Promise<void>((resolve, reject) => {
    let ready = 0;
    state.onReady = (handle, failure) => {
      if (!firstHandles.includes(handle)) return;
      if (failure !== undefined) {
        state.closed = true;
        for (const h of firstHandles) terminateWorker(state, h);
        reject(new Error(failure));
        return;
      }
      if (++ready === firstHandles.length) resolve();
    };
  });
  state.onReady = undefined;
}

/**
 * Queues a call for its party, or refuses it. A party's refusal is answered only after refusalHoldMs:
 * answered at once, a client that re-sends at once would turn each refusal into main-thread work and
 * take the gateway from everyone else; held, it can send no faster than its connections allow.
 */
function enqueue(state: PoolState, job: Job): void {
  if (state.closed) return job.fail({ kind: 'unavailable', reason: 'the authorizer was replaced (configuration reloaded)' });
  const { options } = state;
  const spent = options.budget?.refusal(job.party);
  const queued = spent === undefined ? state.waiting.push(job) : { ok: false as const, reason: spent };
  if (!queued.ok) {
    setTimeout(() => job.fail({ kind: 'busy', reason: queued.reason }), options.refusalHoldMs ?? defaultRefusalHoldMs).unref();
    return;
  }
  state.pending += 1;
  if (state.pending === 1) {
    state.watchdog ??= setInterval(() => checkDeadlines(state), 5);
    clearTimeout(state.idleTimer);
    state.idleTimer = undefined;
  }
  dispatch(state);
}

async function close(state: PoolState): Promise<void> {
  state.closed = true;
  clearTimeout(state.idleTimer);
  if (state.pending > 0) await new Promise<void>((resolve) => (state.drained = resolve));
  clearInterval(state.watchdog);
  for (const s of state.slots) {
    for (const h of [s.active, s.replacement]) if (h) terminateWorker(state, h);
  }
  for (const h of [...state.retiring]) terminateWorker(state, h);
}
