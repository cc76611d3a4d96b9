// Whether a request comes from the origin it addresses (its Host): the rule session requests, sign-in forms
// and hand-offs are held to, against cross-site requests that ride on the browser's cookie.
import type { IncomingHttpHeaders } from 'node:http';

/** The origin a request addressed: `https://` + its Host, lower case (the port stays as sent). */
export function ownOrigin(headers: IncomingHttpHeaders): string | undefined {
  const host = headers.host?.trim().toLowerCase();
  return host ? `https://${host}` : undefined;
}

/**
 * Whether the browser says the request comes from the origin it addresses: Origin equals it, or, for a
 * form posted from a page with `Referrer-Policy: no-referrer` (Origin is then "null"), the browser's own
 * `Sec-Fetch-Site: same-origin` (a header pages cannot set).
 */
export function fromOwnOrigin(headers: IncomingHttpHeaders): boolean {
  const origin = headers.origin?.trim().toLowerCase();
  const own = ownOrigin(headers);
  if (origin !== undefined && own !== undefined && (origin === own || origin === own.replace(/:443$/, ''))) return true;
  return origin === 'null' && headers['sec-fetch-site'] === 'same-origin';
}
