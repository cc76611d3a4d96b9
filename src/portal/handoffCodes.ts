// One-time codes that carry a session from the gateway's own origin to a service's origin: the browser
// is redirected with the code (never the token) in the URL; the code works once, for one certificate
// and one host, for a few seconds. One holder keeps them (this process, or the primary of a process group).
import { randomBytes } from 'node:crypto';

/** Long enough for a redirect, short enough that a code in a log is useless. */
export const HANDOFF_TTL_MS = 30_000;
const MAX_PENDING = 10_000;

export interface Handoff {
  /** The session token for that host (already bound to the host, the certificate and the session's end). */
  token: string;
  maxAgeSeconds: number;
  fingerprint: string;
  /** `host[:port]` as the browser will send it, lower case. */
  host: string;
  /** Path (and query) to land on at that host. */
  next: string;
  user: string;
  revocationIds: string[];
  /** How long it is kept (default HANDOFF_TTL_MS); a browser sign-in in progress waits minutes at the IdP. */
  ttlMs?: number;
}

/** `kind`: no such entry (or expired), or one for another certificate or host; absent when the store itself failed. */
export type HandoffTake = { ok: true; handoff: Handoff } | { ok: false; reason: string; kind?: 'unknown' | 'foreign' };

/** The checks of a code taken from its holder (whichever store holds it): unknown, expired, another certificate, another host. */
export function judgeHandoff(taken: { handoff: Handoff; expired: boolean } | undefined, fingerprint: string, host: string): HandoffTake {
  if (taken === undefined) return { ok: false, reason: 'unknown or already used sign-in code', kind: 'unknown' };
  const { handoff, expired } = taken;
  if (expired) return { ok: false, reason: 'sign-in code expired', kind: 'unknown' };
  if (handoff.fingerprint !== fingerprint) return { ok: false, reason: 'sign-in code issued to another certificate', kind: 'foreign' };
  if (handoff.host !== host.toLowerCase()) return { ok: false, reason: `sign-in code issued for ${handoff.host}, redeemed at ${host.toLowerCase()}`, kind: 'foreign' };
  return { ok: true, handoff };
}

export function createHandoffCodes(now: () => number = Date.now) {
  const pending = new Map<string, Handoff & { expiresAt: number }>();
  const sweep = () => {
    const t = now();
    for (const [code, entry] of pending) if (entry.expiresAt <= t) pending.delete(code);
  };
  return {
    issue(handoff: Handoff): string {
      sweep();
      // Bounded: when full, the oldest pending code gives way (a flood only delays other sign-ins).
      if (pending.size >= MAX_PENDING) pending.delete(pending.keys().next().value as string);
      const code = randomBytes(32).toString('base64url');
      pending.set(code, { ...handoff, expiresAt: now() + (handoff.ttlMs ?? HANDOFF_TTL_MS) });
      return code;
    },
    /** Redeems a code: it is gone afterwards whatever the outcome, so a code is never tried twice. */
    take(code: string, fingerprint: string, host: string): HandoffTake {
      const entry = pending.get(code);
      pending.delete(code);
      if (entry === undefined) return judgeHandoff(undefined, fingerprint, host);
      const { expiresAt, ...handoff } = entry;
      return judgeHandoff({ handoff, expired: expiresAt <= now() }, fingerprint, host);
    },
    get size(): number {
      return pending.size;
    },
  };
}

export type HandoffCodes = ReturnType<typeof createHandoffCodes>;

export type HandoffIssue = { ok: true; code: string } | { ok: false; reason: string };

/**
 * Where the portal issues and redeems codes. Asynchronous because under `serve --processes N` the one
 * holder is the primary: the redirect's new connection may land in any gateway process, and single use
 * needs a single place that forgets a code.
 */
export interface HandoffStore {
  issue(handoff: Handoff): Promise<HandoffIssue>;
  take(code: string, fingerprint: string, host: string): Promise<HandoffTake>;
}

/** The store of a gateway that runs as one process: the codes live here. */
export function localHandoffStore(codes: HandoffCodes = createHandoffCodes()): HandoffStore {
  return {
    issue: (handoff) => Promise.resolve({ ok: true, code: codes.issue(handoff) }),
    take: (code, fingerprint, host) => Promise.resolve(codes.take(code, fingerprint, host)),
  };
}
