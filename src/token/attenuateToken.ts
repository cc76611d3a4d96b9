// Attenuation: appends a block of checks to a verified token, so the result allows a subset of
// what the original allows (shorter life, fewer routes, methods or paths, one client certificate).
import type { PublicKey } from '@biscuit-auth/biscuit-wasm';
import { biscuit, biscuitErrorText, datalogParameters } from './biscuitModule.ts';
import { parseToken } from './parseToken.ts';
import { hasRestriction, restrictionChecks, type Restrictions } from './restrictions.ts';
import { fail, ok, passOn, type TokenResult } from './tokenErrors.ts';

export interface AttenuateOptions extends Restrictions {
  /** The token to attenuate, base64url. */
  token: string;
  /** Root public key: the token is verified before anything is appended to it. */
  publicKey: PublicKey;
  /** The time a TTL counts from; default now. */
  now?: Date;
}

/** Returns the attenuated token as base64url text. */
export function attenuateToken(options: AttenuateOptions): TokenResult<string> {
  if (!hasRestriction(options)) {
    return fail('invalid-input', 'nothing to attenuate: give at least one of a TTL, routes, methods, a path prefix or a client binding');
  }
  const checks = restrictionChecks(options, options.now ?? new Date());
  if (!checks.ok) return passOn(checks);
  const parsed = parseToken(options.token, options.publicKey);
  if (!parsed.ok) return passOn(parsed);
  const token = parsed.value;
  try {
    const block = biscuit.Biscuit.block_builder();
    block.addCodeWithParameters(checks.value.code, datalogParameters(checks.value.parameters), {});
    const attenuated = token.appendBlock(block);
    try {
      return ok(attenuated.toBase64());
    } finally {
      attenuated.free();
    }
  } catch (error) {
    return fail('library', `cannot attenuate the token: ${biscuitErrorText(error)}`);
  } finally {
    token.free();
  }
}
