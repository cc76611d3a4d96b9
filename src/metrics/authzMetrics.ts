// The authorization engine's metrics: decisions by result and path, cache hits, decision latency,
// worker replacements and the WebAssembly memory of the workers and of the main thread.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { AuthzObserver } from '../authz/authzObserver.ts';
import type { ReplaceReason } from '../authz/engine/workerProtocol.ts';
import { wasmMemoryReader } from '../authz/engine/wasmMemory.ts';
import { CounterTally } from './counterTally.ts';

export function authzMetrics(prefix: string, registers: Registry[]): AuthzObserver {
  const wasmMemory = new Gauge({ name: `${prefix}authz_worker_wasm_memory_bytes`, help: 'WebAssembly memory of each authorization worker (biscuit-wasm never returns it)', labelNames: ['worker'], registers });
  // The main thread's biscuit-wasm memory never shrinks either: it must stay flat (token work runs in the workers).
  let mainWasmBytes = (): number => -1;
  void wasmMemoryReader().then((read) => (mainWasmBytes = read));
  new Gauge({ name: `${prefix}main_thread_wasm_memory_bytes`, help: 'WebAssembly memory of biscuit-wasm in the main thread (-1 when unreadable); flat while token work runs in the workers', registers, collect() { this.set(mainWasmBytes()); } });
  const replacements = new Counter({ name: `${prefix}authz_worker_replacements_total`, help: 'Authorization workers replaced, by reason (memory, count, deadline, crash, fault)', labelNames: ['reason'], registers });
  // Counters touched on every request count into a tally first (counterTally.ts): read at each scrape.
  const decisions = new CounterTally<'result' | 'path'>();
  decisions.bind(new Counter({ name: `${prefix}authz_decisions_total`, help: 'Authorization decisions by result and by the path that produced them', labelNames: ['result', 'path'], registers, collect: () => decisions.flush() }));
  const cacheHits = new CounterTally<'cache'>();
  cacheHits.bind(new Counter({ name: `${prefix}authz_cache_hits_total`, help: 'Authorization cache hits (token: verified tokens; decision: recent decisions)', labelNames: ['cache'], registers, collect: () => cacheHits.flush() }));
  const cacheMisses = new CounterTally<'cache'>();
  cacheMisses.bind(new Counter({ name: `${prefix}authz_cache_misses_total`, help: 'Authorization cache misses', labelNames: ['cache'], registers, collect: () => cacheMisses.flush() }));
  const latency = new Histogram({
    name: `${prefix}authz_decision_seconds`,
    help: 'Time to decide one authorization, by path',
    labelNames: ['path'],
    buckets: [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5],
    registers,
  });
  // Series with a known, small set of labels start at 0, so rate() and alerts see them before the first event.
  for (const reason of ['memory', 'count', 'deadline', 'crash', 'fault', 'idle'] satisfies ReplaceReason[]) replacements.inc({ reason }, 0);
  return {
    workerMemory: (slot, bytes) => {
      if (bytes >= 0) wasmMemory.set({ worker: String(slot) }, bytes);
    },
    workerReplaced: (reason) => replacements.inc({ reason }),
    decided: (decision, path, seconds) => {
      const result = decision.allow ? 'allow' : decision.status === 503 ? 'unavailable' : 'deny';
      decisions.add(`${result}\u0000${path}`, () => ({ result, path }));
      latency.observe({ path }, seconds);
    },
    cacheLookup: (cache, hit) => (hit ? cacheHits : cacheMisses).add(cache, () => ({ cache })),
  };
}
