// Hand-off codes under `serve --processes N`: the primary holds them, gateway processes issue and redeem
// over the cluster IPC channel, so a code issued in one process works once in any (see handoffCodes.ts).
import type { Worker } from 'node:cluster';
import type { Handoff, HandoffCodes, HandoffIssue, HandoffStore, HandoffTake } from './handoffCodes.ts';

/** Messages between a gateway process and the primary about hand-off codes. */
export type HandoffMessage =
  | { gatehouse: 'handoff-issue'; id: number; handoff: Handoff }
  | { gatehouse: 'handoff-take'; id: number; code: string; fingerprint: string; host: string }
  | { gatehouse: 'handoff-issued'; id: number; code: string }
  | { gatehouse: 'handoff-taken'; id: number; result: HandoffTake };

/** The gateway process's channel to the primary (process.send / process.on). */
export interface HandoffChannel {
  send(message: HandoffMessage, callback: (err: Error | null) => void): boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  readonly connected: boolean;
}

/** A redirect waits for this at most: the primary answers in well under a millisecond unless it is gone. */
const ANSWER_TIMEOUT_MS = 5000;

function isHandoffMessage(value: unknown): value is HandoffMessage {
  const m = value as { gatehouse?: unknown; id?: unknown } | null;
  return typeof m === 'object' && m !== null && typeof m.gatehouse === 'string' && m.gatehouse.startsWith('handoff-') && typeof m.id === 'number';
}

/**
 * A gateway process's store: asks the primary. Fails closed: without an answer (channel closed, primary
 * stuck) no code is issued and none is redeemed.
 */
export function openIpcHandoffStore(channel: HandoffChannel, timeoutMs = ANSWER_TIMEOUT_MS): HandoffStore {
  let nextId = 0;
  const waiting = new Map<number, (answer: HandoffMessage | { error: string }) => void>();
  channel.on('message', (message) => {
    if (!isHandoffMessage(message)) return;
    waiting.get(message.id)?.(message);
  });
  const ask = (message: HandoffMessage): Promise<HandoffMessage | { error: string }> =>
    new Promise((resolve) => {
      const { id } = message;
      const timer = setTimeout(() => done({ error: `the primary process did not answer within ${timeoutMs} ms` }), timeoutMs);
      timer.unref();
      function done(answer: HandoffMessage | { error: string }): void {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(answer);
      }
      waiting.set(id, done);
      if (!channel.connected) return done({ error: 'the channel to the primary process is closed' });
      channel.send(message, (err) => {
        if (err) done({ error: `cannot reach the primary process: ${err.message}` });
      });
    });
  return {
    async issue(handoff): Promise<HandoffIssue> {
      const answer = await ask({ gatehouse: 'handoff-issue', id: nextId++, handoff });
      if ('error' in answer) return { ok: false, reason: `sign-in code not issued: ${answer.error}` };
      return answer.gatehouse === 'handoff-issued' ? { ok: true, code: answer.code } : { ok: false, reason: 'sign-in code not issued: unexpected answer' };
    },
    async take(code, fingerprint, host): Promise<HandoffTake> {
      const answer = await ask({ gatehouse: 'handoff-take', id: nextId++, code, fingerprint, host });
      if ('error' in answer) return { ok: false, reason: `sign-in code not checked: ${answer.error}` };
      return answer.gatehouse === 'handoff-taken' ? answer.result : { ok: false, reason: 'sign-in code not checked: unexpected answer' };
    },
  };
}

/** The primary's side: keeps the codes of every gateway process in `codes` and answers `worker`'s requests. */
export function serveHandoffCodes(worker: Worker, codes: HandoffCodes): void {
  const reply = (message: HandoffMessage) => {
    // A process that went away meanwhile gets no answer (its browser retries the sign-in).
    if (worker.isConnected()) worker.send(message, undefined, () => {});
  };
  worker.on('message', (message: unknown) => {
    if (!isHandoffMessage(message)) return;
    if (message.gatehouse === 'handoff-issue') reply({ gatehouse: 'handoff-issued', id: message.id, code: codes.issue(message.handoff) });
    else if (message.gatehouse === 'handoff-take') reply({ gatehouse: 'handoff-taken', id: message.id, result: codes.take(message.code, message.fingerprint, message.host) });
  });
}
