// What `gatehouse login` may ask for when it starts a device login: groups, routes, a lifetime and a delegation
// key, each checked here by the token's own name rules (the claim rules then judge what the user may have).
import { refuse, type Refusal } from '../errors/refusal.ts';
import type { IssueRequest } from '../issuer/claimGrant.ts';
import { parseTtl } from '../token/duration.ts';
import { validDelegationKey, validGroup, validList, validRoute } from '../token/names.ts';
import type { TokenResult } from '../token/tokenErrors.ts';

export interface LoginAsk {
  request: IssueRequest;
  delegationKey?: string;
}

/** More names than any site's rules grant: a list longer than this is not a mistake worth reading. */
const MAX_NAMES = 64;

function names(body: Record<string, unknown>, field: 'groups' | 'routes', check: (name: string) => TokenResult<string>): { ok: true; value?: string[] } | { ok: false; refusal: Refusal } {
  const value = body[field];
  if (value === undefined) return { ok: true };
  const bad = (reason: string) => ({ ok: false as const, refusal: refuse('GH_LOGIN_BAD_REQUEST', `${field}: ${reason}`, { clientReason: `invalid ${field}` }) });
  if (!Array.isArray(value) || value.length > MAX_NAMES || !value.every((v): v is string => typeof v === 'string')) return bad(`expected a list of at most ${MAX_NAMES} names`);
  const checked = validList(field, value, check);
  return checked.ok ? { ok: true, value: checked.value } : bad(checked.error.message);
}

/** The start body `{ groups?, routes?, ttl?, delegationKey?, csr? }` (the csr is certificateLogin.ts's); anything else is refused, not ignored. */
export function readLoginAsk(body: Record<string, unknown>): { ok: true; ask: LoginAsk } | { ok: false; refusal: Refusal } {
  const unknown = Object.keys(body).filter((k) => !['groups', 'routes', 'ttl', 'delegationKey', 'csr'].includes(k));
  if (unknown.length > 0) return { ok: false, refusal: refuse('GH_LOGIN_BAD_REQUEST', `unknown field ${JSON.stringify(unknown[0]).slice(0, 80)}`, { clientReason: 'unknown field in the login request' }) };
  const groups = names(body, 'groups', validGroup);
  if (!groups.ok) return groups;
  const routes = names(body, 'routes', validRoute);
  if (!routes.ok) return routes;
  const request: IssueRequest = { ...(groups.value && { groups: groups.value }), ...(routes.value && { routes: routes.value }) };
  if (body.ttl !== undefined) {
    const ttl = typeof body.ttl === 'string' ? parseTtl(body.ttl) : undefined;
    if (!ttl?.ok) return { ok: false, refusal: refuse('GH_LOGIN_BAD_REQUEST', `ttl: ${ttl?.error.message ?? 'not a string'}`, { clientReason: 'invalid ttl (a duration such as 30m or 8h)' }) };
    request.ttlSeconds = ttl.value;
  }
  if (body.delegationKey === undefined) return { ok: true, ask: { request } };
  const key = typeof body.delegationKey === 'string' ? validDelegationKey(body.delegationKey) : undefined;
  if (!key?.ok) return { ok: false, refusal: refuse('GH_LOGIN_BAD_REQUEST', `delegationKey: ${key?.error.message ?? 'not a string'}`, { clientReason: 'invalid delegationKey (ed25519/<64 hex digits>)' }) };
  return { ok: true, ask: { request, delegationKey: key.value } };
}
