// Turns base64url text into a verified Biscuit: every block's signature is checked against the
// root public key. Anything that does not verify is an `invalid-token` error, never a token.
import type { Biscuit, PublicKey } from '@biscuit-auth/biscuit-wasm';
import type { TrustedSigners } from './signers.ts';
import { biscuit, biscuitErrorText } from './biscuitModule.ts';
import { fail, ok, type TokenResult } from './tokenErrors.ts';

/** Token text as pasted or read from a file: surrounding whitespace and a `Bearer ` prefix dropped. */
export function cleanTokenText(text: string): string {
  return text.trim().replace(/^Bearer\s+/i, '').trim();
}

/** biscuit-wasm reports bad signatures as {"Format":{"Signature":...}} (or an unknown root key id). */
function isSignatureError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const format = (error as Record<string, unknown>).Format;
  if (typeof format !== 'object' || format === null) return false;
  return 'Signature' in format || 'UnknownPublicKey' in format || 'InvalidSignatureSize' in format;
}

/** One root public key, or the gateway's trusted signers (the root key and the issuers' keys, chosen by key id). */
export type VerifyingKeys = PublicKey | TrustedSigners;

export function parseToken(text: string, rootKey: VerifyingKeys): TokenResult<Biscuit> {
  const token = cleanTokenText(text);
  if (token.length === 0) return fail('invalid-token', 'the token is empty');
  if (!/^[A-Za-z0-9_-]+={0,2}$/.test(token)) return fail('invalid-token', 'the token is not base64url text');
  if ('verify' in rootKey) {
    const signed = rootKey.verify(token);
    return signed.ok ? ok(signed.token) : fail('invalid-token', signed.reason);
  }
  try {
    return ok(biscuit.Biscuit.fromBase64(token, rootKey));
  } catch (error) {
    return fail('invalid-token', isSignatureError(error) ? `the token does not verify against the root public key (${biscuitErrorText(error)})` : `the token is not a valid Biscuit: ${biscuitErrorText(error)}`);
  }
}
