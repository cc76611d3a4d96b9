// Per-request counting for prom-client counters: plain numbers keyed by the caller's own label key
// on the hot path, handed to the Counter when it is collected (each scrape), so the totals read the same.
import type { Counter } from 'prom-client';

interface Tallied<L extends string> {
  labels: Partial<Record<L, string>>;
  pending: number;
}

/**
 * prom-client validates and hashes the label object on every `inc` (a visible share of a request's
 * cost at thousands of requests per second); here a request pays one Map lookup by a key its caller
 * builds from the label values. Entries live as long as the counter's own series (same cardinality).
 */
export class CounterTally<L extends string> {
  readonly #entries = new Map<string, Tallied<L>>();
  #counter: Counter<L> | undefined;

  /** The counter to hand the counts to; its `collect` must call `flush()`. */
  bind(counter: Counter<L>): void {
    this.#counter = counter;
  }

  /** `key` must identify the label values exactly (e.g. joined with a separator no value contains). */
  add(key: string, labels: () => Partial<Record<L, string>>, amount = 1): void {
    const entry = this.#entries.get(key);
    if (entry) entry.pending += amount;
    else this.#entries.set(key, { labels: labels(), pending: amount });
  }

  flush(): void {
    const counter = this.#counter;
    if (!counter) return;
    for (const entry of this.#entries.values()) {
      if (entry.pending === 0) continue;
      counter.inc(entry.labels, entry.pending);
      entry.pending = 0;
    }
  }
}
