// The browser sign-ins in progress, kept on the server between the redirect to the IdP and its callback:
// keyed by state, single-use, bound to the browser (a random value in a `__Host-` cookie) and the certificate.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { CodeLogin } from '../issuer/relyingParty.ts';
import type { HandoffStore } from '../portal/handoffCodes.ts';
import { asLocalPath, type NextTarget } from '../portal/nextTarget.ts';
import { GATEWAY_COOKIE_PREFIX } from '../portal/sessionCookie.ts';

/** The browser's half of a sign-in in progress; only its hash is kept with the state. */
export const LOGIN_COOKIE = `${GATEWAY_COOKIE_PREFIX}login`;

/** How long a user has at the IdP (login, MFA, consent) before the callback is refused. */
export const LOGIN_SECONDS = 600;

/** 32 random bytes, base64url: what a browser binding value looks like (anything else is not ours). */
const BINDING_TEXT = /^[A-Za-z0-9_-]{43}$/;

type Next = Extract<NextTarget, { ok: true }>;

export interface BrowserLogin {
  code: CodeLogin;
  next: Next;
}

/** What is kept per state (in the store's `token` field): the PKCE verifier, the nonce and where to return. */
interface KeptLogin {
  verifier: string;
  nonce: string;
  redirectUri: string;
  /** sha256 (hex) of the binding cookie's value. */
  browser: string;
  origin?: string;
  path: string;
}

export type StartedLogin = { ok: true; url: string; binding: string } | { ok: false; reason: string };
export type TakenLogin = { ok: true; login: BrowserLogin } | { ok: false; reason: string; kind: 'unknown' | 'foreign' | 'unavailable' };

const hashOf = (binding: string) => createHash('sha256').update(binding).digest();

/**
 * The store's `host` of a sign-in in progress: never a Host header (it has a space), so a hand-off redeem
 * cannot take a login's entry, and a login's callback must come to the host it started on.
 */
const audienceOf = (host: string) => `login ${host.toLowerCase()}`;

/** The binding value a request carries in its login cookie, if exactly one well-formed value. */
export function readBinding(header: string | undefined): string | undefined {
  const values = (header ?? '')
    .split(';')
    .map((part) => part.trim())
    .filter((part) => part.startsWith(`${LOGIN_COOKIE}=`))
    .map((part) => part.slice(LOGIN_COOKIE.length + 1));
  return values.length === 1 && BINDING_TEXT.test(values[0] as string) ? values[0] : undefined;
}

/**
 * Lax, not Strict: the callback is a top-level navigation that comes from the IdP's site, and a Strict
 * cookie would not be sent with it. HttpOnly, Secure, host-only (`__Host-`), gone after the login window.
 */
export function loginCookie(binding: string): string {
  return `${LOGIN_COOKIE}=${binding}; Max-Age=${LOGIN_SECONDS}; Path=/; Secure; HttpOnly; SameSite=Lax`;
}

/**
 * Keeps a sign-in in the portal's one-time store (shared by every process and instance, so the callback
 * may land in any): the store's random code becomes the state the IdP sends back. `binding` is the
 * browser's value; a browser with sign-ins in other tabs keeps its own, so none of them is orphaned.
 */
export async function keepLogin(store: HandoffStore, code: CodeLogin, binding: string | undefined, fingerprint: string, host: string, next: Next): Promise<StartedLogin> {
  const value = binding ?? randomBytes(32).toString('base64url');
  const kept: KeptLogin = { verifier: code.verifier, nonce: code.nonce, redirectUri: code.redirectUri, browser: hashOf(value).toString('hex'), path: next.path, ...(next.origin !== undefined && { origin: next.origin }) };
  const issued = await store.issue({ token: JSON.stringify(kept), maxAgeSeconds: 0, fingerprint, host: audienceOf(host), next: (next.origin ?? '') + next.path, user: '', revocationIds: [], ttlMs: LOGIN_SECONDS * 1000 });
  if (!issued.ok) return issued;
  const url = new URL(code.url);
  url.searchParams.set('state', issued.code);
  return { ok: true, url: url.toString(), binding: value };
}

/** A kept login read back, or undefined when it is not one this module wrote. */
function readKept(text: string): KeptLogin | undefined {
  try {
    const kept = JSON.parse(text) as Partial<KeptLogin>;
    const strings = [kept.verifier, kept.nonce, kept.redirectUri, kept.path];
    const valid = strings.every((s) => typeof s === 'string') && /^[0-9a-f]{64}$/.test(String(kept.browser)) && (kept.origin === undefined || typeof kept.origin === 'string');
    return valid ? (kept as KeptLogin) : undefined;
  } catch {
    return undefined;
  }
}

/** Takes the sign-in of `state` (it is gone afterwards, whatever comes of it) if this browser, certificate and host started it. */
export async function takeLogin(store: HandoffStore, state: string, binding: string | undefined, fingerprint: string, host: string): Promise<TakenLogin> {
  if (state === '') return { ok: false, reason: 'the callback carries no state', kind: 'unknown' };
  const taken = await store.take(state, fingerprint, audienceOf(host));
  if (!taken.ok) return { ok: false, reason: `login state: ${taken.reason}`, kind: taken.kind ?? 'unavailable' };
  const kept = readKept(taken.handoff.token);
  const path = kept && asLocalPath(kept.path);
  if (kept === undefined || path === undefined) return { ok: false, reason: 'the state names a one-time entry that is not a sign-in in progress', kind: 'unknown' };
  if (binding === undefined || !timingSafeEqual(hashOf(binding), Buffer.from(kept.browser, 'hex'))) {
    return { ok: false, reason: `the callback came from a browser that did not start this sign-in (${binding === undefined ? 'no' : 'another'} login cookie)`, kind: 'foreign' };
  }
  const code: CodeLogin = { url: '', redirectUri: kept.redirectUri, state, nonce: kept.nonce, verifier: kept.verifier };
  return { ok: true, login: { code, next: { ok: true, path, ...(kept.origin !== undefined && { origin: kept.origin }) } } };
}
