// The gateway's RequestAuthorizer: root key, revocation state and caches in the main thread, the
// engine in a pool of workers. Per request (decisionPath.ts): token present -> size -> cached verdict ->
// revocation -> cached decision -> worker (signature, revocation again, Datalog) under a hard deadline.
import type { AuthzObserver } from './authzObserver.ts';
import { authorize, type DecisionContext } from './decisionPath.ts';
import { createEnginePool, type EnginePool, type PoolStats } from './engine/enginePool.ts';
import { DecisionCaches, defaultCacheSettings, type CacheSettings } from './policy/decisionCaches.ts';
import { parsePublicKey, readRootKey } from '../token/rootKey.ts';
import { trustedSigners, type SignerKeys } from '../token/signers.ts';
import { noRevocations, watchRevocationList, type ReloadResult, type RevocationState } from './policy/revocationState.ts';
import { withRevocationFeed, type RevocationFeed } from './policy/revocationFeed.ts';
import { createSessionTokens } from './sessionTokens.ts';
import type { EngineBudget, RequestAuthorizer, SessionTokens } from './types.ts';

export type { ReloadResult } from './policy/revocationState.ts';
export type { PoolStats } from './engine/enginePool.ts';
export { deadlineOf } from './decisionPath.ts';

export interface RequestAuthorizerOptions {
  /** File holding `ed25519/<hex>`. */
  rootKeyFile: string;
  /** One revoked id per line; when set but unreadable, every request is denied (503). */
  revocationListFile?: string;
  /** Revoked ids from elsewhere too (the cluster's database): refused like the file's; unavailable fails closed like the file. */
  revocationFeed?: RevocationFeed;
  /** Third-party block keys by name, `ed25519/<hex>`: route policies use them as `trusting {name}`. */
  externalKeys?: Record<string, string>;
  /** Trusted issuers by name: tokens carrying `keyId` as their root key id must be signed by `publicKey` (`ed25519/<hex>`). */
  issuers?: SignerKeys['issuers'];
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

/** The root key and the external keys as the workers take them; throws naming the unusable one. */
async function readKeys(options: RequestAuthorizerOptions): Promise<{ rootKey: string; externalKeys: Record<string, string>; issuers: SignerKeys['issuers'] }> {
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
  const issuers = options.issuers ?? {};
  const signers = trustedSigners({ root: rootKey, issuers });
  if (!signers.ok) throw new Error(signers.reason);
  signers.signers.free();
  return { rootKey, externalKeys, issuers };
}

/**
 * Rejects with an Error naming the file when the root key (or an external key) is unusable, or when
 * a worker's start-up self-test (which also warms biscuit-wasm up) does not allow.
 */
export async function createRequestAuthorizer(options: RequestAuthorizerOptions): Promise<ReloadableRequestAuthorizer> {
  const { rootKey, externalKeys, issuers } = await readKeys(options);

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
  const fromFile: RevocationState = options.revocationListFile === undefined ? noRevocations() : watchRevocationList(options.revocationListFile, { onReload });
  const revocations: RevocationState = options.revocationFeed ? withRevocationFeed(fromFile, options.revocationFeed) : fromFile;
  const unsubscribeFeed = options.revocationFeed?.subscribe(onReload);

  try {
    const workers = options.workers ?? {};
    pool = await createEnginePool({
      init: { rootKey, externalKeys, issuers, parsedTokens: Math.min(512, options.cache?.tokens ?? defaultCacheSettings.tokens), revoked: revokedIds(revocations) },
      count: workers.count ?? 2,
      recycleAfterBytes: (workers.recycleAfterMB ?? 24) * 1024 * 1024,
      ...(workers.recycleAfterAuthorizations !== undefined && { recycleAfterAuthorizations: workers.recycleAfterAuthorizations }),
      ...(workers.queuePerIdentity !== undefined && { queuePerParty: workers.queuePerIdentity }),
      ...(options.engineBudget && { budget: options.engineBudget }),
      observer,
    });
  } catch (error) {
    unsubscribeFeed?.();
    revocations.close();
    throw new Error(`authorization engine did not start: ${error instanceof Error ? error.message : String(error)}`);
  }
  const engine: EnginePool = pool;
  engine.setRevoked(revokedIds(revocations));

  const context: DecisionContext = { caches, revocations, engine, observer, quarantined: new Map(), inflight: new Map() };

  return {
    authorize: (token, route, facts) => authorize(context, token, route, facts),
    reloadRevocations: () => revocations.reload(),
    stats: () => engine.stats(),
    sessions: createSessionTokens(() => engine),
    isRevoked(ids) {
      const status = revocations.status();
      return status.kind === 'loaded' && ids.some((id) => status.ids.has(id));
    },
    async close() {
      unsubscribeFeed?.();
      revocations.close();
      await engine.close();
      caches.clear();
    },
  };
}
