// The gateway's browser session cookie: its name and lifetime, reading it from a Cookie header, the Set-Cookie
// values that set and clear it, and removing every gateway cookie from what an upstream sees.
import type { VerifiedToken } from '../session/sessionToken.ts';

/** `__Host-`: the browser accepts it only with Secure, Path=/ and no Domain, so it is bound to one host. */
export const SESSION_COOKIE = '__Host-gatehouse-session';
/** Every cookie the gateway owns starts with this; none of them ever crosses to an upstream, nor comes from one. */
export const GATEWAY_COOKIE_PREFIX = '__Host-gatehouse-';

/** Default session lifetime: a working day; never longer than the token's own expiry. */
export const DEFAULT_SESSION_SECONDS = 8 * 3600;

/** When a session for this token ends: `lifetimeSeconds` from now, never after the token's own expiry. */
export function sessionExpiry(token: VerifiedToken, lifetimeSeconds: number, now = new Date()): Date {
  const wanted = Math.floor(now.getTime() / 1000) * 1000 + lifetimeSeconds * 1000;
  return new Date(token.expiresAt === undefined ? wanted : Math.min(wanted, token.expiresAt.getTime()));
}

const TOKEN_TEXT = /^[A-Za-z0-9_-]+={0,2}$/;

/** The `name=value` pairs of one or more Cookie header values, in order (RFC 6265 5.4). */
function cookiePairs(header: string | readonly string[] | undefined): Array<{ name: string; value: string }> {
  if (header === undefined) return [];
  const values = typeof header === 'string' ? [header] : header;
  const pairs: Array<{ name: string; value: string }> = [];
  for (const value of values) {
    for (const part of value.split(';')) {
      const eq = part.indexOf('=');
      if (eq < 0) continue;
      pairs.push({ name: part.slice(0, eq).trim(), value: part.slice(eq + 1).trim() });
    }
  }
  return pairs;
}

export type SessionCookieValue =
  | { kind: 'none' }
  | { kind: 'token'; token: string }
  | { kind: 'invalid'; reason: string };

/** The session token a request carries. Two session cookies (or one that is not token text) are refused, not guessed between. */
export function readSessionCookie(header: string | readonly string[] | undefined, maxTokenBytes: number): SessionCookieValue {
  const found = cookiePairs(header).filter((p) => p.name === SESSION_COOKIE);
  if (found.length === 0) return { kind: 'none' };
  if (found.length > 1) return { kind: 'invalid', reason: `${found.length} ${SESSION_COOKIE} cookies in one request` };
  const value = (found[0] as { value: string }).value;
  if (value.length > maxTokenBytes) return { kind: 'invalid', reason: `session cookie is ${value.length} bytes, over limits.maxTokenBytes (${maxTokenBytes})` };
  if (!TOKEN_TEXT.test(value)) return { kind: 'invalid', reason: 'session cookie is not token text' };
  return { kind: 'token', token: value };
}

/** Set-Cookie for a new session. Strict: the cookie never rides on a request another site started. */
export function setSessionCookie(token: string, maxAgeSeconds: number): string {
  return `${SESSION_COOKIE}=${token}; Max-Age=${Math.max(0, Math.floor(maxAgeSeconds))}; Path=/; Secure; HttpOnly; SameSite=Strict`;
}

/** Set-Cookie that makes the browser forget the session. */
export function clearSessionCookie(): string {
  return `${SESSION_COOKIE}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Strict`;
}

const GATEWAY_PREFIX_ANY_CASE = /__host-gatehouse-/i;

/**
 * Whether one `name=value` pair (of a Cookie header, or the first pair of a Set-Cookie) is, or would come
 * back from a browser as, one of the gateway's cookies. Names are compared case-insensitively (browsers
 * apply the `__Host-` rules so), after the whitespace a browser trims; a nameless cookie (`=value`, or no
 * `=` at all) counts by its value, since a browser sends it back as the value alone.
 */
export function isGatewayCookiePair(pair: string): boolean {
  return GATEWAY_PREFIX_ANY_CASE.test(pair) && pair.replace(/^[\s=]+/, '').toLowerCase().startsWith(GATEWAY_COOKIE_PREFIX.toLowerCase());
}

/**
 * A Cookie header value without the gateway's own cookies (in any spelling), or undefined when nothing is
 * left. The application's cookies pass unchanged (their bytes are kept, only whole pairs are removed).
 */
export function withoutGatewayCookies(value: string): string | undefined {
  // Most Cookie headers carry none of ours: one scan, no split.
  if (!GATEWAY_PREFIX_ANY_CASE.test(value)) return value;
  const kept = value
    .split(';')
    .filter((part) => part.trim() !== '' && !isGatewayCookiePair(part))
    .map((part) => part.trim());
  return kept.length > 0 ? kept.join('; ') : undefined;
}

/** Whether a Set-Cookie value (from an upstream) would set or clear one of the gateway's cookies. */
export function setsGatewayCookie(setCookie: string): boolean {
  const semicolon = setCookie.indexOf(';');
  return isGatewayCookiePair(semicolon < 0 ? setCookie : setCookie.slice(0, semicolon));
}
