// Reads the bearer token a request presents (Authorization, or for CONNECT Proxy-Authorization), with a
// size bound checked before anything parses it: an oversized token is refused, not decoded.
import type { IncomingHttpHeaders } from 'node:http';

export type BearerCredential =
  | { kind: 'none' }
  | { kind: 'token'; token: string }
  /** Present but unusable: too large, or more than one. The reason is for the audit log. */
  | { kind: 'invalid'; clientReason: string; reason: string };

const BEARER = /^Bearer[ \t]+([A-Za-z0-9_\-=+/.]+)[ \t]*$/i;

/** The bearer token from the first of `names` that carries one. */
export function bearerCredential(headers: IncomingHttpHeaders, maxTokenBytes: number, ...names: Array<'authorization' | 'proxy-authorization'>): BearerCredential {
  for (const name of names) {
    const value = headers[name];
    if (typeof value !== 'string') continue;
    if (value.length > maxTokenBytes + 16) return { kind: 'invalid', clientReason: 'token too large', reason: `${name} is ${value.length} bytes, over limits.maxTokenBytes (${maxTokenBytes})` };
    const m = BEARER.exec(value);
    if (m) return { kind: 'token', token: m[1] as string };
  }
  return { kind: 'none' };
}

/** The token alone, for callers that have already refused invalid credentials. */
export function tokenOf(credential: BearerCredential): string | undefined {
  return credential.kind === 'token' ? credential.token : undefined;
}
