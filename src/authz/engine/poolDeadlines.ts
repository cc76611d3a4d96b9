// The pool's watchdog, run every 5 ms while calls are in flight: a call past its hard deadline has its
// worker stopped (if the worker is computing, see probeOverdue) and a call that waited too long is refused.
import { receiveMessageOnPort } from 'node:worker_threads';
import type { PoolState } from './poolState.ts';
import { killWorker, onWorkerMessage, settle } from './poolWorkers.ts';
import { probeOverdue, type Handle, type Job } from './workerHandle.ts';
import type { FromWorker } from './workerProtocol.ts';

export function checkDeadlines(state: PoolState): void {
  const now = performance.now();
  const busy = [...state.slots.map((s) => s.active), ...state.retiring].filter((h): h is Handle => h !== undefined && h.sent.length > 0);
  for (const handle of busy) {
    // A busy main thread may not have read results the worker already sent: read them first.
    for (let m = receiveMessageOnPort(handle.results); m !== undefined; m = receiveMessageOnPort(handle.results)) {
      onWorkerMessage(state, handle, m.message as FromWorker);
      if (handle.state === 'dead') break;
    }
    const head = handle.sent[0];
    if (!head || handle.state === 'dead') continue;
    const elapsedMs = now - handle.headStartedAt;
    if (elapsedMs > head.deadlineMs) probeOverdue(handle, head, elapsedMs, (ms, cpuMs) => stop(state, handle, head, ms, cpuMs));
  }
  for (const job of state.waiting.expire(now - state.queueTimeoutMs)) {
    settle(state, job, undefined, () => job.fail({ kind: 'unavailable', reason: `no authorization worker became available within ${state.queueTimeoutMs} ms` }));
  }
}

function stop(state: PoolState, handle: Handle, head: Job, elapsedMs: number, cpuMs?: number): void {
  killWorker(state, handle, 'deadline', { kind: 'deadline', elapsedMs, ...(cpuMs !== undefined && { cpuMs }), ...(head.info && { info: head.info }) });
}
