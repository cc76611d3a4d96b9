// The gateway's RequestAuthorizer: root key, revocation state and caches in the main thread, the
// engine in a pool of workers. Per request: token present -> size -> cached verdict -> revocation
// -> cached decision -> worker (signature, revocation again, Datalog) under a hard deadline.
import { DecisionCaches, defaultCacheSettings, type CacheSettings, type TokenEntry } from './policy/decisionCaches.ts';
import type { AuthzObserver, DecisionPath } from './authzObserver.ts';
import { engineLimits } from './policy/evaluateToken.ts';
import { parsePublicKey, readRootKey } from './policy/rootKey.ts';
import { noRevocations, watchRevocationList, type ReloadResult, type RevocationState } from './policy/revocationState.ts';
import { createSessionTokens } from './sessionTokens.ts';
import type { Decision, EngineBudget, RequestAuthorizer, RequestFacts, RoutePolicy, SessionTokens } from './types.ts';
import { createEnginePool, type EnginePool, type PoolStats } from './engine/enginePool.ts';
import { readTokenEnvelope } from '../token/tokenEnvelope.ts';
import { revokedDecision, type Denial } from './policy/revokedDecision.ts';

export type { ReloadResult } from './policy/revocationState.ts';
export type { PoolStats } from './engine/enginePool.ts';

/** Longest token accepted, in characters of base64url; a real token is well under 2 KiB. */
export const maxTokenLength = 16 * 1024;
/** A decision and the path that produced it (for metrics). */
type Outcome = { decision: Decision; path: DecisionPath };

/** Hard deadline of one authorization when the route sets none: 100 ms, or twice maxTimeMicros if longer. */
export function deadlineOf(limits: RoutePolicy['limits']): number {
  return limits.deadlineMs ?? Math.max(100, Math.ceil((2 * limits.maxTimeMicros) / 1000));
}
/** A token family (same authority block) that ran into the hard deadline is refused this long. */
const quarantineMs = 10_000;

export interface RequestAuthorizerOptions {
  /** File holding `ed25519/<hex>`. */
  rootKeyFile: string;
  /** One revoked id per line; when set but unreadable, every request is denied (503). */
  revocationListFile?: string;
  /** Third-party block keys by name, `ed25519/<hex>`: route policies use them as `trusting {name}`. */
  externalKeys?: Record<string, string>;
  /** Told about every revocation list reload (watcher or reloadRevocations), for the audit log. */
  onRevocationReload?: (result: ReloadResult) => void;
  workers?: { count?: number; recycleAfterMB?: number; recycleAfterAuthorizations?: number; queuePerIdentity?: number };
  /** Engine time per client certificate (limits.engineMsPerSecond): charged per call, a spent one refuses (429). */
  engineBudget?: EngineBudget;
  cache?: Partial<CacheSettings>;
  observer?: AuthzObserver;
}

export interface ReloadableRequestAuthorizer extends RequestAuthorizer {
  /** Re-reads the revocation list (SIGHUP). */
  reloadRevocations(): Promise<ReloadResult>;
  /** The engine workers: memory, authorizations, replacements. */
  stats(): PoolStats;
  /** Whether any of these ids is on the revocation list as last loaded (false while it is unreadable). */
  isRevoked(ids: readonly string[]): boolean;
  /** Sign-in's token work, run by the same workers. */
  sessions: SessionTokens;
}


/** The authority block's revocation id: verified when the token is known, else read from the envelope. */
function familyOf(token: string, entry: TokenEntry | undefined): string | undefined {
  if (entry?.valid) return entry.revocationIds[0];
  const envelope = readTokenEnvelope(token);
  return envelope.ok ? envelope.value.revocationIds[0] : undefined;
}

/** Attaches the token's block descriptions (kept once per token in the cache) to a decision about it. */
function withBlocks<D extends Decision>(decision: D, entry: TokenEntry | undefined): D {
  return entry?.valid && entry.blocks !== undefined && decision.blocks === undefined ? { ...decision, blocks: entry.blocks } : decision;
}

function runLimit(route: RoutePolicy, detail: string, entry: TokenEntry | undefined): Denial {
  const denial: Denial = { allow: false, status: 403, clientReason: 'run limit exceeded', reason: `route ${route.name}: run limit exceeded: ${detail}` };
  if (!entry?.valid) return denial;
  return withBlocks({ ...denial, revocationIds: entry.revocationIds, ...(entry.user !== undefined && { user: entry.user }) }, entry);
}

/**
 * Rejects with an Error naming the file when the root key (or an external key) is unusable, or when
 * a worker's start-up self-test (which also warms biscuit-wasm up) does not allow.
 */
