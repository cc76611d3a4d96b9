// The life of the pool's workers: started (warm-up first), promoted in place of a predecessor, retired
// past a memory or count threshold, killed on a deadline or crash (their calls requeued), and the
// accounting of each call that leaves the pool. Bounds biscuit-wasm's never-returned memory.
import { dispatch } from './poolScheduling.ts';
import type { PoolState } from './poolState.ts';
import { spawnHandle, type Handle, type Job, type WorkerAnswer } from './workerHandle.ts';
import type { EngineFailure, FromWorker, ReplaceReason } from './workerProtocol.ts';

/** Without a readable memory size, replace a worker after this many calls (~12-20 KB leaked each). */
const fallbackRecycleCount = 2000;
/** After this long with no call, a worker grown by at least this share of recycleAfterBytes is replaced. */
const IDLE_RECYCLE_MS = 5000;
const IDLE_RECYCLE_GROWTH = 0.25;

/** A call leaves the pool; one that ran is charged its engine time (to its party's queue and budget). */
export function settle(state: PoolState, job: Job, engineMs: number | undefined, end: () => void): void {
  state.pending -= 1;
  if (state.pending === 0) {
    clearInterval(state.watchdog);
    state.watchdog = undefined;
    state.drained?.();
    state.idleTimer ??= setTimeout(() => recycleGrownWorkers(state), IDLE_RECYCLE_MS).unref();
  }
  if (engineMs !== undefined) {
    state.waiting.finish(job, engineMs);
    state.options.budget?.charge(job.party, engineMs);
  }
  end();
}

// biscuit-wasm's memory only grows: a worker that grew under a burst would keep it until the next burst
// pushes it past recycleAfterBytes. Once the pool has been idle a while, such a worker is replaced, so a
// quiet gateway settles back to fresh workers (one worker start; nothing is waiting).
function recycleGrownWorkers(state: PoolState): void {
  state.idleTimer = undefined;
  if (state.closed || state.pending > 0) return;
  for (const s of state.slots) {
    const h = s.active;
    if (!h || h.state !== 'active' || h.full || h.readyBytes === undefined || h.wasmBytes < 0) continue;
    if (h.wasmBytes - h.readyBytes < state.options.recycleAfterBytes * IDLE_RECYCLE_GROWTH) continue;
    h.retireReason = 'idle';
    h.full = true;
    replaceWorker(state, h.slot);
  }
}

export function startWorker(state: PoolState, slot: number): Handle {
  const { wasmModule } = state;
  const handle = spawnHandle({ ...state.options.init, revoked: state.revoked, ...(wasmModule && { wasmModule }) }, state.prepared, slot);
  const { worker, results } = handle;
  results.on('message', (message: FromWorker) => onWorkerMessage(state, handle, message));
  worker.on('error', () => onWorkerExit(state, handle));
  worker.on('exit', () => onWorkerExit(state, handle));
  return handle;
}

/** Counted when a worker leaves service, with the reason it left. */
function replaced(state: PoolState, reason: ReplaceReason): void {
  state.replacements += 1;
  state.observer.workerReplaced?.(reason);
}

function replaceWorker(state: PoolState, slot: number): void {
  const s = state.slots[slot];
  if (!s || s.replacement || state.closed) return;
  s.replacement = startWorker(state, slot);
}

export function terminateWorker(state: PoolState, handle: Handle): void {
  handle.state = 'dead';
  state.retiring.delete(handle);
  handle.results.close();
  void handle.worker.terminate();
}

function promote(state: PoolState, handle: Handle): void {
  const s = state.slots[handle.slot];
  if (!s) return;
  s.failures = 0;
  if (state.closed) return terminateWorker(state, handle);
  s.replacement = undefined;
  const old = s.active;
  handle.state = 'active';
  s.active = handle;
  if (old && old.state === 'active') {
    // No new work for the old worker; it ends once what it was sent is answered.
    replaced(state, old.retireReason ?? 'memory');
    old.state = 'retiring';
    state.retiring.add(old);
    if (old.sent.length === 0) terminateWorker(state, old);
  }
  dispatch(state);
}

