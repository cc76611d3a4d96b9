// Messages between the authorizer (main thread) and the engine workers that own biscuit-wasm.
// Plain data only: everything here crosses a worker boundary by structured clone.
import type { Decision, RequestFacts, RoutePolicy, TokenBlock } from './types.ts';

/** What a worker is started with (workerData). */
export interface EngineWorkerInit {
  /** Root public key, `ed25519/<hex>`, already validated by the main thread. */
  rootKey: string;
  /** Third-party block signers by name, `ed25519/<hex>`, already validated. */
  externalKeys: Record<string, string>;
  /** Parsed tokens the worker keeps (LRU); 0 parses every token on every call. */
  parsedTokens: number;
  /** Revoked ids (lowercase hex) at start; later changes arrive as `revocations` messages. */
  revoked: string[];
  /** biscuit-wasm's compiled WebAssembly.Module, shared by every worker (see sharedWasm.ts). */
  wasmModule?: object;
  /** Where results go (a MessagePort the pool can drain synchronously); the parent port when absent. */
  results?: unknown;
}

/** What the main thread learns about a token the first time a worker verifies it. */
export type TokenInfo =
  | {
      valid: true;
      revocationIds: string[];
      /** Earliest expiry (ms since epoch) stated by a standard time check; only ever used to shorten cache life. */
      expiresAt?: number;
      /** Multi-block tokens: role, signer and bound certificate of each block (the main thread caches it with the token). */
      blocks?: TokenBlock[];
    }
  | { valid: false; reason: string };

export type ToWorker =
  | { type: 'authorize'; id: number; token: string; route: RoutePolicy; facts: RequestFacts; wantInfo: boolean }
  | { type: 'revocations'; ids: string[] };

export type FromWorker =
  | { type: 'ready'; wasmBytes: number }
  /** Sent for a newly verified token before its Datalog runs, so a call stopped by the deadline is still attributed. */
  | { type: 'info'; id: number; info: TokenInfo }
  | { type: 'failed'; reason: string }
  | {
      type: 'result';
      id: number;
      decision: Decision;
      info?: TokenInfo;
      /** WebAssembly memory of this worker after the call, bytes (-1 when it cannot be read). */
      wasmBytes: number;
      /** Authorizations this worker has run. */
      count: number;
      /** The engine hit a WebAssembly trap: its state cannot be trusted any more. */
      poisoned?: boolean;
    };

// What the pool is asked, and what it answers (main thread only; shared with the worker handles).
export type ReplaceReason = 'memory' | 'count' | 'deadline' | 'crash' | 'fault';

export interface EngineCall {
  token: string;
  route: RoutePolicy;
  facts: RequestFacts;
  wantInfo: boolean;
  /** Hard deadline for the call once a worker starts it, in ms. */
  deadlineMs: number;
}

export type EngineOutcome =
  | { kind: 'done'; decision: Decision; info?: TokenInfo }
  | { kind: 'deadline'; elapsedMs: number; cpuMs?: number; info?: TokenInfo }
  | { kind: 'unavailable'; reason: string };
