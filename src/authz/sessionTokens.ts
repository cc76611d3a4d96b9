// Sign-in's token work as the portal asks for it, handed to the engine pool: the main thread never runs
// biscuit-wasm for a browser, so its WebAssembly memory does not grow with sign-ins (the workers' is recycled).
import { refuse } from '../errors/refusal.ts';
import type { TokenCheck } from '../session/sessionToken.ts';
import type { SessionTokens } from './types.ts';
import type { EngineFailure, MintedSession, SessionResult, SessionWork } from './engine/workerProtocol.ts';
import type { EnginePool } from './engine/enginePool.ts';

/** Hard deadline of one piece of sign-in work once a worker starts it (verifying a token takes a few ms). */
const sessionDeadlineMs = 250;

function failureText(failure: EngineFailure): string {
  return failure.kind === 'deadline' ? `sign-in token work ran past its hard deadline of ${sessionDeadlineMs} ms (${Math.round(failure.elapsedMs)} ms); the worker was stopped` : failure.reason;
}

export function createSessionTokens(pool: () => EnginePool): SessionTokens {
  /** The worker's result, or why there is none (text for the audit record). */
  async function run(party: string, work: SessionWork): Promise<SessionResult | { failed: string; busy: boolean }> {
    const outcome = await pool().runSession({ party, work, deadlineMs: sessionDeadlineMs });
    // busy: the client's own engine-time budget or queue refused the work, a limit (429), not a failure of the gateway's.
    return outcome.kind === 'done' ? outcome.result : { failed: failureText(outcome), busy: outcome.kind === 'busy' };
  }
  const mismatch = 'the worker answered another kind of work';
  return {
    async verify(token, identity, sourceIp): Promise<TokenCheck> {
      const result = await run(identity.fingerprint, { op: 'verify', token, identity, sourceIp, now: Date.now() });
      if ('op' in result && result.op === 'verify') return result.check;
      if ('failed' in result && result.busy) return { ok: false, ...refuse('GH_RATE_LIMITED', result.failed) };
      return { ok: false, ...refuse('GH_TOKEN_CHECK_UNAVAILABLE', 'failed' in result ? result.failed : mismatch) };
    },
    async mint(token, fingerprint, expiresAt, host): Promise<MintedSession> {
      const result = await run(fingerprint, { op: 'mint', token, fingerprint, expiresAt: expiresAt.getTime(), ...(host !== undefined && { host }) });
      if ('op' in result && result.op === 'mint') return result.minted;
      return 'failed' in result ? { ok: false, reason: result.failed, busy: result.busy } : { ok: false, reason: mismatch };
    },
  };
}
