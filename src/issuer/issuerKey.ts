// The issuer's signing key: read from its own file (never the administrator's root key), with the
// name and key id every token it signs carries, so gateways pick the issuer's public key for them.
import type { PrivateKey } from '@biscuit-auth/biscuit-wasm';
import { biscuit } from '../token/biscuitModule.ts';
import { readPrivateKey } from '../token/keyFiles.ts';
import { fail, ok, type TokenResult } from '../token/tokenErrors.ts';

export interface IssuerKey {
  /** The signer name policies see (`signer("<name>")`). */
  name: string;
  /** Written as the root key id of every issued token. */
  keyId: number;
  privateKey: PrivateKey;
  /** `ed25519/<hex>`: what gateways list under authz.issuers.<name>.publicKey. */
  publicKey: string;
}

/** The public key (`ed25519/<hex>`) of a private key object. */
export function publicKeyOf(privateKey: PrivateKey): string {
  const pair = biscuit.KeyPair.fromPrivateKey(privateKey);
  try {
    const key = pair.getPublicKey();
    try {
      return key.toString();
    } finally {
      key.free();
    }
  } finally {
    pair.free();
  }
}

/**
 * Reads the issuer's key from `file`. `rootPublicKey` (`ed25519/<hex>`, the gateway's authz.rootKey) is
 * compared with it: an issuer holding the root key could mint anything, so that is refused.
 */
export function readIssuerKey(file: string, identity: { name: string; keyId: number }, rootPublicKey?: string): TokenResult<IssuerKey> {
  const privateKey = readPrivateKey(file);
  if (!privateKey.ok) return privateKey;
  const publicKey = publicKeyOf(privateKey.value);
  if (rootPublicKey !== undefined && publicKey.toLowerCase() === rootPublicKey.trim().toLowerCase()) {
    privateKey.value.free();
    return fail('malformed', `key file ${file} is the token root key: the issuer needs a key of its own (gatehouse token keygen --issuer)`, { file });
  }
  return ok({ ...identity, privateKey: privateKey.value, publicKey });
}
