// The claim rules applied to one login: from the IdP's claims and the client certificate to what a
// token may carry (user, groups, routes, publish rights, lifetime), or the refusal. Pure: no keys, no I/O.
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import { parseTtl } from '../token/duration.ts';
import { validGroup, validUser } from '../token/names.ts';
import { PUBLISH_ROUTE } from '../routing/reservedPaths.ts';
import type { IssuerSettings } from '../config/issuerSettings.ts';

/** Why an issuance is refused; stable codes (audit reason prefix, client message, tests). */
export type IssueRefusalCode =
  | 'claims-incomplete'
  | 'certificate-mismatch'
  | 'no-group-allowed'
  | 'group-not-allowed'
  | 'route-not-allowed'
  | 'idp-session-expired'
  | 'ttl-invalid'
  | 'mint-failed';

export interface IssueRefusal {
  code: IssueRefusalCode;
  /** Short and safe to show the user. */
  clientReason: string;
  /** Full reason for the audit record. */
  reason: string;
}

/** What the user asked for at login; every part optional (absent = everything the rules allow). */
export interface IssueRequest {
  groups?: string[];
  routes?: string[];
  ttlSeconds?: number;
}

export interface Grant {
  user: string;
  groups: string[];
  /** Absent: any route whose policy accepts the user. */
  routes?: string[];
  /** Absent: no right to publish. */
  publish?: string[];
  ttlSeconds: number;
  idp: { issuer: string; subject: string };
  /** The claims the rules read, by claim name (never the IdP's tokens). */
  claimsUsed: Record<string, unknown>;
  /** The rules that applied, in words, in order. */
  rules: string[];
}

export interface GrantInput {
  /** ID token claims (and userinfo), already validated by the OpenID client. */
  claims: Readonly<Record<string, unknown>>;
  certificate: PeerIdentity;
  rules: IssuerSettings;
  now: Date;
  /** When the IdP session (or the ID token) ends: the token never outlives it. */
  idpSessionEndsAt?: Date;
  request?: IssueRequest;
}

export type GrantResult = { ok: true; grant: Grant } | { ok: false; refusal: IssueRefusal; claimsUsed: Record<string, unknown>; rules: string[] };

const seconds = (text: string): number => {
  const parsed = parseTtl(text);
  return parsed.ok ? parsed.value : 0;
};

/** A groups claim as names: an array of strings, or one string; other values and invalid names are dropped. */
function groupsOf(value: unknown): string[] {
  const list = Array.isArray(value) ? value : typeof value === 'string' ? [value] : [];
  return [...new Set(list.filter((g): g is string => typeof g === 'string' && validGroup(g).ok))].sort();
}

