// Checks every hostile case ends with: the gateway still answers a good request, and audit records
// can be awaited by a predicate over records written after a mark (so cases do not see each other's).
import { expect } from 'vitest';
import type { AuditEntry, HostileGateway } from './hostileGateway.ts';

/** A good request still gets 200 from the recording upstream. */
export async function expectStillServes(g: HostileGateway): Promise<void> {
  const res = await g.send(`GET /web/still-serving HTTP/1.1\r\nHost: localhost\r\n${g.auth()}Connection: close\r\n\r\n`, { expectResponses: 1 });
  expect(res.error, 'the gateway no longer completes a good handshake').toBeUndefined();
  expect(res.finals[0]?.status, 'the gateway no longer serves a good request').toBe(200);
}

/** Number of audit records now: pass it to `recordAfter` to look only at newer ones. */
export function auditMark(g: { h: { audit(): AuditEntry[] } }): number {
  return g.h.audit().length;
}

/** Waits for a record written after `mark` that matches `pred`; undefined if none comes within `timeoutMs`. */
export async function recordAfter(g: { h: { audit(): AuditEntry[] } }, mark: number, pred: (r: AuditEntry) => boolean, timeoutMs = 3000): Promise<AuditEntry | undefined> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const hit = g.h.audit().slice(mark).find(pred);
    if (hit || Date.now() > until) return hit;
    await new Promise((r) => setTimeout(r, 25));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
