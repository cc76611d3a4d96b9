// What each block of a verified multi-block token is (role, signer, the certificate it binds), so a
// delegated request is attributed to lender and borrower. Runs in the engine workers once per parsed token.
import { readTokenEnvelope } from '../../token/tokenEnvelope.ts';
import type { TokenBlock } from '../types.ts';

// Printed block sources have one statement per line. Only a check whose first alternative names a
// literal certificate binds the block: `check if client_fingerprint("sha256:…")` (`or …` for delegable).
const fingerprintCheck = /^check if client_fingerprint\("(sha256:[0-9a-f]{64})"\)(?:;$| or )/m;
// biscuit-wasm 0.6.0 prints strings unescaped; a CN is at most 256 characters without control characters.
const cnCheck = /^check if client_cn\("([^\n]{1,256}?)"\)(?:;$| or )/m;
/** The key the authority block trusts for delegated_* facts (restrictions.ts writes it). */
const delegationKeyOf = /delegated_(?:fingerprint|cn)\(\$\w+\) trusting ([a-z0-9]+\/[0-9a-f]+)/;

function boundTo(source: string): TokenBlock['boundTo'] {
  const fingerprint = fingerprintCheck.exec(source)?.[1];
  const cn = cnCheck.exec(source)?.[1];
  if (fingerprint === undefined && cn === undefined) return undefined;
  return { ...(fingerprint !== undefined && { fingerprint }), ...(cn !== undefined && { cn }) };
}

/**
 * The blocks of a token whose signatures biscuit already verified, or undefined for a one-block token
 * (nothing to attribute beyond `user`). `signerNames` maps `ed25519/<hex>` (lower case) to the
 * `authz.externalKeys` name. Never throws: a token it cannot describe is simply not described.
 */
export function describeBlocks(text: string, sources: readonly string[], revocationIds: readonly string[], signerNames: ReadonlyMap<string, string>): TokenBlock[] | undefined {
  if (sources.length < 2) return undefined;
  const envelope = readTokenEnvelope(text);
  if (!envelope.ok || envelope.value.blockCount !== sources.length) return undefined;
  const delegationKey = delegationKeyOf.exec(sources[0] ?? '')?.[1]?.toLowerCase();
  return sources.map((source, index) => {
    const external = envelope.value.externalKeys[index]?.toLowerCase();
    const role: TokenBlock['role'] = index === 0 ? 'authority' : external !== undefined ? 'third-party' : 'attenuation';
    const bound = boundTo(source);
    return {
      index,
      role,
      revocationId: revocationIds[index] ?? '',
      ...(external !== undefined && { signer: signerNames.get(external) ?? external }),
      ...(external !== undefined && external === delegationKey && { delegation: true as const }),
      ...(bound !== undefined && { boundTo: bound }),
    };
  });
}
