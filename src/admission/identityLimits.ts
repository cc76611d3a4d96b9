// Per-identity limits: a request-rate token bucket and an engine-time bucket per client certificate, and
// a count of the tunnels each identity holds open. All outlive config reloads; their numbers are read from the current config.
import { LRUCache } from 'lru-cache';
import type { GatewayLimits } from '../config/schema.ts';

export type LimitDecision = { ok: true } | { ok: false; retryAfterSeconds: number; reason: string };

interface Bucket {
  tokens: number;
  at: number;
}

export type LimitName = 'requestsPerSecond' | 'engineMsPerSecond' | 'tunnelsPerIdentity';

export interface IdentityLimits {
  /**
   * Takes one request from `identity`'s bucket (its certificate fingerprint); refused too while the
   * identity has spent more authorization engine time than its budget.
   */
  takeRequest(identity: string): LimitDecision;
  /** Charges `ms` of authorization engine time to `identity` (after the call ran: the bucket may go below zero). */
  chargeEngine(identity: string, ms: number): void;
  /**
   * Reserves a tunnel slot for `identity` (token user, or certificate without one); the returned
   * function releases it (idempotent). A full identity gets a refusal instead.
   */
  reserveTunnel(identity: string): { ok: true; release: () => void } | { ok: false; retryAfterSeconds: number; reason: string };
  tunnelsOf(identity: string): number;
}

/** Shared by every allowed request (nothing writes to it). */
const REQUEST_ALLOWED = Object.freeze({ ok: true as const });

/** A token bucket of `identity` in `buckets`, refilled at `rate` per second up to `burst`. */
function refilled(buckets: LRUCache<string, Bucket>, identity: string, rate: number, burst: number): Bucket {
  const now = performance.now();
  // get() already makes a known bucket the most recent; only a new one needs a set().
  let bucket = buckets.get(identity);
  if (bucket === undefined) {
    bucket = { tokens: burst, at: now };
    buckets.set(identity, bucket);
  }
  bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * rate);
  bucket.at = now;
  return bucket;
}

/** `onRefused` counts each refusal by limit name (records of them are rate limited, counts are not). */
export function createIdentityLimits(limits: () => GatewayLimits, onRefused: (limit: LimitName) => void = () => {}): IdentityLimits {
  // Bounded: an attacker with many certificates cannot grow these without limit (the oldest are
  // forgotten, which at worst hands them a fresh bucket).
  const buckets = new LRUCache<string, Bucket>({ max: 100_000 });
  const engine = new LRUCache<string, Bucket>({ max: 100_000 });
  const tunnels = new Map<string, number>();
  return {
    takeRequest(identity) {
      const { requestsPerSecond: rate, requestBurst: burst, engineMsPerSecond, engineBurstMs } = limits();
      // Engine time is charged after each call: an identity whose calls cost more than its budget is
      // refused until the bucket refills above zero, however few requests it sends.
      const spent = engine.get(identity) === undefined ? undefined : refilled(engine, identity, engineMsPerSecond, engineBurstMs);
      if (spent !== undefined && spent.tokens < 0) {
        onRefused('engineMsPerSecond');
        const retryAfterSeconds = Math.max(1, Math.ceil(-spent.tokens / engineMsPerSecond));
        return { ok: false, retryAfterSeconds, reason: `authorization engine time over limits.engineMsPerSecond (${engineMsPerSecond} ms/s, burst ${engineBurstMs} ms): ${Math.round(-spent.tokens)} ms over` };
      }
      const bucket = refilled(buckets, identity, rate, burst);
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return REQUEST_ALLOWED;
      }
      onRefused('requestsPerSecond');
      const retryAfterSeconds = Math.max(1, Math.ceil((1 - bucket.tokens) / rate));
      return { ok: false, retryAfterSeconds, reason: `request rate over limits.requestsPerSecond (${rate}/s, burst ${burst})` };
    },
    chargeEngine(identity, ms) {
      const { engineMsPerSecond, engineBurstMs } = limits();
      refilled(engine, identity, engineMsPerSecond, engineBurstMs).tokens -= ms;
    },
    reserveTunnel(identity) {
      const max = limits().tunnelsPerIdentity;
      const open = tunnels.get(identity) ?? 0;
      if (open >= max) {
        onRefused('tunnelsPerIdentity');
        return { ok: false, retryAfterSeconds: 5, reason: `${open} tunnels open, limits.tunnelsPerIdentity is ${max}` };
      }
      tunnels.set(identity, open + 1);
      let released = false;
      return {
        ok: true,
        release() {
          if (released) return;
          released = true;
          const left = (tunnels.get(identity) ?? 1) - 1;
          if (left > 0) tunnels.set(identity, left);
          else tunnels.delete(identity);
        },
      };
    },
    tunnelsOf(identity) {
      return tunnels.get(identity) ?? 0;
    },
  };
}