export function onWorkerMessage(state: PoolState, handle: Handle, message: FromWorker): void {
  if (message.type === 'ready') {
    handle.wasmBytes = message.wasmBytes;
    handle.readyBytes = message.wasmBytes;
    if (handle.slot >= 0) state.observer.workerMemory?.(handle.slot, message.wasmBytes);
    state.onReady?.(handle, undefined);
    promote(state, handle);
    return;
  }
  if (message.type === 'failed') {
    state.onReady?.(handle, message.reason);
    return;
  }
  if (message.type === 'info') {
    const job = handle.sent.find((j) => j.id === message.id);
    if (job) job.info = message.info;
    return;
  }
  finished(state, handle, message);
}

function finished(state: PoolState, handle: Handle, message: WorkerAnswer): void {
  const job = handle.sent.shift();
  if (handle.sent.length > 0) handle.headStartedAt = performance.now();
  if (message.wasmBytes !== handle.wasmBytes) state.observer.workerMemory?.(handle.slot, message.wasmBytes);
  handle.wasmBytes = message.wasmBytes;
  handle.count = message.count;
  if (job) settle(state, job, message.engineMs, () => job.answer(message, job));
  if (message.poisoned) {
    killWorker(state, handle, 'fault');
  } else if (handle.state === 'retiring' && handle.sent.length === 0) {
    terminateWorker(state, handle);
  } else if (handle.state === 'active') {
    const { recycleAfterAuthorizations, recycleAfterBytes } = state.options;
    const limit = recycleAfterAuthorizations ?? (handle.wasmBytes < 0 ? fallbackRecycleCount : undefined);
    if (!handle.full && handle.wasmBytes >= recycleAfterBytes) handle.retireReason = 'memory';
    else if (!handle.full && limit !== undefined && handle.count >= limit) handle.retireReason = 'count';
    if (handle.retireReason !== undefined) {
      handle.full = true;
      replaceWorker(state, handle.slot);
    }
  }
  dispatch(state);
}

/** Takes a worker out now: the running call gets `head` (and is charged the time it ran), the others go back to the queue. */
export function killWorker(state: PoolState, handle: Handle, reason: ReplaceReason, head?: EngineFailure): void {
  if (handle.state === 'dead') return;
  const wasActive = handle.state === 'active';
  const ranMs = performance.now() - handle.headStartedAt;
  const jobs = handle.sent.splice(0);
  terminateWorker(state, handle);
  replaced(state, reason);
  const first = head !== undefined ? jobs.shift() : undefined;
  if (first && head) settle(state, first, ranMs, () => first.fail(head));
  state.waiting.requeue(jobs);
  const s = state.slots[handle.slot];
  if (s && wasActive && s.active === handle) {
    s.active = undefined;
    replaceWorker(state, handle.slot);
  }
  dispatch(state);
}

function onWorkerExit(state: PoolState, handle: Handle): void {
  if (handle.state === 'dead') return;
  if (handle.state === 'starting') {
    handle.state = 'dead';
    state.onReady?.(handle, 'the worker exited while starting');
    const s = state.slots[handle.slot];
    if (!s || state.closed || s.replacement !== handle) return;
    s.replacement = undefined;
    s.failures += 1;
    // Back off, then try again: calls wait (up to queueTimeoutMs) on the other workers.
    const timer = setTimeout(() => replaceWorker(state, handle.slot), Math.min(30_000, 100 * 2 ** s.failures));
    timer.unref();
    return;
  }
  const [running] = handle.sent;
  killWorker(state, handle, 'crash', running ? { kind: 'unavailable', reason: 'the authorization worker stopped unexpectedly' } : undefined);
}
