// Where a browser goes after signing in: only the gateway's own origins, never another site (an open
// redirect would let any page send a signed-in user anywhere in the gateway's name). Every URL the
// gateway sends a browser to is rebuilt here from the router's normalized path, never echoed.
import { encodePath, normalizeTarget } from '../routing/normalizePath.ts';

/**
 * A path on the current origin, as the gateway rebuilt it: `/` then never `/` or `\`, no whitespace or
 * control characters. Only this module makes one, so a page or header taking it cannot emit another site.
 */
export type LocalPath = string & { readonly __localPath: unique symbol };

/** Where a sign-in without `next` lands: the portal. */
export const PORTAL_PATH = '/.well-known/gatehouse/' as LocalPath;

export type NextTarget = { ok: true; path: LocalPath; origin?: string } | { ok: false; reason: string };

/** What `next` is judged against: the request's own origin and the other origins this gateway serves. */
export interface OwnOrigins {
  /** The Host header of the request (`host[:port]`): a path stays on its origin. */
  hostHeader: string | undefined;
  /** Whether `hostname` (lower case, ASCII) is one of the gateway's own host names and it routes `segments` there. */
  serves(hostname: string, segments: readonly string[]): boolean;
}

const SENTINEL = 'https://gateway.invalid';
/** The only characters `next` may hold: visible ASCII without `\` (no whitespace, controls, or non-ASCII a parser might map). */
const VISIBLE_ASCII = /^[\x21-\x5b\x5d-\x7e]+$/;

/** The port part of a Host header (443 when absent). */
export function portOf(hostHeader: string | undefined): string {
  const m = /:(\d+)$/.exec(hostHeader ?? '');
  return m ? String(Number(m[1])) : '443';
}

/** `value` if it is a path the gateway could have built, else undefined (a last check where a path is emitted). */
export function asLocalPath(value: string): LocalPath | undefined {
  return /^\/(?![/\\])/.test(value) && VISIBLE_ASCII.test(value) ? (value as LocalPath) : undefined;
}

/**
 * The path of `next` as the router reads it (`rawPath`: `//`, `.`, `..` resolved, escapes decoded, encoded
 * separators and climbing above the root refused), re-encoded by the gateway, with the query and fragment
 * as the URL parser serialized them (it escapes quotes, `<` and `>`).
 */
function rebuiltPath(rawPath: string, url: URL, shown: string): { ok: true; path: LocalPath; segments: string[] } | { ok: false; reason: string } {
  const normalized = normalizeTarget(rawPath === '' ? '/' : rawPath);
  if (!normalized.ok) return { ok: false, reason: `next ${shown}: ${normalized.reason}` };
  const path = asLocalPath(encodePath(normalized.segments, normalized.trailingSlash) + url.search + url.hash);
  return path === undefined ? { ok: false, reason: `next ${shown} is not a path on this gateway` } : { ok: true, path, segments: normalized.segments };
}

/**
 * `next` as sent by the form. Accepted: an origin-form path (`/x/y?q`), and, with `own`, an `https://` URL
 * of one of the gateway's own origins on the request's port (no userinfo, no trailing dot); it comes back
 * split into `origin` (absent when it is the request's own) and `path`. Both after the router's
 * normalization (`//`, `.`, `..` resolved, encoded separators refused), rebuilt by the gateway. Everything
 * else is refused: whatever a browser could read as another host (`//evil`, `/\evil`, `https:evil`,
 * userinfo, encoded slashes, other schemes), whitespace, controls and non-ASCII.
 */
export function nextTarget(next: string | null | undefined, own?: OwnOrigins): NextTarget {
  if (next === null || next === undefined || next === '') return { ok: true, path: PORTAL_PATH };
  if (next.length > 2048) return { ok: false, reason: `next is ${next.length} characters long` };
  const shown = JSON.stringify(next.slice(0, 200));
  const refused = (why = 'is not a path on this gateway'): NextTarget => ({ ok: false, reason: `next ${shown} ${why}` });
  if (!VISIBLE_ASCII.test(next)) return refused();
  const absolute = /^https:\/\/[^/]/i.test(next);
  if (absolute ? own === undefined : !/^\/(?!\/)/.test(next)) return refused();
  let url: URL;
  try {
    url = new URL(next, SENTINEL);
  } catch {
    return refused('is not a URL');
  }
  const authority = absolute ? (next.slice('https://'.length).split(/[/?#]/, 1)[0] as string) : '';
  const rebuilt = rebuiltPath(next.slice(absolute ? 'https://'.length + authority.length : 0).split(/[?#]/, 1)[0] as string, url, shown);
  if (!rebuilt.ok) return rebuilt;
  if (!absolute) {
    // The parser a browser uses must agree: resolved against any origin, it stays on that origin.
    return url.origin === SENTINEL ? { ok: true, path: rebuilt.path } : refused('leaves the gateway');
  }
  if (url.protocol !== 'https:' || authority.includes('@') || url.username !== '' || url.password !== '') return refused('is not served by this gateway');
  if (url.hostname === '' || url.hostname.endsWith('.')) return refused('is not served by this gateway');
  if ((url.port || '443') !== portOf(own?.hostHeader)) return refused('is on another port');
  // The request's own origin: a path here, whatever its spelling.
  const here = own?.hostHeader === undefined ? undefined : safeUrl(`https://${own.hostHeader}`);
  if (here !== undefined && here.host === url.host) return { ok: true, path: rebuilt.path };
  if (!own?.serves(url.hostname, rebuilt.segments)) return refused('is not served by this gateway');
  return { ok: true, origin: url.origin, path: rebuilt.path };
}

function safeUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}
