// The one revocation test every path applies (main thread, workers, authz explain): a token is refused
// when any of its blocks' revocation ids is listed, reporting the first such block.
import { refuse } from '../../errors/refusal.ts';
import type { Decision } from '../types.ts';

export type Denial = Extract<Decision, { allow: false }>;

/** A 403 naming the revoked block, or undefined when no id is in `revoked`. */
export function revokedDecision(ids: readonly string[], revoked: ReadonlySet<string>, user?: string): Denial | undefined {
  const block = ids.findIndex((id) => revoked.has(id));
  const id = ids[block];
  if (id === undefined) return undefined;
  const denial: Denial = { allow: false, ...refuse('GH_TOKEN_REVOKED', `revocation id ${id} (block ${block}) is revoked`), revocationIds: [...ids] };
  return user === undefined ? denial : { ...denial, user };
}
