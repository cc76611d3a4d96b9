// Which engine worker takes the next call, and whether it may be an expensive one: the pool's rules
// for keeping cheap calls (most of them) from waiting behind anyone's expensive ones.
import type { PoolState } from './poolState.ts';
import type { Handle } from './workerHandle.ts';

/**
 * A worker is sent a call while another is still running only if the calls it holds are expected to take
 * less than this (ms): cheap calls overlap their message round trips, an expensive one blocks nobody's next.
 * A party's first calls are expected to take this long (their cost is not known yet).
 */
export const pipelineMs = 2;
/** A call expected to take this long (ms) or more is expensive: see expensiveLanesFull(). */
export const expensiveMs = 5;

/** Engine ms the calls a worker holds are expected to take. */
const heldMs = (h: Handle): number => h.sent.reduce((sum, job) => sum + (job.charged ?? 0), 0);

/**
 * The least busy worker with room: an idle one, or one whose held calls are expected to be short. A
 * worker waiting for its successor gets new work only when no other can take it; the others may then
 * run twice as far ahead, so the full one's memory stays near its bound.
 */
export function pickWorker(ready: readonly Handle[], maxInflight: number): Handle | undefined {
  const room = ready.some((h) => h.full) ? maxInflight * 2 : maxInflight;
  let best: Handle | undefined;
  for (const h of ready) {
    if (h.sent.length >= (h.full ? maxInflight : room)) continue;
    if (h.sent.length > 0 && heldMs(h) >= pipelineMs) continue;
    if (!best || (best.full && !h.full) || (best.full === h.full && h.sent.length < best.sent.length)) best = h;
  }
  return best;
}

/**
 * Whether the workers running an expensive call (expected to take expensiveMs or more) already fill all
 * workers but one: then only a cheap call may start, and a cheap call never waits for someone's expensive one.
 */
export function expensiveLanesFull(ready: readonly Handle[]): boolean {
  const busy = ready.filter((h) => h.sent.some((job) => (job.charged ?? 0) >= expensiveMs)).length;
  return busy >= Math.max(1, ready.length - 1);
}

/** Sends queued calls to workers while a worker has room (see pickWorker) and a call may start there. */
export function dispatch(state: PoolState): void {
  while (state.waiting.size > 0) {
    const ready = state.slots.map((s) => s.active).filter((h): h is Handle => h !== undefined && h.state === 'active');
    const handle = pickWorker(ready, state.maxInflight);
    if (!handle) return;
    const job = state.waiting.take(expensiveLanesFull(ready) ? expensiveMs : Infinity);
    if (!job) return;
    handle.sent.push(job);
    if (handle.sent.length === 1) handle.headStartedAt = performance.now();
    handle.worker.postMessage(job.message);
  }
}
