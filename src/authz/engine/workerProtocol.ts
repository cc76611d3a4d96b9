// Messages between the authorizer (main thread) and the engine workers that own biscuit-wasm.
// Plain data only: everything here crosses a worker boundary by structured clone.
import type { TokenCheck } from '../../session/sessionToken.ts';
import type { PeerIdentity } from '../../tls/peerIdentity.ts';
import type { Decision, RequestFacts, RoutePolicy, TokenInfo } from '../types.ts';

export type { TokenInfo } from '../types.ts';

/** What a worker is started with (workerData). */
export interface EngineWorkerInit {
  /** Root public key, `ed25519/<hex>`, already validated by the main thread. */
  rootKey: string;
  /** Trusted issuers by name: key id and `ed25519/<hex>`, already validated (tokens they sign carry the key id). */
  issuers: Record<string, { keyId: number; publicKey: string }>;
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

/** Browser sign-in's token work, done in a worker so the main thread's WebAssembly memory stays flat. */
export type SessionWork =
  /** Verify a token for this certificate now (signature, revocation, expiry, certificate-shaped checks). */
  | { op: 'verify'; token: string; identity: PeerIdentity; sourceIp: string; now: number }
  /** Append the gateway's session block (certificate, end, protocols, optionally host) to a token. */
  | { op: 'mint'; token: string; fingerprint: string; expiresAt: number; host?: string };

/** The session token, or why it could not be made (the shape of mintSessionToken's answer); `busy`: the client's own engine budget or queue refused it. */
export type MintedSession = { ok: true; token: string } | { ok: false; reason: string; busy?: boolean };

export type SessionResult = { op: 'verify'; check: TokenCheck } | { op: 'mint'; minted: MintedSession };

export type ToWorker =
  | { type: 'authorize'; id: number; token: string; route: RoutePolicy; facts: RequestFacts; wantInfo: boolean }
  | { type: 'session'; id: number; work: SessionWork }
  | { type: 'revocations'; ids: string[] };

/** What every finished call reports besides its answer: the worker's state, and what the call cost. */
interface CallEnd {
  id: number;
  /** WebAssembly memory of this worker after the call, bytes (-1 when it cannot be read). */
  wasmBytes: number;
  /** Calls this worker has run. */
  count: number;
  /** Time the call spent in the engine, ms: charged to the caller's identity. */
  engineMs: number;
  /** The engine hit a WebAssembly trap: its state cannot be trusted any more. */
  poisoned?: boolean;
}

export type FromWorker =
  | { type: 'ready'; wasmBytes: number }
  /** Sent for a newly verified token before its Datalog runs, so a call stopped by the deadline is still attributed. */
  | { type: 'info'; id: number; info: TokenInfo }
  | { type: 'failed'; reason: string }
  | (CallEnd & { type: 'result'; decision: Decision; info?: TokenInfo })
  | (CallEnd & { type: 'session-result'; result: SessionResult });

// What the pool is asked, and what it answers (main thread only; shared with the worker handles).
export type ReplaceReason = 'memory' | 'count' | 'deadline' | 'crash' | 'fault' | 'idle';

export interface EngineCall {
  /** Whose call this is (the client certificate's fingerprint): the pool queues and charges per party. */
  party: string;
  token: string;
  route: RoutePolicy;
  facts: RequestFacts;
  wantInfo: boolean;
  /** Hard deadline for the call once a worker starts it, in ms. */
  deadlineMs: number;
}

export interface SessionCall {
  party: string;
  work: SessionWork;
  deadlineMs: number;
}

/** How a call ended without an answer: past its deadline (the worker was stopped), no worker, or its party's queue was full. */
export type EngineFailure =
  | { kind: 'deadline'; elapsedMs: number; cpuMs?: number; info?: TokenInfo }
  | { kind: 'unavailable'; reason: string }
  | { kind: 'busy'; reason: string };

export type EngineOutcome = { kind: 'done'; decision: Decision; info?: TokenInfo } | EngineFailure;
export type SessionOutcome = { kind: 'done'; result: SessionResult } | EngineFailure;
