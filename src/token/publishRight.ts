// Publishing is a right a token carries explicitly: the authority block grants it (`publish_right("jupyter")`
// or `publish_right("*")`), and every later block must grant it again, so appending a block can only narrow it.
//
// Why every block: whoever holds a token can append blocks without any key, so a loan's borrower writes
// blocks too. A grant counts only when the authority block AND each block after it carry one covering the
// service; a block without a grant (a plain loan, a session, any tool's attenuation) ends the right for
// everything appended after it. A borrower's own `publish_right` fact therefore adds nothing: the lender's
// block before it still lacks the grant. (Biscuit's scoping agrees: a later block's facts are invisible to
// the authorizer's policies, so the `publish_right` facts of the token never reach a policy directly.)
import { validList, validService } from './names.ts';
import { passOn, ok, type TokenResult } from './tokenErrors.ts';

/** The grant that covers every service the earlier blocks allow. */
export const ANY_SERVICE = '*';

/** The fact a block grants publishing with. */
export const PUBLISH_RIGHT = 'publish_right';

/**
 * Datalog facts granting publishing of `services` (`["*"]` = any), for the authority block (mint) or a
 * block that passes the right on (attenuate). Names are validated and passed as parameters.
 */
export function publishGrantCode(services: readonly string[]): TokenResult<{ code: string; parameters: Record<string, string> }> {
  const named = services.includes(ANY_SERVICE) ? ok([ANY_SERVICE]) : validList('service', services, validService);
  if (!named.ok) return passOn(named);
  const parameters: Record<string, string> = {};
  const lines = named.value.map((service, index) => {
    parameters[`publish_right_${index}`] = service;
    return `${PUBLISH_RIGHT}({publish_right_${index}});`;
  });
  return ok({ code: lines.join('\n'), parameters });
}

/**
 * The grants a printed block source states: only facts of exactly this form, one per line, as biscuit
 * prints them. A rule deriving the fact, or anything else, grants nothing (fail closed). Strings print
 * unescaped, so a block's author could make a line look like a grant from inside a string of that same
 * block; that gives them nothing they could not write directly, and no other block's text is involved.
 */
const grantLine = /^publish_right\("(\*|[a-z0-9][a-z0-9_-]{0,62})"\);$/gm;

export function grantsIn(source: string): string[] {
  return [...new Set([...source.matchAll(grantLine)].map((m) => m[1] as string))];
}

export interface PublishChain {
  /** Blocks in the token (1: not attenuated). */
  blocks: number;
  /** Per block, the services it grants (`*` = any). */
  grants: string[][];
}

export type PublishRight = { ok: true; chain: PublishChain } | { ok: false; chain: PublishChain; block: number; reason: string };

/** Whether every block of the token (printed sources, authority first) grants publishing `service`. */
export function publishRightFor(sources: readonly string[], service: string): PublishRight {
  const chain: PublishChain = { blocks: sources.length, grants: sources.map(grantsIn) };
  if (service === '') return { ok: false, chain, block: 0, reason: 'no service named: nothing can be granted' };
  for (const [block, grants] of chain.grants.entries()) {
    if (grants.includes(ANY_SERVICE) || grants.includes(service)) continue;
    const reason = block === 0
      ? grants.length === 0
        ? 'the token carries no right to publish (its authority block has no publish_right fact: token mint --publish)'
        : `the token's right to publish covers ${grants.join(', ')}, not ${service}`
      : grants.length === 0
        ? `block ${block} does not pass on the right to publish: a loan or any other attenuation carries it only when its block grants it again (token attenuate --allow-publish or --publish ${service})`
        : `block ${block} passes on the right to publish only ${grants.join(', ')}, not ${service}`;
    return { ok: false, chain, block, reason };
  }
  return { ok: true, chain };
}

/** What a token may publish after all its blocks: `*` (any service), the services every block grants, or none. */
export function publishableServices(sources: readonly string[]): string[] {
  let allowed: string[] | undefined;
  for (const grants of sources.map(grantsIn)) {
    if (grants.includes(ANY_SERVICE)) continue;
    allowed = allowed === undefined ? grants : allowed.filter((service) => grants.includes(service));
  }
  return sources.length === 0 ? [] : (allowed ?? [ANY_SERVICE]);
}
