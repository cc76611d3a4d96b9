// Authentication, the first half of admission: a bearer token (programs) or the browser session
// cookie (set by signing in), and whether a cookie-authorized request comes from the route's own origin.
import type { IncomingHttpHeaders } from 'node:http';
import { bearerCredential, type BearerCredential } from '../admission/bearerCredential.ts';
import { readSessionCookie } from '../portal/sessionCookie.ts';
import { refuse } from '../errors/refusal.ts';
import { fromOwnOrigin, ownOrigin } from '../routing/origin.ts';

/** How a request was authenticated, as the audit record's `auth` says. */
export type AuthMethod = 'bearer' | 'session';

/** Where a forwarder accepts a token from; `cookie` is the session cookie. */
export type CredentialSource = 'authorization' | 'proxy-authorization' | 'cookie';

export type RequestCredential = BearerCredential & { auth?: AuthMethod };

/**
 * The token of a request: a bearer header wins over the cookie (a program that sends both means its
 * header), and the cookie is read only when the forwarder accepts it.
 */
export function requestCredential(headers: IncomingHttpHeaders, maxTokenBytes: number, sources: readonly CredentialSource[]): RequestCredential {
  const headerNames = sources.filter((s): s is 'authorization' | 'proxy-authorization' => s !== 'cookie');
  const bearer = bearerCredential(headers, maxTokenBytes, ...headerNames);
  if (bearer.kind !== 'none') return bearer.kind === 'token' ? { ...bearer, auth: 'bearer' } : bearer;
  if (!sources.includes('cookie')) return bearer;
  const cookie = readSessionCookie(headers.cookie, maxTokenBytes);
  if (cookie.kind === 'none') return bearer;
  if (cookie.kind === 'invalid') return { kind: 'invalid', refusal: refuse('GH_SESSION_INVALID', cookie.reason), auth: 'session' };
  return { kind: 'token', token: cookie.token, auth: 'session' };
}

/**
 * Whether a request authorized by the session cookie may go on. A browser attaches cookies to requests
 * other pages start; the ones that act (anything but GET/HEAD) and every WebSocket upgrade must come
 * from the route's own origin (CSRF, cross-site WebSocket hijacking). Browsers always send Origin on
 * those, so a missing one is refused too. Bearer requests are not checked: no browser adds that header.
 */
export function sessionOriginCheck(headers: IncomingHttpHeaders, method: string, upgrade: boolean): { ok: true } | { ok: false; reason: string } {
  if (!upgrade && (method === 'GET' || method === 'HEAD')) return { ok: true };
  if (fromOwnOrigin(headers)) return { ok: true };
  const origin = headers.origin?.trim().toLowerCase();
  const own = ownOrigin(headers);
  const what = upgrade ? 'WebSocket upgrade' : `${method} request`;
  return { ok: false, reason: `${what} with the session cookie from ${origin === undefined ? 'no Origin' : `origin ${JSON.stringify(origin.slice(0, 200))}`}, not ${own ?? 'the route\'s origin'}` };
}

