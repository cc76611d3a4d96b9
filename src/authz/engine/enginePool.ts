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
import { receiveMessageOnPort } from 'node:worker_threads';
import type { EngineCall, EngineFailure, EngineOutcome, EngineWorkerInit, FromWorker, ReplaceReason, SessionCall, SessionOutcome, ToWorker } from './workerProtocol.ts';

export type { EngineCall, EngineOutcome, ReplaceReason, SessionCall, SessionOutcome } from './workerProtocol.ts';
import { FairQueue } from './fairQueue.ts';
import type { EngineBudget } from '../types.ts';
import { authorizeJob, sessionJob } from './poolJobs.ts';
import { expensiveLanesFull, expensiveMs, pickWorker, pipelineMs } from './poolScheduling.ts';
import { sharedWasmModule } from './sharedWasm.ts';
import { probeOverdue, spawnHandle, workerUrl, type Handle, type Job, type WorkerAnswer } from './workerHandle.ts';
import { workerSources } from './workerSources.ts';

export interface PoolOptions {
  init: EngineWorkerInit;
  /** Worker threads (default 2). */
  count?: number;
  /** Replace a worker whose WebAssembly memory reaches this many bytes. */
  recycleAfterBytes: number;
  /** Replace a worker after this many authorizations (also the fallback when memory cannot be read). */
  recycleAfterAuthorizations?: number;
  /** Calls sent ahead to one worker; more wait in the pool's queue. */
  maxInflightPerWorker?: number;
  /** A call that finds no worker for this long is refused (503). */
  queueTimeoutMs?: number;
  /** Calls of one party that may wait; more are refused (default 64). */
  queuePerParty?: number;
  /** Each party's engine time: charged after every call that ran, and a spent budget refuses new calls. */
  budget?: EngineBudget;
  /** A refused call (queue full, budget spent) is answered this much later (ms, default 1000): see enqueue(). */
  refusalHoldMs?: number;
  observer?: PoolObserver;
}

export interface PoolObserver {
  workerMemory?(slot: number, bytes: number): void;
  workerReplaced?(reason: ReplaceReason): void;
}

/** Without a readable memory size, replace a worker after this many calls (~12-20 KB leaked each). */
const fallbackRecycleCount = 2000;
/** A refused call is answered this much later by default: as long as a refusal under the per-identity limits is held. */
const defaultRefusalHoldMs = 1000;
/** Calls that may wait, all parties together. */
const queueTotal = 10_000;
/** After this long with no call, a worker grown by at least this share of recycleAfterBytes is replaced. */
const IDLE_RECYCLE_MS = 5000;
const IDLE_RECYCLE_GROWTH = 0.25;

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

/** One worker position: the worker taking new work, and its successor while that one warms up. */
interface Slot {
  active?: Handle;
  replacement?: Handle;
  /** Consecutive failed starts, for back-off. */
  failures: number;
}

