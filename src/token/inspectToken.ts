// Inspection: a token's blocks as Datalog, revocation ids, user, groups and earliest expiry.
// With the root public key everything is verified; without it only the envelope can be read.
import type { Biscuit } from '@biscuit-auth/biscuit-wasm';
import { biscuit, biscuitErrorText, toolLimits } from './biscuitModule.ts';
import { parseToken, type VerifyingKeys } from './parseToken.ts';
import { readTokenEnvelope } from './tokenEnvelope.ts';
import { fail, ok, passOn, type TokenResult } from './tokenErrors.ts';

export interface InspectedBlock {
  index: number;
  /** Datalog source; absent when the token could not be verified (biscuit-wasm only decodes verified tokens). */
  source?: string;
  revocationId: string;
}

export interface TokenInspection {
  blocks: InspectedBlock[];
  revocationIds: string[];
  /** Earliest `check if time($t), $t <= <date>` found in any block, RFC 3339. */
  expiresAt?: string;
  /** The authority block's user (first, if it names several). */
  user?: string;
  groups: string[];
  /** True when every signature was checked against the root public key. */
  verified: boolean;
}

const date = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)`;
const timeCheck = new RegExp(String.raw`^check (?:if|all) .*\btime\(\$(\w+)\).*\$\1 <=? (${date})`);

/** Earliest expiry stated by a time check, scanning block sources line by line. */
export function earliestExpiry(sources: readonly string[]): string | undefined {
  let earliest: { at: number; text: string } | undefined;
  for (const source of sources) {
    for (const line of source.split('\n')) {
      if (line.includes(' or ')) continue; // an alternative does not bound the lifetime
      const match = timeCheck.exec(line.trim());
      const text = match?.[2];
      if (text === undefined) continue;
      const at = Date.parse(text);
      if (!Number.isNaN(at) && (earliest === undefined || at < earliest.at)) earliest = { at, text };
    }
  }
  return earliest?.text;
}

/**
 * Authority-block facts of one predicate, as strings, via a query (not by parsing printed source,
 * which biscuit-wasm does not escape). A token the authorizer refuses to load (e.g. an invalid
 * block rule) yields none: inspection still shows its blocks.
 */
function authorityValues(token: Biscuit, predicate: 'user' | 'group'): string[] {
  let authorizer;
  try {
    authorizer = new biscuit.AuthorizerBuilder().buildAuthenticated(token);
  } catch {
    return [];
  }
  try {
    const rule = biscuit.Rule.fromString(`found($value) <- ${predicate}($value)`);
    const facts: unknown[] = authorizer.queryWithLimits(rule, toolLimits);
    const values = new Set<string>();
    for (const fact of facts) {
      if (!(fact instanceof biscuit.Fact)) continue;
      const [term] = fact.terms() as unknown[];
      if (typeof term === 'string') values.add(term);
      fact.free();
    }
    return [...values].sort();
  } finally {
    authorizer.free();
  }
}

function inspectVerified(token: Biscuit): TokenInspection {
  const revocationIds = token.getRevocationIdentifiers().map(String);
  const blocks: InspectedBlock[] = [];
  for (let index = 0; index < token.countBlocks(); index++) {
    blocks.push({ index, source: token.getBlockSource(index), revocationId: revocationIds[index] ?? '' });
  }
  const expiresAt = earliestExpiry(blocks.map((b) => b.source ?? ''));
  const [user] = authorityValues(token, 'user');
  return {
    blocks,
    revocationIds,
    ...(expiresAt !== undefined ? { expiresAt } : {}),
    ...(user !== undefined ? { user } : {}),
    groups: authorityValues(token, 'group'),
    verified: true,
  };
}

export function inspectToken(text: string, publicKey?: VerifyingKeys): TokenResult<TokenInspection> {
  if (publicKey === undefined) {
    const envelope = readTokenEnvelope(text);
    if (!envelope.ok) return passOn(envelope);
    const { revocationIds } = envelope.value;
    return ok({
      blocks: revocationIds.map((revocationId, index) => ({ index, revocationId })),
      revocationIds,
      groups: [],
      verified: false,
    });
  }
  const parsed = parseToken(text, publicKey);
  if (!parsed.ok) return passOn(parsed);
  try {
    return ok(inspectVerified(parsed.value));
  } catch (error) {
    return fail('library', `cannot inspect the token: ${biscuitErrorText(error)}`);
  } finally {
    parsed.value.free();
  }
}
