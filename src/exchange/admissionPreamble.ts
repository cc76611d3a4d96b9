// The checks every way in makes before admission proper, in this order: the audit log can record, the
// certificate is within its request rate, the credential is readable (and a session's origin is its own).
import type { IncomingHttpHeaders } from 'node:http';
import type { AuditLog } from '../audit/auditLog.ts';
import { bearerCredential } from '../admission/bearerCredential.ts';
import { holdRefusal, type IdentityLimits } from '../admission/identityLimits.ts';
import { requestCredential, sessionOriginCheck, type CredentialSource, type RequestCredential } from '../session/requestCredential.ts';
import { refuse, type Refusal } from '../errors/refusal.ts';
import type { Exchange } from './exchange.ts';

/** The gateway admits nothing it cannot record. */
export function auditUnavailable(audit: Pick<AuditLog, 'healthy' | 'lastError'>): Refusal | undefined {
  if (audit.healthy) return undefined;
  return refuse('GH_AUDIT_UNAVAILABLE', `audit log unavailable: ${audit.lastError ?? 'unknown error'}`);
}

/**
 * Spends one of the certificate's requests; checked before the token, so a flood of bad tokens costs one
 * bucket. Within the rate it returns undefined at once (an admitted request takes no extra turn); over it,
 * the refusal once its hold is over (a client cannot make the gateway answer refusals at its own pace).
 */
export function overRequestRate(limits: IdentityLimits, exchange: Exchange): Promise<Refusal> | undefined {
  const rate = limits.takeRequest(exchange.conn.identity.fingerprint);
  if (rate.ok) return undefined;
  return holdRefusal(rate).then(() => refuse('GH_RATE_LIMITED', rate.reason, { headers: { 'retry-after': rate.retryAfterSeconds } }));
}

/** What the credential check needs to know of the request. */
export interface CredentialAsk {
  headers: IncomingHttpHeaders;
  method: string;
  maxTokenBytes: number;
  /** The header fields that may carry it, in order. */
  sources: CredentialSource[];
  /** A WebSocket handshake: a page of another origin can open one with the user's cookie. */
  websocket: boolean;
  /** Programs only (publishers): a bearer token alone, and the records name no `auth`. */
  bearerOnly?: boolean;
}

/**
 * Reads the request's credential; its kind (bearer or session) goes into every later record of the
 * exchange. An unreadable one, or a session cookie sent from another origin, is refused.
 */
export function readCredential(exchange: Exchange, ask: CredentialAsk): { ok: true; credential: RequestCredential } | { ok: false; refusal: Refusal } {
  const credential: RequestCredential = ask.bearerOnly ? bearerCredential(ask.headers, ask.maxTokenBytes, 'authorization') : requestCredential(ask.headers, ask.maxTokenBytes, ask.sources);
  if (credential.auth) exchange.base.auth = credential.auth;
  if (credential.kind === 'invalid') return { ok: false, refusal: credential.refusal };
  if (credential.auth === 'session') {
    const origin = sessionOriginCheck(ask.headers, ask.method, ask.websocket);
    if (!origin.ok) return { ok: false, refusal: refuse('GH_CROSS_ORIGIN', origin.reason) };
  }
  return { ok: true, credential };
}
