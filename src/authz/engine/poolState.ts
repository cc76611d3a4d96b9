// What the engine pool is configured with and what it keeps while it runs: its options, its worker
// slots, the per-party queue and the counters the pool's parts (poolWorkers, poolDeadlines) share.
import type { FairQueue } from './fairQueue.ts';
import type { EngineBudget } from '../types.ts';
import type { Handle, Job } from './workerHandle.ts';
import type { EngineWorkerInit, ReplaceReason } from './workerProtocol.ts';
import type { WorkerSources } from './workerSources.ts';

export interface PoolOptions {
  init: EngineWorkerInit;
  /** Worker threads (default 2). */
  count?: number;
  /** Replace a worker whose WebAssembly memory reaches this many bytes. */
  recycleAfterBytes: number;
  /** Replace a worker after this many authorizations (also the fallback when memory cannot be read). */
  recycleAfterAuthorizations?: number;
  /** Calls sent ahead to one worker; more wait in the pool's queue. */
  maxInflightPerWorker?: number;
  /** A call that finds no worker for this long is refused (503). */
  queueTimeoutMs?: number;
  /** Calls of one party that may wait; more are refused (default 64). */
  queuePerParty?: number;
  /** Each party's engine time: charged after every call that ran, and a spent budget refuses new calls. */
  budget?: EngineBudget;
  /** A refused call (queue full, budget spent) is answered this much later (ms, default 1000): see enqueue(). */
  refusalHoldMs?: number;
  observer?: PoolObserver;
}

export interface PoolObserver {
  workerMemory?(slot: number, bytes: number): void;
  workerReplaced?(reason: ReplaceReason): void;
}

/** One worker position: the worker taking new work, and its successor while that one warms up. */
export interface Slot {
  active?: Handle;
  replacement?: Handle;
  /** Consecutive failed starts, for back-off. */
  failures: number;
}

/** The running pool, shared by its parts. Only the pool's own modules read or change it. */
export interface PoolState {
  readonly options: PoolOptions;
  readonly observer: PoolObserver;
  readonly maxInflight: number;
  readonly queueTimeoutMs: number;
  /** The compiled biscuit-wasm module and the stripped worker sources every worker starts from. */
  readonly wasmModule: object | undefined;
  readonly prepared: WorkerSources | undefined;
  readonly slots: Slot[];
  /** Workers replaced by a successor, finishing what they were sent. */
  readonly retiring: Set<Handle>;
  readonly waiting: FairQueue<Job>;
  /** The revocation list sent to every worker (and to the ones started later). */
  revoked: string[];
  replacements: number;
  /** Calls in the pool: queued or sent to a worker. */
  pending: number;
  closed: boolean;
  /** Resolves close() once the last pending call has left. */
  drained?: () => void;
  /** Deadlines are watched only while calls are in flight: an idle gateway is not woken 200 times a second. */
  watchdog?: NodeJS.Timeout;
  idleTimer?: NodeJS.Timeout;
  /** Set while the pool starts: told when each first worker is ready (or failed). */
  onReady?: (handle: Handle, failure: string | undefined) => void;
}
