// A small pool of engine worker threads. Bounds biscuit-wasm's never-returned memory by replacing a
// worker past a threshold (the successor warms up first; the old one finishes its queue), and bounds
// each call by a hard deadline enforced from here: a stuck worker is terminated and replaced.
//
// The deadline is wall-clock, confirmed by CPU: past it, the worker's CPU time is sampled over a short
// window and the worker is stopped only if it is computing (a thread merely starved of CPU on a busy
// machine is not the token's fault). Ten times the deadline stops it regardless.
import { receiveMessageOnPort } from 'node:worker_threads';
import type { EngineCall, EngineOutcome, EngineWorkerInit, FromWorker, ReplaceReason, ToWorker } from './workerProtocol.ts';

export type { EngineCall, EngineOutcome, ReplaceReason } from './workerProtocol.ts';
import { sharedWasmModule } from './sharedWasm.ts';
import { probeOverdue, spawnHandle, workerUrl, type Handle, type Job } from './workerHandle.ts';
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
  observer?: PoolObserver;
}

export interface PoolObserver {
  workerMemory?(slot: number, bytes: number): void;
  workerReplaced?(reason: ReplaceReason): void;
}

/** Without a readable memory size, replace a worker after this many calls (~12-20 KB leaked each). */
const fallbackRecycleCount = 2000;

export interface PoolStats {
  workers: { slot: number; wasmBytes: number; authorizations: number; inflight: number }[];
  replacements: number;
  waiting: number;
}

export interface EnginePool {
  run(call: EngineCall): Promise<EngineOutcome>;
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
  const waiting: Job[] = [];
  let nextId = 1;
  let replacements = 0;
  let pending = 0;
  let closed = false;
  let drained: (() => void) | undefined;

  // Deadlines are watched only while calls are in flight: an idle gateway is not woken 200 times a second.
  let watchdog: NodeJS.Timeout | undefined;

  function settle(job: Job, outcome: EngineOutcome): void {
    pending -= 1;
    if (pending === 0) {
      clearInterval(watchdog);
      watchdog = undefined;
      drained?.();
    }
    job.resolve(outcome);
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
    const job = handle.sent.shift();
    if (handle.sent.length > 0) handle.headStartedAt = performance.now();
    if (message.wasmBytes !== handle.wasmBytes) observer.workerMemory?.(handle.slot, message.wasmBytes);
    handle.wasmBytes = message.wasmBytes;
    handle.count = message.count;
    const info = message.info ?? job?.info;
    if (job) settle(job, { kind: 'done', decision: message.decision, ...(info && { info }) });
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

  /** Takes a worker out now: the running call gets `head`, the others go back to the queue. */
  function kill(handle: Handle, reason: ReplaceReason, head?: EngineOutcome): void {
    if (handle.state === 'dead') return;
    const wasActive = handle.state === 'active';
    const jobs = handle.sent.splice(0);
    terminate(handle);
    replaced(reason);
    const first = head !== undefined ? jobs.shift() : undefined;
    if (first && head) settle(first, head);
    waiting.unshift(...jobs);
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

  /**
   * The least busy worker with room. A worker waiting for its successor gets new work only when no
   * other can take it; the others may then run twice as far ahead, so the full one's memory stays near its bound.
   */
  function pick(): Handle | undefined {
    const ready = slots.map((s) => s.active).filter((h): h is Handle => h !== undefined && h.state === 'active');
    const room = ready.some((h) => h.full) ? maxInflight * 2 : maxInflight;
    let best: Handle | undefined;
    for (const h of ready) {
      if (h.sent.length >= (h.full ? maxInflight : room)) continue;
      if (!best || (best.full && !h.full) || (best.full === h.full && h.sent.length < best.sent.length)) best = h;
    }
    return best;
  }

  function dispatch(): void {
    while (waiting.length > 0) {
      const handle = pick();
      if (!handle) return;
      const job = waiting.shift() as Job;
      handle.sent.push(job);
      if (handle.sent.length === 1) handle.headStartedAt = performance.now();
      const { token, route, facts, wantInfo } = job.call;
      const message: ToWorker = { type: 'authorize', id: job.id, token, route, facts, wantInfo };
      handle.worker.postMessage(message);
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
      if (elapsedMs > head.call.deadlineMs) probeOverdue(handle, head, elapsedMs, (ms, cpuMs) => stop(handle, head, ms, cpuMs));
    }
    while (waiting.length > 0 && now - (waiting[0] as Job).queuedAt > queueTimeoutMs) {
      settle(waiting.shift() as Job, { kind: 'unavailable', reason: `no authorization worker became available within ${queueTimeoutMs} ms` });
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

  return {
    run(call) {
      if (closed) return Promise.resolve({ kind: 'unavailable', reason: 'the authorizer was replaced (configuration reloaded)' });
      return new Promise((resolve) => {
        pending += 1;
        if (pending === 1) watchdog ??= setInterval(checkDeadlines, 5);
        waiting.push({ id: nextId++, call, resolve, queuedAt: performance.now() });
        dispatch();
      });
    },
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
        waiting: waiting.length,
      };
    },
    async close() {
      closed = true;
      if (pending > 0) await new Promise<void>((resolve) => (drained = resolve));
      clearInterval(watchdog);
      for (const s of slots) {
        for (const h of [s.active, s.replacement]) if (h) terminate(h);
      }
      for (const h of [...retiring]) terminate(h);
    },
  };
}