/** Starts the workers and resolves once all of them have warmed up (rejects if one cannot start). */
export async function createEnginePool(options: PoolOptions): Promise<EnginePool> {
  const count = options.count ?? 2;
  const maxInflight = options.maxInflightPerWorker ?? 4;
  const queueTimeoutMs = options.queueTimeoutMs ?? 10_000;
  const observer = options.observer ?? {};
  let revoked = [...options.init.revoked];
  const [wasmModule, prepared] = await Promise.all([sharedWasmModule(), workerSources(workerUrl)]);
  const slots: Slot[] = Array.from({ length: count }, () => ({ failures: 0 }));
  const retiring = new Set<Handle>();
  const waiting = new FairQueue<Job>({ perParty: options.queuePerParty ?? 64, total: queueTotal, initialEstimateMs: pipelineMs });
  let nextId = 1;
  let replacements = 0;
  let pending = 0;
  let closed = false;
  let drained: (() => void) | undefined;

  // Deadlines are watched only while calls are in flight: an idle gateway is not woken 200 times a second.
  let watchdog: NodeJS.Timeout | undefined;
  // biscuit-wasm's memory only grows: a worker that grew under a burst would keep it until the next burst
  // pushes it past recycleAfterBytes. Once the pool has been idle a while, such a worker is replaced, so a
  // quiet gateway settles back to fresh workers (one worker start; nothing is waiting).
  let idleTimer: NodeJS.Timeout | undefined;
  function recycleGrownWorkers(): void {
    idleTimer = undefined;
    if (closed || pending > 0) return;
    for (const s of slots) {
      const h = s.active;
      if (!h || h.state !== 'active' || h.full || h.readyBytes === undefined || h.wasmBytes < 0) continue;
      if (h.wasmBytes - h.readyBytes < options.recycleAfterBytes * IDLE_RECYCLE_GROWTH) continue;
      h.retireReason = 'idle';
      h.full = true;
      replace(h.slot);
    }
  }

  /** A call leaves the pool; one that ran is charged its engine time (to its party's queue and budget). */
  function settle(job: Job, engineMs: number | undefined, end: () => void): void {
    pending -= 1;
    if (pending === 0) {
      clearInterval(watchdog);
      watchdog = undefined;
      drained?.();
      idleTimer ??= setTimeout(recycleGrownWorkers, IDLE_RECYCLE_MS).unref();
    }
    if (engineMs !== undefined) {
      waiting.finish(job, engineMs);
      options.budget?.charge(job.party, engineMs);
    }
    end();
  }

  function start(slot: number): Handle {
    const handle = spawnHandle({ ...options.init, revoked, ...(wasmModule && { wasmModule }) }, prepared, slot);
    const { worker, results } = handle;
    results.on('message', (message: FromWorker) => onMessage(handle, message));
    worker.on('error', () => onExit(handle));
    worker.on('exit', () => onExit(handle));
    return handle;
  }

  /** Counted when a worker leaves service, with the reason it left. */
  function replaced(reason: ReplaceReason): void {
    replacements += 1;
    observer.workerReplaced?.(reason);
  }

  function replace(slot: number): void {
    const s = slots[slot];
    if (!s || s.replacement || closed) return;
    s.replacement = start(slot);
  }

  function terminate(handle: Handle): void {
    handle.state = 'dead';
    retiring.delete(handle);
    handle.results.close();
    void handle.worker.terminate();
  }

  function promote(handle: Handle): void {
    const s = slots[handle.slot];
    if (!s) return;
    s.failures = 0;
    if (closed) return terminate(handle);
    s.replacement = undefined;
    const old = s.active;
    handle.state = 'active';
    s.active = handle;
    if (old && old.state === 'active') {
      // No new work for the old worker; it ends once what it was sent is answered.
      replaced(old.retireReason ?? 'memory');
      old.state = 'retiring';
      retiring.add(old);
      if (old.sent.length === 0) terminate(old);
    }
    dispatch();
  }

  function onMessage(handle: Handle, message: FromWorker): void {
    if (message.type === 'ready') {
      handle.wasmBytes = message.wasmBytes;
      handle.readyBytes = message.wasmBytes;
      if (handle.slot >= 0) observer.workerMemory?.(handle.slot, message.wasmBytes);
      onReady?.(handle, undefined);
      promote(handle);
      return;
    }
    if (message.type === 'failed') {
      onReady?.(handle, message.reason);
      return;
    }
    if (message.type === 'info') {
      const job = handle.sent.find((j) => j.id === message.id);
      if (job) job.info = message.info;
      return;
    }
    finished(handle, message);
  }

  function finished(handle: Handle, message: WorkerAnswer): void {
    const job = handle.sent.shift();
    if (handle.sent.length > 0) handle.headStartedAt = performance.now();
    if (message.wasmBytes !== handle.wasmBytes) observer.workerMemory?.(handle.slot, message.wasmBytes);
    handle.wasmBytes = message.wasmBytes;
    handle.count = message.count;
    if (job) settle(job, message.engineMs, () => job.answer(message, job));
    if (message.poisoned) {
      kill(handle, 'fault');
    } else if (handle.state === 'retiring' && handle.sent.length === 0) {
      terminate(handle);
    } else if (handle.state === 'active') {
      const limit = options.recycleAfterAuthorizations ?? (handle.wasmBytes < 0 ? fallbackRecycleCount : undefined);
      if (!handle.full && handle.wasmBytes >= options.recycleAfterBytes) handle.retireReason = 'memory';
      else if (!handle.full && limit !== undefined && handle.count >= limit) handle.retireReason = 'count';
      if (handle.retireReason !== undefined) {
        handle.full = true;
        replace(handle.slot);
      }
    }
    dispatch();
  }

  /** Takes a worker out now: the running call gets `head` (and is charged the time it ran), the others go back to the queue. */
  function kill(handle: Handle, reason: ReplaceReason, head?: EngineFailure): void {
    if (handle.state === 'dead') return;
    const wasActive = handle.state === 'active';
    const ranMs = performance.now() - handle.headStartedAt;
    const jobs = handle.sent.splice(0);
    terminate(handle);
    replaced(reason);
    const first = head !== undefined ? jobs.shift() : undefined;
    if (first && head) settle(first, ranMs, () => first.fail(head));
    waiting.requeue(jobs);
    const s = slots[handle.slot];
    if (s && wasActive && s.active === handle) {
      s.active = undefined;
      replace(handle.slot);
    }
    dispatch();
  }

  function onExit(handle: Handle): void {
    if (handle.state === 'dead') return;
    if (handle.state === 'starting') {
      handle.state = 'dead';
      onReady?.(handle, 'the worker exited while starting');
      const s = slots[handle.slot];
      if (!s || closed || s.replacement !== handle) return;
      s.replacement = undefined;
      s.failures += 1;
      // Back off, then try again: calls wait (up to queueTimeoutMs) on the other workers.
      const timer = setTimeout(() => replace(handle.slot), Math.min(30_000, 100 * 2 ** s.failures));
      timer.unref();
      return;
    }
    const [running] = handle.sent;
    kill(handle, 'crash', running ? { kind: 'unavailable', reason: 'the authorization worker stopped unexpectedly' } : undefined);
  }

  function dispatch(): void {
    while (waiting.size > 0) {
      const ready = slots.map((s) => s.active).filter((h): h is Handle => h !== undefined && h.state === 'active');
      const handle = pickWorker(ready, maxInflight);
      if (!handle) return;
      const job = waiting.take(expensiveLanesFull(ready) ? expensiveMs : Infinity);
      if (!job) return;
      handle.sent.push(job);
      if (handle.sent.length === 1) handle.headStartedAt = performance.now();
      handle.worker.postMessage(job.message);
    }
  }

  function checkDeadlines(): void {
    const now = performance.now();
    const busy = [...slots.map((s) => s.active), ...retiring].filter((h): h is Handle => h !== undefined && h.sent.length > 0);
    for (const handle of busy) {
      // A busy main thread may not have read results the worker already sent: read them first.
      for (let m = receiveMessageOnPort(handle.results); m !== undefined; m = receiveMessageOnPort(handle.results)) {
        onMessage(handle, m.message as FromWorker);
        if (handle.state === 'dead') break;
      }
      const head = handle.sent[0];
      if (!head || handle.state === 'dead') continue;
      const elapsedMs = now - handle.headStartedAt;
      if (elapsedMs > head.deadlineMs) probeOverdue(handle, head, elapsedMs, (ms, cpuMs) => stop(handle, head, ms, cpuMs));
    }
    for (const job of waiting.expire(now - queueTimeoutMs)) {
      settle(job, undefined, () => job.fail({ kind: 'unavailable', reason: `no authorization worker became available within ${queueTimeoutMs} ms` }));
    }
  }

  function stop(handle: Handle, head: Job, elapsedMs: number, cpuMs?: number): void {
    kill(handle, 'deadline', { kind: 'deadline', elapsedMs, ...(cpuMs !== undefined && { cpuMs }), ...(head.info && { info: head.info }) });
  }

  // Initial start: wait for every worker's warm-up, fail if one reports a problem.
  let onReady: ((handle: Handle, failure: string | undefined) => void) | undefined;
  const firstHandles = slots.map((s, slot) => (s.replacement = start(slot)));
  await new Promise<void>((resolve, reject) => {
    let ready = 0;
    onReady = (handle, failure) => {
      if (!firstHandles.includes(handle)) return;
      if (failure !== undefined) {
        closed = true;
        for (const h of firstHandles) terminate(h);
        reject(new Error(failure));
        return;
      }
      if (++ready === firstHandles.length) resolve();
    };
  });
  onReady = undefined;

  /**
   * Queues a call for its party, or refuses it. A party's refusal is answered only after refusalHoldMs:
   * answered at once, a client that re-sends at once would turn each refusal into main-thread work and
   * take the gateway from everyone else; held, it can send no faster than its connections allow.
   */
  function enqueue(job: Job): void {
    if (closed) return job.fail({ kind: 'unavailable', reason: 'the authorizer was replaced (configuration reloaded)' });
    const spent = options.budget?.refusal(job.party);
    const queued = spent === undefined ? waiting.push(job) : { ok: false as const, reason: spent };
    if (!queued.ok) {
      setTimeout(() => job.fail({ kind: 'busy', reason: queued.reason }), options.refusalHoldMs ?? defaultRefusalHoldMs).unref();
      return;
    }
    pending += 1;
    if (pending === 1) {
      watchdog ??= setInterval(checkDeadlines, 5);
      clearTimeout(idleTimer);
      idleTimer = undefined;
    }
    dispatch();
  }

  return {
    run: (call) => new Promise((resolve) => enqueue(authorizeJob(nextId++, call, resolve))),
    runSession: (call) => new Promise((resolve) => enqueue(sessionJob(nextId++, call, resolve))),
    setRevoked(ids) {
      revoked = [...ids];
      const message: ToWorker = { type: 'revocations', ids: revoked };
      for (const s of slots) for (const h of [s.active, s.replacement]) if (h && h.state !== 'dead') h.worker.postMessage(message);
      for (const h of retiring) h.worker.postMessage(message);
    },
    stats() {
      return {
        workers: slots.flatMap((s) => (s.active ? [{ slot: s.active.slot, wasmBytes: s.active.wasmBytes, authorizations: s.active.count, inflight: s.active.sent.length }] : [])),
        replacements,
        waiting: waiting.size,
      };
    },
    async close() {
      closed = true;
      clearTimeout(idleTimer);
      if (pending > 0) await new Promise<void>((resolve) => (drained = resolve));
      clearInterval(watchdog);
      for (const s of slots) {
        for (const h of [s.active, s.replacement]) if (h) terminate(h);
      }
      for (const h of [...retiring]) terminate(h);
    },
  };
}
