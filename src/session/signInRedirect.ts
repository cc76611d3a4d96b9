// A browser that reaches a route without a working session is sent to the sign-in page, which brings
// it back afterwards; programs (anything not navigating to an HTML page) get the plain refusal.
import type { IncomingMessage } from 'node:http';
import { encodePath, normalizeTarget } from '../routing/normalizePath.ts';
import { nextTarget, PORTAL_PATH } from '../portal/nextTarget.ts';

/** The sign-in URL for a top-level GET navigation, or undefined for anything else. */
export function signInRedirect(req: IncomingMessage): string | undefined {
  if (req.method !== 'GET') return undefined;
  const mode = req.headers['sec-fetch-mode'];
  const navigating = mode === undefined ? (req.headers.accept ?? '').includes('text/html') : mode === 'navigate';
  if (!navigating) return undefined;
  // `next` is the path as the router read it (`//a//b` is `/a/b`), in a form the sign-in accepts.
  const target = normalizeTarget(req.url ?? '/');
  const next = target.ok ? nextTarget(encodePath(target.segments, target.trailingSlash) + target.query) : undefined;
  return next?.ok ? `${PORTAL_PATH}?next=${encodeURIComponent(next.path)}` : undefined;
}
