// Where a browser goes after signing in: only a path on the gateway itself, never another site
// (an open redirect would let any page send a signed-in user anywhere in the gateway's name).

/** Where a sign-in without `next` lands: the portal. */
export const PORTAL_PATH = '/.well-known/gatehouse/';

export type NextTarget = { ok: true; path: string } | { ok: false; reason: string };

/**
 * `next` as sent by the form. Accepted: an origin-form path (`/x/y?q`), nothing that a browser could
 * read as another host (`//evil`, `/\evil`, a scheme, control characters, whitespace).
 */
export function nextTarget(next: string | null | undefined): NextTarget {
  if (next === null || next === undefined || next === '') return { ok: true, path: PORTAL_PATH };
  if (next.length > 2048) return { ok: false, reason: `next is ${next.length} characters long` };
  // eslint-disable-next-line no-control-regex
  if (!next.startsWith('/') || next.startsWith('//') || /[\\\s\u0000-\u001f\u007f]/.test(next)) {
    return { ok: false, reason: `next ${JSON.stringify(next.slice(0, 200))} is not a path on this gateway` };
  }
  // The parser a browser uses must agree: resolved against any origin, it stays on that origin.
  const base = 'https://gateway.invalid';
  let url: URL;
  try {
    url = new URL(next, base);
  } catch {
    return { ok: false, reason: `next ${JSON.stringify(next.slice(0, 200))} is not a URL path` };
  }
  if (url.origin !== base) return { ok: false, reason: `next ${JSON.stringify(next.slice(0, 200))} leaves the gateway` };
  return { ok: true, path: url.pathname + url.search + url.hash };
}
