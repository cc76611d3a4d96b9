// The two kinds of call the engine pool runs, as jobs: an authorization and a piece of sign-in token
// work. Each job turns its worker's answer (or the pool's refusal) into the outcome its caller awaits.
import type { Job, WorkerAnswer } from './workerHandle.ts';
import type { EngineCall, EngineFailure, EngineOutcome, SessionCall, SessionOutcome } from './workerProtocol.ts';

const unexpected = (m: WorkerAnswer): EngineFailure => ({ kind: 'unavailable', reason: `the worker answered a ${m.type} it was not asked for` });

export function authorizeJob(id: number, call: EngineCall, resolve: (outcome: EngineOutcome) => void): Job {
  const { party, deadlineMs, token, route, facts, wantInfo } = call;
  return {
    id, party, deadlineMs, queuedAt: performance.now(),
    message: { type: 'authorize', id, token, route, facts, wantInfo },
    answer(m, job) {
      if (m.type !== 'result') return resolve(unexpected(m));
      const info = m.info ?? job.info;
      resolve({ kind: 'done', decision: m.decision, ...(info && { info }) });
    },
    fail: resolve,
  };
}

export function sessionJob(id: number, call: SessionCall, resolve: (outcome: SessionOutcome) => void): Job {
  return {
    id, party: call.party, deadlineMs: call.deadlineMs, queuedAt: performance.now(),
    message: { type: 'session', id, work: call.work },
    answer: (m) => resolve(m.type === 'session-result' ? { kind: 'done', result: m.result } : unexpected(m)),
    fail: resolve,
  };
}
