// Where a browser goes after signing in: only a path on the gateway itself, never another site
// (an open redirect would let any page send a signed-in user anywhere in the gateway's name).

/** Where a sign-in without `next` lands: the portal. */
export const PORTAL_PATH = '/.well-known/gatehouse/';

export type NextTarget = { ok: true; path: string; origin?: string } | { ok: false; reason: string };

/**
 * `next` as sent by the form. Accepted: an origin-form path (`/x/y?q`), nothing that a browser could
 * read as another host (`//evil`, `/\\evil`, a scheme, control characters, whitespace). An absolute
 * `https://` URL is accepted only when `otherOrigin` says this gateway serves it (a host-templated
 * route on the same port); it comes back split into `origin` and `path`.
 */
export function nextTarget(next: string | null | undefined, otherOrigin?: (url: URL) => boolean): NextTarget {
  if (next === null || next === undefined || next === '') return { ok: true, path: PORTAL_PATH };
  if (next.length > 2048) return { ok: false, reason: `next is ${next.length} characters long` };
  const shown = JSON.stringify(next.slice(0, 200));
  // eslint-disable-next-line no-control-regex
  if (/[\\\s\u0000-\u001f\u007f]/.test(next)) return { ok: false, reason: `next ${shown} is not a path on this gateway` };
  if (otherOrigin !== undefined && /^https:\/\/[^/]/i.test(next)) {
    let url: URL;
    try {
      url = new URL(next);
    } catch {
      return { ok: false, reason: `next ${shown} is not a URL` };
    }
    if (url.username !== '' || url.password !== '' || !otherOrigin(url)) return { ok: false, reason: `next ${shown} is not served by this gateway` };
    return { ok: true, origin: url.origin, path: url.pathname + url.search + url.hash };
  }
  if (!next.startsWith('/') || next.startsWith('//')) return { ok: false, reason: `next ${shown} is not a path on this gateway` };
  // The parser a browser uses must agree: resolved against any origin, it stays on that origin.
  const base = 'https://gateway.invalid';
  let url: URL;
  try {
    url = new URL(next, base);
  } catch {
    return { ok: false, reason: `next ${shown} is not a URL path` };
  }
  if (url.origin !== base) return { ok: false, reason: `next ${shown} leaves the gateway` };
  return { ok: true, path: url.pathname + url.search + url.hash };
}
