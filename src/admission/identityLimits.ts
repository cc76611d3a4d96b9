// Per-identity limits: a request-rate token bucket and an engine-time bucket per client certificate, and
// a count of the tunnels each identity holds open. All outlive config reloads; their numbers are read from the current config.
import { LRUCache } from 'lru-cache';
import type { GatewayLimits } from '../config/schema.ts';

/** A refusal with `holdMs` is answered only that much later (see refusalHoldMs). */
export type LimitDecision = { ok: true } | { ok: false; retryAfterSeconds: number; reason: string; holdMs?: number };

interface Bucket {
  tokens: number;
  at: number;
}

export type LimitName = 'requestsPerSecond' | 'engineMsPerSecond' | 'tunnelsPerIdentity';

/**
 * Several instances holding one limit between them (cluster:): each keeps its own buckets, sized by its
 * share of the identity's demand as every instance last reported it (see cluster/limitShares.ts).
 */
export interface LimitShares {
  /** This instance's share, in (0, 1], of `identity`'s request rate and burst. */
  shareOf(identity: string): number;
  /** Tunnels `identity` holds open on the other instances, as they last reported. */
  tunnelsElsewhere(identity: string): number;
}

/** What this instance saw since the last report: requests tried per identity (refused ones too), tunnels open now. */
export interface IdentityDemand {
  requests: ReadonlyMap<string, number>;
  tunnels: ReadonlyMap<string, number>;
}

export interface IdentityLimits {
  /**
   * Takes one request from `identity`'s bucket (its certificate fingerprint). An identity that spent
   * more engine time than its budget is refused first (held, without taking from the bucket).
   */
  takeRequest(identity: string): LimitDecision;
  /** Charges `ms` of authorization engine time to `identity` (after the call ran: the bucket may go below zero). */
  chargeEngine(identity: string, ms: number): void;
  /**
   * Why `identity` may not start another engine call now (it spent more than its engine budget), or
   * undefined. Asked by the authorizer only when a call needs the engine: cached decisions stay free.
   */
  engineRefusal(identity: string): string | undefined;
  /**
   * Reserves a tunnel slot for `identity` (token user, or certificate without one); the returned
   * function releases it (idempotent). A full identity gets a refusal instead.
   */
  reserveTunnel(identity: string): { ok: true; release: () => void } | { ok: false; retryAfterSeconds: number; reason: string };
  tunnelsOf(identity: string): number;
  /** The demand since the last call (then counted afresh); only counted when the limits are shared. */
  takeDemand(): IdentityDemand;
}

/**
 * How long a refusal for spent engine time is held before it is answered. Answered at once, a client
 * that re-sends at once (ignoring Retry-After) turns each refusal into main-thread work and takes the
 * gateway from everyone else; held, it can send no faster than one request per connection per hold.
 */
export const refusalHoldMs = 1000;

/** Resolves when `refusal` may be answered: after its hold, at once when it has none. */
export function holdRefusal(refusal: { holdMs?: number }): Promise<void> {
  if (refusal.holdMs === undefined) return Promise.resolve();
  return new Promise((resolve) => setTimeout(resolve, refusal.holdMs).unref());
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

/** Identities counted per report at most: beyond it (a flood of certificates) the rest keep their local share. */
const MAX_COUNTED = 100_000;

/**
 * `onRefused` counts each refusal by limit name (records of them are rate limited, counts are not);
 * `shares`: the limits are held with other instances.
 */
export function createIdentityLimits(limits: () => GatewayLimits, onRefused: (limit: LimitName) => void = () => {}, shares?: LimitShares): IdentityLimits {
  // Bounded: an attacker with many certificates cannot grow these without limit (the oldest are
  // forgotten, which at worst hands them a fresh bucket).
  const buckets = new LRUCache<string, Bucket>({ max: 100_000 });
  const engine = new LRUCache<string, Bucket>({ max: 100_000 });
  const tunnels = new Map<string, number>();
  // One Map update per request, and only in a cluster: the shares need each identity's demand.
  let attempts = new Map<string, number>();

  // Engine time is charged after each call: an identity whose calls cost more than its budget is
  // refused until the bucket refills above zero, however few requests it sends.
  function engineOverdraft(identity: string): Extract<LimitDecision, { ok: false }> | undefined {
    if (engine.get(identity) === undefined) return undefined;
    const { engineMsPerSecond, engineBurstMs } = limits();
    const spent = refilled(engine, identity, engineMsPerSecond, engineBurstMs);
    if (spent.tokens >= 0) return undefined;
    onRefused('engineMsPerSecond');
    const reason = `authorization engine time over limits.engineMsPerSecond (${engineMsPerSecond} ms/s, burst ${engineBurstMs} ms): ${Math.round(-spent.tokens)} ms over`;
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(-spent.tokens / engineMsPerSecond)), reason, holdMs: refusalHoldMs };
  }

  return {
    takeRequest(identity) {
      const spent = engineOverdraft(identity);
      if (spent !== undefined) return spent;
      let { requestsPerSecond: rate, requestBurst: burst } = limits();
      if (shares !== undefined) {
        const tried = attempts.get(identity);
        if (tried !== undefined || attempts.size < MAX_COUNTED) attempts.set(identity, (tried ?? 0) + 1);
        const share = shares.shareOf(identity);
        rate *= share;
        burst = Math.max(1, burst * share);
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
    engineRefusal: (identity) => engineOverdraft(identity)?.reason,
    reserveTunnel(identity) {
      const max = limits().tunnelsPerIdentity;
      const open = tunnels.get(identity) ?? 0;
      const elsewhere = shares?.tunnelsElsewhere(identity) ?? 0;
      if (open + elsewhere >= max) {
        onRefused('tunnelsPerIdentity');
        return { ok: false, retryAfterSeconds: 5, reason: `${open} tunnels open${elsewhere > 0 ? ` here and ${elsewhere} on other instances` : ''}, limits.tunnelsPerIdentity is ${max}` };
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
    takeDemand() {
      const requests = attempts;
      attempts = new Map();
      return { requests, tunnels: new Map(tunnels) };
    },
  };
}
