// Limits of UDP flows: flows per identity, and datagrams per second per flow and per identity (token buckets
// holding one second of rate). Past a rate a datagram is dropped and counted, never queued.
import type { UdpLimits } from '../config/schema.ts';

/** Datagrams per second with a burst of one second's worth; refilled from the clock on each take. */
export class PacketBucket {
  readonly #rate: number;
  #tokens: number;
  #at: number;

  constructor(rate: number, now = performance.now()) {
    this.#rate = rate;
    this.#tokens = rate;
    this.#at = now;
  }

  /** Takes one datagram's token at `now` (ms); false when the bucket is empty. */
  take(now: number): boolean {
    // Hot path (every datagram): two arithmetic operations and a compare, no allocation.
    this.#tokens = Math.min(this.#rate, this.#tokens + ((now - this.#at) * this.#rate) / 1000);
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/** What one identity's flows share: a bucket each way, and how many flows it holds. */
export interface IdentityFlows {
  readonly toUpstream: PacketBucket;
  readonly toClient: PacketBucket;
  flows: number;
}

export type FlowSlot = { ok: true; shared: IdentityFlows; release: () => void } | { ok: false; reason: string };

/** The identities with UDP flows open now; an identity's entry goes with its last flow, so the map holds no strangers. */
export class UdpIdentities {
  readonly #open = new Map<string, IdentityFlows>();

  /** Reserves a flow for `identity` under `limits`; the release is idempotent. */
  reserve(identity: string, limits: UdpLimits): FlowSlot {
    let shared = this.#open.get(identity);
    if (shared && shared.flows >= limits.flowsPerIdentity) return { ok: false, reason: `${identity} has ${shared.flows} UDP flows open (limits.udp.flowsPerIdentity ${limits.flowsPerIdentity})` };
    if (!shared) {
      shared = { toUpstream: new PacketBucket(limits.packetsPerSecondPerIdentity), toClient: new PacketBucket(limits.packetsPerSecondPerIdentity), flows: 0 };
      this.#open.set(identity, shared);
    }
    shared.flows += 1;
    const held = shared;
    let released = false;
    return {
      ok: true,
      shared: held,
      release: () => {
        if (released) return;
        released = true;
        held.flows -= 1;
        if (held.flows === 0 && this.#open.get(identity) === held) this.#open.delete(identity);
      },
    };
  }

  flowsOf(identity: string): number {
    return this.#open.get(identity)?.flows ?? 0;
  }
}