export async function createRequestAuthorizer(options: RequestAuthorizerOptions): Promise<ReloadableRequestAuthorizer> {
  const root = await readRootKey(options.rootKeyFile);
  if (!root.ok) throw new Error(root.reason);
  const rootKey = root.key.toString();
  root.key.free();
  const externalKeys: Record<string, string> = {};
  for (const [name, text] of Object.entries(options.externalKeys ?? {})) {
    const parsed = parsePublicKey(text, `external key ${name}`);
    if (!parsed.ok) throw new Error(parsed.reason);
    externalKeys[name] = parsed.key.toString();
    parsed.key.free();
  }

  const observer = options.observer ?? {};
  const caches = new DecisionCaches({ ...defaultCacheSettings, ...options.cache });
  let pool: EnginePool | undefined;
  const revokedIds = (state: RevocationState): string[] => {
    const status = state.status();
    return status.kind === 'loaded' ? [...status.ids] : [];
  };
  const onReload = (result: ReloadResult): void => {
    caches.clear();
    pool?.setRevoked(revokedIds(revocations));
    options.onRevocationReload?.(result);
  };
  const revocations: RevocationState =
    options.revocationListFile === undefined ? noRevocations() : watchRevocationList(options.revocationListFile, { onReload });

  try {
    const workers = options.workers ?? {};
    pool = await createEnginePool({
      init: { rootKey, externalKeys, parsedTokens: Math.min(512, options.cache?.tokens ?? defaultCacheSettings.tokens), revoked: revokedIds(revocations) },
      count: workers.count ?? 2,
      recycleAfterBytes: (workers.recycleAfterMB ?? 24) * 1024 * 1024,
      ...(workers.recycleAfterAuthorizations !== undefined && { recycleAfterAuthorizations: workers.recycleAfterAuthorizations }),
      ...(workers.queuePerIdentity !== undefined && { queuePerParty: workers.queuePerIdentity }),
      ...(options.engineBudget && { budget: options.engineBudget }),
      observer,
    });
  } catch (error) {
    revocations.close();
    throw new Error(`authorization engine did not start: ${error instanceof Error ? error.message : String(error)}`);
  }
  const engine: EnginePool = pool;
  engine.setRevoked(revokedIds(revocations));

  /** Token families (authority revocation id) that hit the hard deadline, until when. */
  const quarantined = new Map<string, number>();
  const inflight = new Map<string, Promise<Decision>>();

  async function decideInWorker(token: string, entry: TokenEntry | undefined, route: RoutePolicy, facts: RequestFacts): Promise<{ decision: Decision; entry: TokenEntry | undefined }> {
    const deadlineMs = deadlineOf(route.limits);
    // Queued and charged per client certificate: one certificate's expensive tokens wait behind each other.
    const outcome = await engine.run({ party: facts.client.fingerprint, token, route, facts, wantInfo: entry === undefined, deadlineMs });
    if (outcome.kind === 'busy') {
      return { decision: { allow: false, status: 429, clientReason: 'too many requests', reason: `route ${route.name}: ${outcome.reason}` }, entry };
    }
    if (outcome.kind === 'unavailable') {
      return { decision: { allow: false, status: 503, clientReason: 'authorization unavailable', reason: `route ${route.name}: ${outcome.reason}` }, entry };
    }
    if (outcome.kind === 'deadline') {
      const known = outcome.info ? caches.rememberToken(token, outcome.info) : entry;
      const family = known?.valid ? known.revocationIds[0] : undefined;
      if (family !== undefined) {
        if (quarantined.size >= 1000) quarantined.clear();
        quarantined.set(family, Date.now() + quarantineMs);
      }
      const cpu = outcome.cpuMs !== undefined ? `, computing for ${Math.round(outcome.cpuMs)} ms of the last check` : '';
      const detail = `no decision within the hard deadline of ${deadlineMs} ms (ran ${Math.round(outcome.elapsedMs)} ms${cpu}; the worker was stopped and replaced; ${engineLimits})`;
      return { decision: runLimit(route, detail, known), entry: known };
    }
    let known = entry;
    if (outcome.info) known = caches.rememberToken(token, outcome.info);
    const decision = withBlocks(known?.valid && outcome.decision.revocationIds?.length === 0 ? { ...outcome.decision, revocationIds: known.revocationIds } : outcome.decision, known);
    if (known?.valid && !decision.allow && decision.user === undefined && known.user !== undefined) return { decision: { ...decision, user: known.user }, entry: known };
    if (known?.valid && decision.user !== undefined) known.user = decision.user;
    return { decision, entry: known };
  }

  /**
   * Decides from the caches when it can, synchronously (most requests: a cached decision), and
   * returns a promise only when a worker (or a decision already being made) is waited for.
   */
  function authorizeNow(token: string | undefined, route: RoutePolicy, facts: RequestFacts): Outcome | Promise<Outcome> {
    const status = revocations.status();
    if (status.kind === 'unavailable') {
      return { decision: { allow: false, status: 503, clientReason: 'authorization unavailable', reason: status.reason }, path: 'early' };
    }
    if (token === undefined || token.trim() === '') {
      return { decision: { allow: false, status: 401, clientReason: 'missing bearer token', reason: 'no Authorization: Bearer token' }, path: 'early' };
    }
    if (token.length > maxTokenLength) {
      return { decision: { allow: false, status: 401, clientReason: 'invalid token', reason: `token is ${token.length} characters, more than the ${maxTokenLength} allowed` }, path: 'early' };
    }
    const text = token.trim();
    const entry = caches.token(text);
    observer.cacheLookup?.('token', entry !== undefined);
    if (entry && !entry.valid) {
      return { decision: { allow: false, status: 401, clientReason: 'invalid token', reason: entry.reason }, path: 'token-cached' };
    }
    if (entry) {
      const revoked = status.kind === 'loaded' ? revokedDecision(entry.revocationIds, status.ids, entry.user) : undefined;
      if (revoked) return { decision: withBlocks(revoked, entry), path: 'token-cached' };
    }
    if (quarantined.size > 0) {
      // A new token of a quarantined family is known by its authority block's id, read without
      // verifying: refusing a forged copy is harmless, and a real family member carries the real id.
      const family = familyOf(text, entry);
      const until = quarantined.get(family ?? '');
      if (until !== undefined && until > Date.now()) {
        const detail = `a token of this family (authority block ${family}) ran past the hard deadline less than ${quarantineMs / 1000} s ago`;
        return { decision: runLimit(route, detail, entry), path: entry ? 'token-cached' : 'early' };
      }
    }

    const key = caches.decisionsEnabled ? caches.decisionKey(text, entry, route, facts) : undefined;
    if (key !== undefined) {
      const cached = caches.decision(key);
      observer.cacheLookup?.('decision', cached !== undefined);
      if (cached) return { decision: cached, path: 'decision-cached' };
      const running = inflight.get(key);
      if (running) return running.then((decision) => ({ decision, path: 'decision-cached' }));
    }

    const work = decideInWorker(text, entry, route, facts).then(({ decision, entry: known }) => {
      // A token first seen now is checked against the list here too (the worker had its own copy).
      const current = revocations.status();
      if (known?.valid && current.kind === 'loaded' && decision.allow) {
        const revoked = revokedDecision(known.revocationIds, current.ids, decision.user);
        if (revoked) return withBlocks(revoked, known);
      }
      if (key !== undefined && known?.valid) caches.rememberDecision(entry ? key : caches.decisionKey(text, known, route, facts), decision, known);
      return decision;
    });
    if (key !== undefined) {
      inflight.set(key, work);
      void work.finally(() => inflight.delete(key));
    }
    const path: DecisionPath = entry ? 'token-cached' : 'cold';
    return work.then((decision) => ({ decision, path }));
  }

  return {
    authorize(token, route, facts) {
      const started = performance.now();
      const unexpected = (error: unknown): Outcome => {
        const reason = `unexpected authorization error: ${error instanceof Error ? error.message : String(error)}`;
        return { decision: { allow: false, status: 503, clientReason: 'authorization unavailable', reason }, path: 'cold' };
      };
      const decided = (result: Outcome): Decision => {
        observer.decided?.(result.decision, result.path, (performance.now() - started) / 1000);
        return result.decision;
      };
      let outcome: Outcome | Promise<Outcome>;
      try {
        outcome = authorizeNow(token, route, facts);
      } catch (error) {
        outcome = unexpected(error);
      }
      // A decision from the caches resolves at once: no chain of promises for the common case.
      return outcome instanceof Promise ? outcome.catch(unexpected).then(decided) : Promise.resolve(decided(outcome));
    },
    reloadRevocations: () => revocations.reload(),
    stats: () => engine.stats(),
    sessions: createSessionTokens(() => engine),
    isRevoked(ids) {
      const status = revocations.status();
      return status.kind === 'loaded' && ids.some((id) => status.ids.has(id));
    },
    async close() {
      revocations.close();
      await engine.close();
      caches.clear();
    },
  };
}
