// The engine pool's waiting room: one bounded queue per party (a client certificate), served by the
// engine time each party has used (start-time fair queuing), so one party's expensive calls wait behind its own.
//
// A call's cost is known only once it ran: a party is charged its running estimate (its recent average
// cost) when a call leaves the queue, and the difference when the call ends. A party that waits again
// after an idle spell starts from the current virtual time: no credit is saved up while idle.

import { LRUCache } from 'lru-cache';

export interface FairItem {
  party: string;
  queuedAt: number;
  /** Engine ms charged to the party when the item left the queue (its estimate at the time). */
  charged?: number;
}

interface Party<J extends FairItem> {
  name: string;
  waiting: J[];
  /** Engine ms this party was charged, on the queue's virtual clock. */
  used: number;
  /** Recent engine ms per call (moving average): what the next call is expected to cost. */
  estimate: number;
  /** Calls taken out of the queue and not yet ended. */
  running: number;
}

/** Weight of the newest cost in a party's moving average. */
const estimateWeight = 0.3;

/** Estimates of parties with no work right now, kept for when they come back (bounded, oldest forgotten). */
const rememberedEstimates = 10_000;

export type Enqueued = { ok: true } | { ok: false; reason: string };

export class FairQueue<J extends FairItem> {
  readonly #parties = new Map<string, Party<J>>();
  /** Parties with at least one waiting item. */
  readonly #backlogged = new Set<Party<J>>();
  readonly #estimates = new LRUCache<string, number>({ max: rememberedEstimates });
  readonly #perParty: number;
  readonly #total: number;
  /** What a party's first call is expected to cost before anything is known about it (ms). */
  readonly #initialEstimateMs: number;
  #size = 0;
  /** The virtual time: the highest `used` a party had when one of its items was taken. */
  #now = 0;

  constructor(limits: { perParty: number; total: number; initialEstimateMs: number }) {
    this.#perParty = limits.perParty;
    this.#total = limits.total;
    this.#initialEstimateMs = limits.initialEstimateMs;
  }

  get size(): number {
    return this.#size;
  }

  /** Queues `item` behind its party's others, or says why it cannot wait (its party's queue, or all, is full). */
  push(item: J): Enqueued {
    const party = this.#party(item.party);
    if (party.waiting.length >= this.#perParty) return { ok: false, reason: `${party.waiting.length} authorizations of this client certificate are already waiting (authz.workers.queuePerIdentity)` };
    if (this.#size >= this.#total) return { ok: false, reason: `${this.#size} authorizations are already waiting` };
    if (party.waiting.length === 0 && party.running === 0) party.used = Math.max(party.used, this.#now);
    party.waiting.push(item);
    this.#backlogged.add(party);
    this.#size += 1;
    return { ok: true };
  }

  /** Puts items taken out earlier back at the head of their parties' queues (their worker died), refunding their estimates. */
  requeue(items: readonly J[]): void {
    for (let i = items.length - 1; i >= 0; i--) {
      const item = items[i] as J;
      const party = this.#party(item.party);
      party.waiting.unshift(item);
      this.#backlogged.add(party);
      this.#settle(party, item, 0, false);
      this.#size += 1;
    }
  }

  /**
   * The next item to run: the head of the backlogged party that has used the least engine time; with
   * `under`, only of a party whose calls are expected to cost less than that many ms.
   */
  take(under = Infinity): J | undefined {
    let best: Party<J> | undefined;
    for (const party of this.#backlogged) if (party.estimate < under && (best === undefined || party.used < best.used)) best = party;
    if (best === undefined) return undefined;
    const item = best.waiting.shift() as J;
    if (best.waiting.length === 0) this.#backlogged.delete(best);
    this.#size -= 1;
    this.#now = Math.max(this.#now, best.used);
    item.charged = best.estimate;
    best.used += best.estimate;
    best.running += 1;
    return item;
  }

  /** What the next call of `party` is expected to cost (ms). */
  estimateOf(party: string): number {
    return this.#parties.get(party)?.estimate ?? this.#estimates.get(party) ?? this.#initialEstimateMs;
  }

  /** A taken item ended after `engineMs` of engine time: its party is charged the difference from its estimate. */
  finish(item: J, engineMs: number): void {
    const party = this.#parties.get(item.party);
    if (party !== undefined) this.#settle(party, item, engineMs, true);
  }

  /** Removes and returns the waiting items queued before `before` (oldest first within each party). */
  expire(before: number): J[] {
    const expired: J[] = [];
    for (const party of [...this.#backlogged]) {
      while (party.waiting.length > 0 && (party.waiting[0] as J).queuedAt < before) expired.push(party.waiting.shift() as J);
      if (party.waiting.length === 0) {
        this.#backlogged.delete(party);
        this.#forgetIfIdle(party);
      }
    }
    this.#size -= expired.length;
    return expired;
  }

  #party(name: string): Party<J> {
    let party = this.#parties.get(name);
    if (party === undefined) {
      party = { name, waiting: [], used: this.#now, estimate: this.#estimates.get(name) ?? this.#initialEstimateMs, running: 0 };
      this.#parties.set(name, party);
    }
    return party;
  }

  #settle(party: Party<J>, item: J, engineMs: number, learn: boolean): void {
    if (item.charged === undefined) return;
    party.used += engineMs - item.charged;
    party.running -= 1;
    item.charged = undefined;
    if (learn) party.estimate += estimateWeight * (engineMs - party.estimate);
    this.#forgetIfIdle(party);
  }

  /** A party with nothing waiting or running is forgotten but for its estimate: the map holds only parties with work. */
  #forgetIfIdle(party: Party<J>): void {
    if (party.waiting.length > 0 || party.running > 0 || this.#parties.get(party.name) !== party) return;
    this.#parties.delete(party.name);
    this.#estimates.set(party.name, party.estimate);
  }
}
