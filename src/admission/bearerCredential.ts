// Reads the bearer token a request presents (Authorization, or for CONNECT Proxy-Authorization), with a
// size bound checked before anything parses it: an oversized token is refused, not decoded.
import type { IncomingHttpHeaders } from 'node:http';
import { refuse, type Refusal } from '../errors/refusal.ts';

export type BearerCredential =
  | { kind: 'none' }
  | { kind: 'token'; token: string }
  /** Present but unusable: too large, or more than one. */
  | { kind: 'invalid'; refusal: Refusal };

const BEARER = /^Bearer[ \t]+([A-Za-z0-9_\-=+/.]+)[ \t]*$/i;

/** The bearer token from the first of `names` that carries one. */
export function bearerCredential(headers: IncomingHttpHeaders, maxTokenBytes: number, ...names: Array<'authorization' | 'proxy-authorization'>): BearerCredential {
  for (const name of names) {
    const value = headers[name];
    if (typeof value !== 'string') continue;
    // Measured before the token is matched or parsed; the scheme and spaces get a little slack.
    const tooLarge = (bytes: number) => ({ kind: 'invalid' as const, refusal: refuse('GH_TOKEN_TOO_LARGE', `token too large: ${bytes} bytes in ${name}, over limits.maxTokenBytes (${maxTokenBytes})`) });
    if (value.length > maxTokenBytes + 64) return tooLarge(value.length);
    const m = BEARER.exec(value);
    if (m && (m[1] as string).length > maxTokenBytes) return tooLarge((m[1] as string).length);
    if (m) return { kind: 'token', token: m[1] as string };
  }
  return { kind: 'none' };
}

/** The token alone, for callers that have already refused invalid credentials. */
export function tokenOf(credential: BearerCredential): string | undefined {
  return credential.kind === 'token' ? credential.token : undefined;
}
