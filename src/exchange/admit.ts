// The one admission pipeline every way in goes through: the audit log can record -> the way in's own checks
// (shutdown, request shape, registration) -> request rate -> credential (and origin) -> the decision.
import type { AuditRecord } from '../audit/auditRecord.ts';
import type { AuditLog } from '../audit/auditLog.ts';
import type { IdentityLimits } from '../admission/identityLimits.ts';
import { admitRequest, type Admission } from '../admission/admitRequest.ts';
import { admitPublisher } from '../admission/admitPublisher.ts';
import { tokenOf } from '../admission/bearerCredential.ts';
import { auditTokenOf, publisherTokenOf } from '../audit/auditToken.ts';
import { refuse, type Refusal } from '../errors/refusal.ts';
import type { RequestCredential } from '../session/requestCredential.ts';
import { auditUnavailable, overRequestRate, readCredential } from './admissionPreamble.ts';
import type { Exchange } from './exchange.ts';
import type { Admitted, DecisionAsks, DecisionKind, Decisions, ExchangeStage, WayIn } from './wayIn.ts';

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

export type RouteAdmission = Extract<Admission, { allow: true }>;

const refused = (refusal: Refusal, record: Partial<AuditRecord> = {}) => ({ ok: false as const, error: { refusal, record } });

/**
 * A connection being ended (a CRL reload revoked its certificate, or it expired) is admitted nothing new while
 * what already runs on it gets its grace to write close records: its certificate no longer holds.
 */
function connectionEnding(exchange: Exchange): Refusal | undefined {
  const { endedBy } = exchange.conn;
  return endedBy === undefined ? undefined : refuse('GH_DENIED', endedBy, { clientReason: 'this connection is closing: its client certificate no longer holds' });
}

type Decider<K extends DecisionKind> = (stage: ExchangeStage, exchange: Exchange, on: DecisionAsks[K], token: string | undefined) => Promise<Result<Decisions[K], Refused>>;

const deciders: { [K in DecisionKind]: Decider<K> } = {
  /** A route way in (HTTP, WebSocket, CONNECT, the tunnel endpoint): route -> authorize -> inspect upstream. */
  async route(stage, exchange, on, token) {
    const admission = await admitRequest(stage.admission(), { ...on, identity: exchange.conn.identity, sourceIp: exchange.conn.sourceIp, token });
    if (admission.allow) return { ok: true, value: admission };
    return refused(admission.refusal, { route: admission.route?.config.name, path: admission.path, token: auditTokenOf(admission.decision) });
  },
  /** A publisher's registration: the publish policy, for every service it names. */
  async publish(stage, exchange, on, token) {
    const request = { identity: exchange.conn.identity, sourceIp: exchange.conn.sourceIp, token, services: on.services };
    const reauthorize = () => {
      const { publish, limits } = on.policy();
      return admitPublisher(stage.admission().authorizer, publish, limits, request);
    };
    const admission = await reauthorize();
    if (admission.allow) return { ok: true, value: { decision: admission.decision, request, reauthorize } };
    return refused(admission.refusal, { token: publisherTokenOf(admission.decision) });
  },
  none: async () => ({ ok: true, value: undefined }),
};

/**
 * Runs the stages in order and stops at the first refusal. An admitted request takes no extra turn
 * before its decision; an over-rate one is refused once its hold is over (see overRequestRate).
 */
export async function admit<A extends unknown[], S, K extends DecisionKind>(exchange: Exchange, way: WayIn<A, S, K>, state: S): Promise<Result<Admitted<Decisions[K]>, Refused>> {
  const { stage } = way;
  const unavailable = auditUnavailable(stage.audit) ?? connectionEnding(exchange);
  if (unavailable) return refused(unavailable);
  const early = way.precheck?.(state);
  if (early) return { ok: false, error: early };
  const overRate = overRequestRate(stage.identityLimits, exchange);
  if (overRate) return refused(await overRate);
  let credential: RequestCredential | undefined;
  const ask = way.credential?.(state);
  if (ask) {
    const read = readCredential(exchange, ask);
    if (!read.ok) return refused(read.refusal);
    credential = read.credential;
  }
  const decide = deciders[way.decides] as Decider<K>;
  const decided = await decide(stage, exchange, way.decideOn(state), credential && tokenOf(credential));
  if (!decided.ok) return decided;
  // The decision took turns: the connection may have been ended meanwhile.
  const ending = connectionEnding(exchange);
  if (ending) return refused(ending);
  return { ok: true, value: { credential, decided: decided.value } };
}
