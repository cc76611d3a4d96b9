// Attenuation: appends a block of checks to a verified token, so the result allows a subset of
// what the original allows (shorter life, fewer routes, methods or paths, one client certificate).
// With the token's delegation key, the block is signed by that key and may name another client.
import type { PrivateKey, PublicKey } from '@biscuit-auth/biscuit-wasm';
import { biscuit, biscuitErrorText, datalogParameters } from './biscuitModule.ts';
import { parseToken } from './parseToken.ts';
import { ANY_SERVICE, publishGrantCode } from './publishRight.ts';
import { hasRestriction, restrictionChecks, type Restrictions } from './restrictions.ts';
import { fail, ok, passOn, type TokenResult } from './tokenErrors.ts';

export interface AttenuateOptions extends Omit<Restrictions, 'delegationKey' | 'delegate'> {
  /** The token to attenuate, base64url. */
  token: string;
  /** Root public key: the token is verified before anything is appended to it. */
  publicKey: PublicKey;
  /**
   * The delegation private key written when a delegable token was minted: the block is then a
   * third-party block signed by it, and its client binding (required) hands the token to that client.
   */
  delegationPrivateKey?: PrivateKey;
  /**
   * Pass the right to publish on (`publish_right("*")` in the block). Without it, or `publishServices`
   * (which grants those services), the attenuated token cannot publish: a loan does not carry the right.
   */
  allowPublish?: boolean;
  /** The time a TTL counts from; default now. */
  now?: Date;
}

/** Returns the attenuated token as base64url text. */
export function attenuateToken(options: AttenuateOptions): TokenResult<string> {
  const { token: text, publicKey, delegationPrivateKey, now, allowPublish, ...restrictions } = options;
  if (!hasRestriction(restrictions)) {
    return fail('invalid-input', 'nothing to attenuate: give at least one of a TTL, routes, methods, a path prefix, services to publish or a client binding');
  }
  const delegating = delegationPrivateKey !== undefined;
  if (delegating && restrictions.clientFingerprint === undefined && restrictions.clientCn === undefined) {
    return fail('invalid-input', 'delegating needs the client to delegate to: give its certificate (or common name)');
  }
  const checks = restrictionChecks({ ...restrictions, ...(delegating && { delegate: true }) }, now ?? new Date());
  if (!checks.ok) return passOn(checks);
  // Publishing services is granting them again in this block; --allow-publish passes on whatever the earlier blocks grant.
  const granted = restrictions.publishServices ?? (allowPublish ? [ANY_SERVICE] : undefined);
  const grant = granted === undefined ? undefined : publishGrantCode(granted);
  if (grant && !grant.ok) return passOn(grant);
  const parsed = parseToken(text, publicKey);
  if (!parsed.ok) return passOn(parsed);
  const token = parsed.value;
  try {
    const block = delegating ? new biscuit.BlockBuilder() : biscuit.Biscuit.block_builder();
    block.addCodeWithParameters(checks.value.code, datalogParameters(checks.value.parameters), {});
    if (grant) block.addCodeWithParameters(grant.value.code, datalogParameters(grant.value.parameters), {});
    let attenuated;
    if (delegationPrivateKey !== undefined) {
      const pair = biscuit.KeyPair.fromPrivateKey(delegationPrivateKey);
      const signer = pair.getPublicKey();
      const request = token.getThirdPartyRequest();
      try {
        attenuated = token.appendThirdPartyBlock(signer, request.createBlock(delegationPrivateKey, block));
      } finally {
        signer.free();
        pair.free();
      }
    } else {
      attenuated = token.appendBlock(block);
    }
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
