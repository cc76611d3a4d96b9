// `gatehouse authz explain --claims FILE`: what a login with these IdP claims and this client certificate
// would receive under the site's claim rules (user, groups, routes, publish rights, lifetime), or why not.
import { readFileSync } from 'node:fs';
import { displaySafe } from '../text/displayText.ts';
import type { GatewayConfig } from '../config/schema.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import { decideGrant, type GrantResult, type IssueRequest } from './claimGrant.ts';

export interface ClaimsQuestion {
  config: GatewayConfig;
  /** JSON file of ID token claims (as `openid-client`'s `claims()` gives them). */
  claimsFile: string;
  certificate: PeerIdentity;
  request: IssueRequest;
  idpSessionEndsAt?: Date;
  now?: Date;
}

export type ClaimsAnswer = { ok: true; result: GrantResult } | { ok: false; reason: string };

export function explainClaims(question: ClaimsQuestion): ClaimsAnswer {
  const rules = question.config.issuer;
  if (rules === undefined) return { ok: false, reason: 'the configuration has no issuer: block (claim rules)' };
  let claims: unknown;
  try {
    claims = JSON.parse(readFileSync(question.claimsFile, 'utf8'));
  } catch (error) {
    return { ok: false, reason: `cannot read claims from ${question.claimsFile}: ${(error as Error).message}` };
  }
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) return { ok: false, reason: `${question.claimsFile}: expected a JSON object of claims` };
  const result = decideGrant({
    claims: claims as Record<string, unknown>,
    certificate: question.certificate,
    rules,
    now: question.now ?? new Date(),
    request: question.request,
    ...(question.idpSessionEndsAt !== undefined && { idpSessionEndsAt: question.idpSessionEndsAt }),
  });
  return { ok: true, result };
}

export function formatClaimsAnswer(result: GrantResult): string {
  const out: string[] = [];
  if (result.ok) {
    const { grant } = result;
    out.push(
      `decision:  ISSUE (user ${displaySafe(grant.user)}, groups ${displaySafe(grant.groups.join(', '))})`,
      `idp:       ${displaySafe(grant.idp.issuer)}, subject ${displaySafe(grant.idp.subject)}`,
      `routes:    ${displaySafe(grant.routes?.join(', ') ?? 'any route whose policy accepts the user')}`,
      `publish:   ${displaySafe(grant.publish?.join(', ') ?? 'none')}`,
      `lifetime:  ${grant.ttlSeconds} s`,
    );
  } else {
    out.push(`decision:  REFUSE ${result.refusal.code} (${displaySafe(result.refusal.clientReason)})`, `reason:    ${displaySafe(result.refusal.reason)}`);
  }
  const rules = result.ok ? result.grant.rules : result.rules;
  out.push('rules:', ...rules.map((r) => `  ${displaySafe(r)}`));
  const claims = result.ok ? result.grant.claimsUsed : result.claimsUsed;
  out.push('claims used:', ...Object.entries(claims).map(([k, v]) => `  ${displaySafe(k)}: ${displaySafe(JSON.stringify(v) ?? 'absent')}`));
  return out.join('\n') + '\n';
}
