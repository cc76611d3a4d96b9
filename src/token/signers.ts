// The keys a token may be signed by: the administrator's root key (tokens without a root key id) and
// each trusted issuer's key (tokens carrying that issuer's key id). Verifying also names the signer.
import { Biscuit, PublicKey } from '@biscuit-auth/biscuit-wasm';
import { readTokenEnvelope } from './tokenEnvelope.ts';
import { biscuitErrorText } from './biscuitErrors.ts';
import { parsePublicKey } from './rootKey.ts';

/** The signer name of tokens signed by the root key; no issuer may be named so. */
export const ROOT_SIGNER = 'root';

/** Plain data, so it crosses to the engine workers: public keys as `ed25519/<hex>`. */
export interface SignerKeys {
  root: string;
  /** Issuer name -> its key id (the token's root key id) and public key. */
  issuers: Record<string, { keyId: number; publicKey: string }>;
}

export type SignedToken = { ok: true; token: Biscuit; signer: string } | { ok: false; reason: string; error?: unknown };

export interface TrustedSigners {
  /** Verifies every block's signature against the key the token names; never throws. */
  verify(text: string): SignedToken;
  free(): void;
}

/**
 * The authority block is the signer's own word, and `signer(...)` is the gateway's fact naming it: a
 * token that states it itself (an issuer claiming to be the root) is refused, whoever signed it.
 */
const statesSigner = /^signer\(/m;

/** Parses every key once; fails naming the unusable key or a key id used twice. */
export function trustedSigners(keys: SignerKeys): { ok: true; signers: TrustedSigners } | { ok: false; reason: string } {
  const root = parsePublicKey(keys.root, 'root key');
  if (!root.ok) return root;
  const rootKey = root.key;
  const byId = new Map<number, { name: string; key: PublicKey }>();
  const release = () => {
    rootKey.free();
    for (const { key } of byId.values()) key.free();
  };
  for (const [name, issuer] of Object.entries(keys.issuers)) {
    const parsed = parsePublicKey(issuer.publicKey, `issuer ${name} key`);
    const clash = byId.get(issuer.keyId);
    if (!parsed.ok || clash !== undefined || name === ROOT_SIGNER) {
      release();
      if (parsed.ok) parsed.key.free();
      if (!parsed.ok) return parsed;
      return { ok: false, reason: clash ? `issuers ${clash.name} and ${name} share key id ${issuer.keyId}` : `an issuer cannot be named "${ROOT_SIGNER}"` };
    }
    byId.set(issuer.keyId, { name, key: parsed.key });
  }

  function verify(text: string): SignedToken {
    // The key id is read from the envelope before any signature check: it only picks the key, and a
    // token claiming another signer's id does not verify against that signer's key.
    // An envelope that does not read is left to biscuit, against the root key, for the library's own words.
    const envelope = readTokenEnvelope(text);
    const keyId = envelope.ok ? envelope.value.rootKeyId : undefined;
    const chosen = keyId === undefined ? { name: ROOT_SIGNER, key: rootKey } : byId.get(keyId);
    if (chosen === undefined) return { ok: false, reason: `the token is signed by an unknown signer (root key id ${keyId ?? 'none'}): no trusted issuer has this key id` };
    let token: Biscuit;
    try {
      token = Biscuit.fromBase64(text, chosen.key);
    } catch (error) {
      return { ok: false, reason: `the token does not verify against the ${chosen.name === ROOT_SIGNER ? 'root key' : `key of issuer ${chosen.name}`}: ${biscuitErrorText(error)}`, error };
    }
    let authority: string;
    try {
      authority = token.getBlockSource(0);
    } catch (error) {
      token.free();
      return { ok: false, reason: `the token's authority block cannot be read: ${biscuitErrorText(error)}`, error };
    }
    if (statesSigner.test(authority)) {
      token.free();
      return { ok: false, reason: `the token's authority block states signer(...), which only the gateway states (signed by ${chosen.name})` };
    }
    return { ok: true, token, signer: chosen.name };
  }
  return { ok: true, signers: { verify, free: release } };
}
