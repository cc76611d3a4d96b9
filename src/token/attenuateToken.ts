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

/**
 * Why binding the token to `wanted` without the delegation key would leave it usable by no one: an earlier
 * block already binds another certificate (or common name), and checks only add up. Undefined when it can work.
 */
function bindingConflict(sources: readonly string[], wanted: { clientFingerprint?: string; clientCn?: string }): string | undefined {
  const kinds = [
    { fact: 'client_fingerprint', value: wanted.clientFingerprint?.toLowerCase(), what: 'certificate' },
    { fact: 'client_cn', value: wanted.clientCn, what: 'common name' },
  ];
  // A delegable binding ("alice, or whom a delegation block names") gives way once a delegation block names someone.
  const delegated = sources.some((source) => /^delegated_(?:fingerprint|cn)\("/m.test(source));
  const delegable = /delegated_(?:fingerprint|cn)\(\$/.test(sources[0] ?? '');
  for (const { fact, value, what } of kinds) {
    if (value === undefined) continue;
    for (const source of sources) {
      const line = new RegExp(`^check if ${fact}\\("((?:[^"\\\\]|\\\\.)*)"\\)(.*)$`, 'm').exec(source);
      const bound = line?.[1];
      if (bound === undefined || bound === value || (delegated && line?.[2]?.includes('delegated_'))) continue;
      const lend = delegable
        ? 'to lend it to another certificate, sign the block with its delegation key (--delegation-key FILE)'
        : 'it is not delegable: only a token minted with --delegable can be lent to another certificate';
      return `the token is already bound to another ${what} (${bound}): binding it to this one too would leave a token no certificate can use; ${lend}`;
    }
  }
  return undefined;
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
  if (!delegating) {
    const sources = Array.from({ length: token.countBlocks() }, (_, i) => token.getBlockSource(i));
    const conflict = bindingConflict(sources, restrictions);
    if (conflict) {
      token.free();
      return fail('invalid-input', conflict);
    }
  }
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
