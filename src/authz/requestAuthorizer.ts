// The in-process RequestAuthorizer: root key and revocation state around the pure engine
// (evaluateToken). Order per request: token present -> size -> signature -> revocation -> Datalog.
import { Biscuit, type PublicKey } from '@biscuit-auth/biscuit-wasm';
import { biscuitErrorText } from './biscuitErrors.ts';
import { evaluateToken, revocationIdsOf } from './evaluateToken.ts';
import { parsePublicKey, readRootKey } from './rootKey.ts';
import { noRevocations, watchRevocationList, type ReloadResult, type RevocationState } from './revocationState.ts';
import type { Decision, RequestAuthorizer, RequestFacts, RoutePolicy } from './types.ts';
import { warmUpEngine } from './warmUp.ts';

export type { ReloadResult } from './revocationState.ts';

/** Longest token accepted, in characters of base64url; a real token is well under 2 KiB. */
export const maxTokenLength = 16 * 1024;

export interface RequestAuthorizerOptions {
  /** File holding `ed25519/<hex>`. */
  rootKeyFile: string;
  /** One revoked id per line; when set but unreadable, every request is denied (503). */
  revocationListFile?: string;
  /** Third-party block keys by name, `ed25519/<hex>`; validated now, used by later policies. */
  externalKeys?: Record<string, string>;
  /** Told about every revocation list reload (watcher or reloadRevocations), for the audit log. */
  onRevocationReload?: (result: ReloadResult) => void;
}

export interface ReloadableRequestAuthorizer extends RequestAuthorizer {
  /** Re-reads the revocation list (SIGHUP). */
  reloadRevocations(): Promise<ReloadResult>;
}

type Denial = Extract<Decision, { allow: false }>;

/**
 * The user a token claims, read from the authority block's source without running its Datalog:
 * used only to attribute a revoked token in the audit log.
 */
function claimedUser(token: Biscuit): string | undefined {
  const match = /^user\("((?:[^"\\]|\\.)*)"\);$/m.exec(token.getBlockSource(0));
  return match?.[1];
}

/**
 * Rejects with an Error naming the file when the root key (or an external key) is unusable, or
 * when the engine's start-up self-test (which also warms biscuit-wasm up) does not allow.
 */
export async function createRequestAuthorizer(options: RequestAuthorizerOptions): Promise<ReloadableRequestAuthorizer> {
  const root = await readRootKey(options.rootKeyFile);
  if (!root.ok) throw new Error(root.reason);
  const rootKey: PublicKey = root.key;
  for (const [name, text] of Object.entries(options.externalKeys ?? {})) {
    const parsed = parsePublicKey(text, `external key ${name}`);
    if (!parsed.ok) throw new Error(parsed.reason);
    parsed.key.free();
  }

  const selfTest = warmUpEngine();
  if (!selfTest.allow) throw new Error(`authorization engine self-test failed: ${selfTest.reason}`);

  const revocations: RevocationState =
    options.revocationListFile === undefined
      ? noRevocations()
      : watchRevocationList(options.revocationListFile, options.onRevocationReload ? { onReload: options.onRevocationReload } : {});

  function authorizeNow(token: string | undefined, route: RoutePolicy, facts: RequestFacts): Decision {
    const status = revocations.status();
    if (status.kind === 'unavailable') {
      return { allow: false, status: 503, clientReason: 'authorization unavailable', reason: status.reason };
    }
    if (token === undefined || token.trim() === '') {
      return { allow: false, status: 401, clientReason: 'missing bearer token', reason: 'no Authorization: Bearer token' };
    }
    if (token.length > maxTokenLength) {
      return { allow: false, status: 401, clientReason: 'invalid token', reason: `token is ${token.length} characters, more than the ${maxTokenLength} allowed` };
    }

    let parsed: Biscuit;
    try {
      parsed = Biscuit.fromBase64(token.trim(), rootKey);
    } catch (error) {
      return { allow: false, status: 401, clientReason: 'invalid token', reason: `token does not parse or verify: ${biscuitErrorText(error)}` };
    }
    try {
      const revocationIds = revocationIdsOf(parsed);
      if (status.kind === 'loaded') {
        const block = revocationIds.findIndex((id) => status.ids.has(id));
        const id = revocationIds[block];
        if (id !== undefined) {
          const user = claimedUser(parsed);
          const denial: Denial = { allow: false, status: 403, clientReason: 'token revoked', reason: `revocation id ${id} (block ${block}) is revoked`, revocationIds };
          return user === undefined ? denial : { ...denial, user };
        }
      }
      return evaluateToken(parsed, route, facts);
    } finally {
      parsed.free();
    }
  }

  return {
    async authorize(token, route, facts) {
      try {
        return authorizeNow(token, route, facts);
      } catch (error) {
        return { allow: false, status: 503, clientReason: 'authorization unavailable', reason: `unexpected authorization error: ${biscuitErrorText(error)}` };
      }
    },
    reloadRevocations: () => revocations.reload(),
    async close() {
      // The root key stays allocated: requests that picked up this authorizer before a reload may
      // still be running, and the wasm objects are reclaimed by the garbage collector.
      revocations.close();
    },
  };
}
