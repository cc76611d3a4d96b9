// The browser sign-ins in progress, kept on the server between the redirect to the IdP and its callback:
// keyed by state, single-use, bound to the browser (a random value in a `__Host-` cookie) and the certificate.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { CodeLogin } from '../issuer/relyingParty.ts';
import type { NextTarget } from '../portal/nextTarget.ts';
import { GATEWAY_COOKIE_PREFIX } from '../portal/sessionCookie.ts';

/** The browser's half of a sign-in in progress; only its hash is kept with the state. */
export const LOGIN_COOKIE = `${GATEWAY_COOKIE_PREFIX}login`;

/** How long a user has at the IdP (login, MFA, consent) before the callback is refused. */
export const LOGIN_SECONDS = 600;

/** Sign-ins in progress at most (oldest dropped first); each start costs its certificate's request rate. */
const MAX_LOGINS = 10_000;

/** 32 random bytes, base64url: what a browser binding value looks like (anything else is not ours). */
const BINDING_TEXT = /^[A-Za-z0-9_-]{43}$/;

export interface BrowserLogin {
  code: CodeLogin;
  /** sha256 of the binding cookie's value. */
  browser: Buffer;
  /** `sha256:<hex>` of the certificate that started the sign-in. */
  fingerprint: string;
  next: Extract<NextTarget, { ok: true }>;
}

export type TakenLogin = { ok: true; login: BrowserLogin } | { ok: false; reason: string; foreign: boolean };

const hashOf = (binding: string) => createHash('sha256').update(binding).digest();

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

export interface BrowserLogins {
  /** Keeps a sign-in; `binding` is the browser's value (a new one when it carries none). */
  start(code: CodeLogin, binding: string | undefined, fingerprint: string, next: Extract<NextTarget, { ok: true }>): { binding: string };
  /** Takes the sign-in of `state` (it is gone afterwards, whatever comes of it) if this browser and certificate started it. */
  take(state: string, binding: string | undefined, fingerprint: string): TakenLogin;
}

export function browserLogins(): BrowserLogins {
  const logins = new LRUCache<string, BrowserLogin>({ max: MAX_LOGINS, ttl: LOGIN_SECONDS * 1000 });
  return {
    start(code, binding, fingerprint, next) {
      // A browser with sign-ins in other tabs keeps its value, so none of them is orphaned.
      const value = binding ?? randomBytes(32).toString('base64url');
      logins.set(code.state, { code, browser: hashOf(value), fingerprint, next });
      return { binding: value };
    },
    take(state, binding, fingerprint) {
      const login = state === '' ? undefined : logins.get(state);
      if (login === undefined) return { ok: false, reason: 'no sign-in in progress has this state (unknown, used already, or expired)', foreign: false };
      // Single use: a state is spent by its first callback, also a refused one.
      logins.delete(state);
      if (binding === undefined || !timingSafeEqual(hashOf(binding), login.browser)) {
        return { ok: false, reason: `the callback came from a browser that did not start this sign-in (${binding === undefined ? 'no' : 'another'} login cookie)`, foreign: true };
      }
      if (fingerprint !== login.fingerprint) return { ok: false, reason: `the callback came with certificate ${fingerprint}, the sign-in was started with ${login.fingerprint}`, foreign: true };
      return { ok: true, login };
    },
  };
}
