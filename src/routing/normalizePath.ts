// Turns a request target into the one canonical path that routing, authorization and the upstream
// all see, so that no encoding trick can match one route and reach another.
/** C0 and C1 controls, DEL, and the Unicode line separators (and, once decoded, the separators). */
// eslint-disable-next-line no-control-regex
const FORBIDDEN_DECODED = /[/\\\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
// eslint-disable-next-line no-control-regex
const FORBIDDEN_RAW = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
/** Characters encodeURIComponent leaves as they are (plus `@`, which encodePath puts back). */
const KEPT_AS_IS = /^[A-Za-z0-9\-_.!~*'()@]*$/;

export type NormalizedTarget =
  | { ok: true; path: string; segments: string[]; trailingSlash: boolean; query: string }
  | { ok: false; reason: string };

/**
 * Decodes percent-escapes per segment, drops `.` segments, resolves `..`, collapses duplicate slashes.
 * Refused outright (never "fixed"): non origin-form targets, bad escapes, encoded `/` or `\`, NUL and
 * control characters, and `..` that would climb above the root. Refusing is safer than guessing which
 * reading a given upstream would use.
 */
export function normalizeTarget(target: string): NormalizedTarget {
  if (!target.startsWith('/')) return { ok: false, reason: 'request target is not origin-form' };
  const q = target.indexOf('?');
  const rawPath = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q);
  if (rawPath.includes('\\')) return { ok: false, reason: 'backslash in path' };

  const segments: string[] = [];
  const raw = rawPath.split('/');
  // Most paths carry no escape and no control character: checked once for the whole path, their
  // segments need no decoding and no check of their own (the result is the same, only cheaper).
  const plain = !rawPath.includes('%') && !FORBIDDEN_RAW.test(rawPath);
  for (let i = 1; i < raw.length; i++) {
    const part = raw[i] as string;
    if (part === '') continue;
    let decoded: string;
    try {
      decoded = plain ? part : decodeURIComponent(part);
    } catch {
      return { ok: false, reason: `malformed percent-encoding in path segment ${JSON.stringify(part)}` };
    }
    // C0 and C1 controls, DEL, and the Unicode line separators: none belongs in a path, and some
    // upstreams (or their logs) treat them as line breaks.
    if (!plain && FORBIDDEN_DECODED.test(decoded)) {
      return { ok: false, reason: `encoded separator or control character in path segment ${JSON.stringify(part)}` };
    }
    if (decoded === '.') continue;
    if (decoded === '..') {
      if (segments.length === 0) return { ok: false, reason: 'path climbs above the root' };
      segments.pop();
      continue;
    }
    segments.push(decoded);
  }
  const lastRaw = raw[raw.length - 1];
  const trailingSlash = segments.length > 0 && (lastRaw === '' || lastRaw === '.' || lastRaw === '..');
  const path = '/' + segments.join('/') + (trailingSlash ? '/' : '');
  return { ok: true, path, segments, trailingSlash, query };
}

/** Re-encodes decoded segments for the upstream request line. */
export function encodePath(segments: readonly string[], trailingSlash: boolean): string {
  const body = segments.map((s) => (KEPT_AS_IS.test(s) ? s : encodeURIComponent(s).replace(/%40/g, '@').replace(/%7E/gi, '~'))).join('/');
  return '/' + body + (trailingSlash && segments.length > 0 ? '/' : '');
}