export function decideGrant(input: GrantInput): GrantResult {
  const { claims, certificate, rules, now } = input;
  const request = input.request ?? {};
  const claimsUsed: Record<string, unknown> = { iss: claims.iss, sub: claims.sub };
  const applied: string[] = [];
  const refuse = (code: IssueRefusalCode, clientReason: string, reason: string): GrantResult => ({ ok: false, refusal: { code, clientReason, reason }, claimsUsed, rules: applied });

  const userClaim = rules.claims.user;
  const userValue = claims[userClaim];
  claimsUsed[userClaim] = userValue;
  const { iss, sub } = claims;
  if (typeof iss !== 'string' || iss === '' || typeof sub !== 'string' || sub === '') return refuse('claims-incomplete', 'the identity provider did not name you', 'the ID token has no iss or sub claim');
  if (typeof userValue !== 'string' || !validUser(userValue).ok) {
    return refuse('claims-incomplete', `the identity provider gave no usable ${userClaim}`, `claim ${userClaim} is ${JSON.stringify(userValue ?? null)}: not a user name`);
  }
  const user = userValue;
  applied.push(`user from claim ${userClaim}`);

  // The IdP login and the client certificate must be the same person: otherwise bob's login would
  // mint a token bound to alice's certificate (or alice's certificate would carry bob's rights).
  const { field } = rules.certificate;
  if (field !== 'none') {
    const claimName = rules.certificate.claim ?? userClaim;
    const claimed = claims[claimName];
    claimsUsed[claimName] = claimed;
    const held = field === 'cn' ? [certificate.cn] : certificate.sans.filter((s) => s.kind === 'email').map((s) => s.value);
    const matches = typeof claimed === 'string' && held.some((value) => (field === 'email' ? value.toLowerCase() === claimed.toLowerCase() : value === claimed));
    const shown = field === 'cn' ? `CN ${JSON.stringify(certificate.cn)}` : `email ${held.map((v) => JSON.stringify(v)).join(', ') || '(none)'}`;
    if (!matches) {
      return refuse('certificate-mismatch', 'your login does not match your client certificate', `IdP ${claimName} ${JSON.stringify(claimed ?? null)} is not the holder of the client certificate (${shown}, ${certificate.fingerprint})`);
    }
    applied.push(`certificate: claim ${claimName} = certificate ${field}`);
  }

  const groupsClaim = rules.claims.groups;
  claimsUsed[groupsClaim] = claims[groupsClaim];
  const member = groupsOf(claims[groupsClaim]);
  const granted = member.filter((g) => rules.groups[g] !== undefined);
  let chosen = granted;
  if (request.groups !== undefined) {
    const notMember = request.groups.filter((g) => !member.includes(g));
    const notGranted = request.groups.filter((g) => member.includes(g) && !granted.includes(g));
    if (notMember.length > 0) return refuse('group-not-allowed', `you are not in group ${notMember[0]}`, `requested group(s) ${notMember.join(', ')} not in claim ${groupsClaim} (${member.join(', ') || 'none'})`);
    if (notGranted.length > 0) return refuse('group-not-allowed', `group ${notGranted[0]} may not receive tokens here`, `requested group(s) ${notGranted.join(', ')}: not under issuer.groups`);
    chosen = [...new Set(request.groups)].sort();
  }
  if (chosen.length === 0) {
    return refuse('no-group-allowed', 'none of your groups may receive a token here', `claim ${groupsClaim} lists ${member.join(', ') || 'no group'}; issuer.groups grants ${Object.keys(rules.groups).join(', ')}`);
  }
  const grants = chosen.map((g) => ({ group: g, grant: rules.groups[g] ?? { routes: [] } }));
  applied.push(...grants.map(({ group, grant }) => `group ${group}: routes ${grant.routes.join(', ')}${grant.publish ? `; publish ${grant.publish.join(', ')}` : ''}${grant.maxTtl ? `; maxTtl ${grant.maxTtl}` : ''}`));

  const publishAll = grants.flatMap(({ grant }) => grant.publish ?? []);
  const publish = publishAll.length === 0 ? undefined : publishAll.includes('*') ? ['*'] : [...new Set(publishAll)].sort();
  // A registration is decided as the route PUBLISH_ROUTE: a token limited to routes must name it, or its
  // right to publish could never be used.
  const withPublish = (names: string[]) => [...new Set(publish !== undefined ? [...names, PUBLISH_ROUTE] : names)].sort();
  const anyRoute = grants.some(({ grant }) => grant.routes.includes('*'));
  const allowedRoutes = withPublish(grants.flatMap(({ grant }) => grant.routes));
  let routes: string[] | undefined = anyRoute ? undefined : allowedRoutes;
  if (request.routes !== undefined) {
    const outside = anyRoute ? [] : request.routes.filter((r) => !allowedRoutes.includes(r));
    if (outside.length > 0) return refuse('route-not-allowed', `your groups may not receive route ${outside[0]}`, `requested route(s) ${outside.join(', ')}: groups ${chosen.join(', ')} grant ${allowedRoutes.join(', ')}`);
    routes = withPublish(request.routes);
  }

  // Lifetime: asked for (or the default), cut by every chosen group's maxTtl and by the IdP session.
  let ttl = request.ttlSeconds ?? seconds(rules.ttl);
  const caps = grants.filter(({ grant }) => grant.maxTtl !== undefined).map(({ group, grant }) => ({ group, seconds: seconds(grant.maxTtl ?? '') }));
  for (const cap of caps) {
    if (cap.seconds < ttl) {
      ttl = cap.seconds;
      applied.push(`ttl capped to ${cap.seconds}s by group ${cap.group}`);
    }
  }
  if (input.idpSessionEndsAt !== undefined) {
    const left = Math.floor((input.idpSessionEndsAt.getTime() - now.getTime()) / 1000);
    if (left <= 0) return refuse('idp-session-expired', 'your identity provider session has ended; sign in again', `IdP session ended at ${input.idpSessionEndsAt.toISOString()}`);
    if (left < ttl) {
      ttl = left;
      applied.push(`ttl capped to ${left}s by the IdP session`);
    }
  }
  if (!Number.isInteger(ttl) || ttl <= 0) return refuse('ttl-invalid', 'invalid token lifetime', `lifetime ${ttl}s is not a positive whole number of seconds`);

  return {
    ok: true,
    grant: { user, groups: chosen, ...(routes !== undefined && { routes }), ...(publish !== undefined && { publish }), ttlSeconds: ttl, idp: { issuer: iss, subject: sub }, claimsUsed, rules: applied },
  };
}
