// The one admission pipeline every way in calls: the audit log can record -> the way in's own checks
// (shutdown, request shape, registration) -> request rate -> credential (and origin) -> the decision.
import type { AuditRecord } from '../audit/auditRecord.ts';
import type { AuditLog } from '../audit/auditLog.ts';
import type { IdentityLimits } from '../admission/identityLimits.ts';
import { admitRequest, type Admission, type AdmissionContext, type AdmissionRequest } from '../admission/admitRequest.ts';
import { tokenOf } from '../admission/bearerCredential.ts';
import { auditTokenOf } from '../audit/auditToken.ts';
import type { Refusal } from '../errors/refusal.ts';
import type { RequestCredential } from '../session/requestCredential.ts';
import { auditUnavailable, overRequestRate, readCredential, type CredentialAsk } from './admissionPreamble.ts';
import type { Exchange } from './exchange.ts';

export type Result<T, E> = { ok: true; value: T } | { ok: false; error: E };

/** A refusal and the fields its deny record adds to the exchange's base (route, path, token, detail). */
export interface Refused {
  refusal: Refusal;
  record: Partial<AuditRecord>;
}

export interface AdmitDeps {
  audit: Pick<AuditLog, 'healthy' | 'lastError'>;
  identityLimits: IdentityLimits;
}

/** What a way in asks of the pipeline; what it leaves out is not checked (gateway pages read no credential and decide themselves). */
export interface AdmissionAsk<T> {
  /** The way in's own checks, before the request spends any of the certificate's rate. */
  precheck?: () => Refused | undefined;
  credential?: CredentialAsk;
  /** The decision proper, on the request's token. */
  decide?: (token: string | undefined) => Promise<Result<T, Refused>>;
}

export interface Admitted<T> {
  credential: RequestCredential | undefined;
  decided: T;
}

const refused = (refusal: Refusal, record: Partial<AuditRecord> = {}) => ({ ok: false as const, error: { refusal, record } });

/**
 * Runs the stages in order and stops at the first refusal. An admitted request takes no extra turn
 * before its decision; an over-rate one is refused once its hold is over (see overRequestRate).
 */
export async function admit<T = undefined>(exchange: Exchange, deps: AdmitDeps, ask: AdmissionAsk<T>): Promise<Result<Admitted<T>, Refused>> {
  const unavailable = auditUnavailable(deps.audit);
  if (unavailable) return refused(unavailable);
  const early = ask.precheck?.();
  if (early) return { ok: false, error: early };
  const overRate = overRequestRate(deps.identityLimits, exchange);
  if (overRate) return refused(await overRate);
  let credential: RequestCredential | undefined;
  if (ask.credential) {
    const read = readCredential(exchange, ask.credential);
    if (!read.ok) return refused(read.refusal);
    credential = read.credential;
  }
  if (!ask.decide) return { ok: true, value: { credential, decided: undefined as T } };
  const decided = await ask.decide(credential && tokenOf(credential));
  if (!decided.ok) return decided;
  return { ok: true, value: { credential, decided: decided.value } };
}

export type RouteAdmission = Extract<Admission, { allow: true }>;

/** The decision of a route way in (HTTP, WebSocket, CONNECT, the tunnel endpoint): route -> authorize -> inspect upstream. */
export function onRoute(ctx: AdmissionContext, request: Omit<AdmissionRequest, 'token'>): (token: string | undefined) => Promise<Result<RouteAdmission, Refused>> {
  return async (token) => {
    const admission = await admitRequest(ctx, { ...request, token });
    if (admission.allow) return { ok: true, value: admission };
    return refused(admission.refusal, { route: admission.route?.config.name, path: admission.path, token: auditTokenOf(admission.decision) });
  };
}
