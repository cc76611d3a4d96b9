// The three tunnel ways in (CONNECT, the WebSocket tunnel endpoint, a proxied WebSocket) as the exchange
// stage drives them: the deny record, refusals on the raw socket, the identity's tunnel slot, then carrying.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AuditRecord } from '../audit/auditRecord.ts';
import { auditTokenOf } from '../audit/auditToken.ts';
import type { Refused } from '../exchange/admit.ts';
import type { Exchange } from '../exchange/exchange.ts';
import type { DecisionAsks, WayIn } from '../exchange/wayIn.ts';
import type { CredentialSource } from '../session/requestCredential.ts';
import { refuse, type Refusal } from '../errors/refusal.ts';
import { redactTarget } from './redactTarget.ts';
import { sendRefusalOnSocket } from './refusals.ts';
import { openTunnel, type AdmittedTunnel, type TunnelDeps, type TunnelRequestFields } from './tunnelSession.ts';

/** One raw way in's arrival (a tunnel, a UDP flow over HTTP/1.1 or HTTP/2): the state the exchange stage hands each step. */
export interface RawArrival {
  req: { headers: IncomingHttpHeaders; method?: string | undefined; url?: string | undefined };
  /** The client's connection (HTTP/1.1) or stream (HTTP/2). */
  socket: Duplex;
  /** What the route decision is made on. */
  ask: DecisionAsks['route'];
  fields: TunnelRequestFields;
  /** The header fields that may carry the credential, in order. */
  tokenHeaders: CredentialSource[];
  /** How a refusal is answered, when not as a status line on the raw socket (an HTTP/2 stream's HEADERS). */
  answer?(refusal: Refusal): void;
}

/** One tunnel's arrival: an HTTP/1.1 request that left HTTP parsing. */
export interface TunnelArrival extends RawArrival {
  req: IncomingMessage;
  head: Buffer;
}

/** Answers a refusal on the arrival's transport. */
export function answerRefusal(t: RawArrival, refusal: Refusal): void {
  if (t.answer) t.answer(refusal);
  else sendRefusalOnSocket(t.socket, refusal);
}

/** What a tunnel way in adds to the shared steps: its arrival, its early checks and how it carries bytes. */
export interface TunnelCarrier<A extends unknown[], S extends RawArrival> {
  arrive(...args: A): S;
  screen?(state: S): Refused | undefined;
  carry(state: S, tunnel: AdmittedTunnel): void | Promise<void>;
}

/** A request malformed before admission can look at it: its record's target is redacted like any other. */
export function malformed(refusal: Refusal, fields: Omit<TunnelRequestFields, 'transport'>): Refused {
  return { refusal, record: { ...fields, ...(fields.target !== undefined && { target: redactTarget(fields.target) }) } };
}

/** Answers on the socket and closes the exchange with its deny record, within the client's budgets. */
export function closeRefused(t: RawArrival, exchange: Exchange, refusal: Refusal, extra: Partial<AuditRecord> = {}): void {
  answerRefusal(t, refusal);
  // A client's own refusals (4xx, 429s under a limit) are recorded within its budgets, so they cannot fill the audit disk.
  exchange.close({ decision: 'deny', status: refusal.status, durationMs: exchange.elapsedMs(), reason: refusal.reason, ...extra, detail: { transport: t.fields.transport } }, 'refused');
}

/** A recorded target that is the path itself is not written twice. */
function dropTargetWhenPath(t: RawArrival, exchange: Exchange, path: string | undefined): void {
  if (path !== undefined && path === t.fields.target) delete exchange.base.target;
}

/** A tunnel way in: admission once per tunnel, then the carrier's own transport. */
export function tunnelWayIn<A extends unknown[], S extends TunnelArrival>(deps: TunnelDeps, carrier: TunnelCarrier<A, S>): WayIn<A, S, 'route'> {
  return rawWayIn(deps, carrier, (t, exchange, admitted) => {
    const admission = admitted.decided;
    dropTargetWhenPath(t, exchange, admission.path);
    const token = auditTokenOf(admission.decision);
    if (!deps.tunnels.accepting || t.socket.destroyed) {
      return closeRefused(t, exchange, refuse('GH_DRAINING', t.socket.destroyed ? 'client left during admission' : 'gateway shutting down'), { route: admission.route.config.name, token });
    }
    // Tunnels hold resources for hours: each identity (the token's user) may hold only so many at once.
    const slot = deps.identityLimits.reserveTunnel(admission.decision.user);
    if (!slot.ok) return closeRefused(t, exchange, refuse('GH_RATE_LIMITED', slot.reason, { headers: { 'retry-after': slot.retryAfterSeconds } }), { route: admission.route.config.name, token });
    return carrier.carry(t, openTunnel(deps, { exchange, socket: t.socket, admission, release: () => slot.release(), transport: t.fields.transport, token }));
  });
}

/**
 * The steps every raw way in (a tunnel, a UDP flow) shares up to carrying: its records' fields, the drain
 * check, the credential and decision, refusals on the raw socket; `carry` takes the admitted exchange.
 */
export function rawWayIn<A extends unknown[], S extends RawArrival>(deps: TunnelDeps, carrier: Omit<TunnelCarrier<A, S>, 'carry'>, carry: WayIn<A, S, 'route'>['carry']): WayIn<A, S, 'route'> {
  return {
    stage: deps,
    decides: 'route',
    arrive: (...args) => carrier.arrive(...args),
    ...(carrier.screen && { screen: (t: S) => carrier.screen?.(t) }),
    opens(t) {
      const { transport: _transport, ...requestFields } = t.fields;
      if (requestFields.target !== undefined) requestFields.target = redactTarget(requestFields.target);
      return { event: 'request', ...requestFields };
    },
    precheck: () => (deps.tunnels.accepting ? undefined : { refusal: refuse('GH_DRAINING', 'gateway shutting down'), record: {} }),
    // Opening a tunnel is a request too: it spends the certificate's request rate.
    // A page of another origin can open a WebSocket with the user's cookie (cross-site WebSocket hijacking).
    credential: (t) => ({ headers: t.req.headers, method: t.fields.method, maxTokenBytes: deps.limits().maxTokenBytes, sources: t.tokenHeaders, websocket: true }),
    decideOn: (t) => t.ask,
    answer: answerRefusal,
    refuse(t, exchange, { refusal, record }) {
      const { path, route, token } = record;
      dropTargetWhenPath(t, exchange, path);
      // Early refusals add nothing; admission's add its route, token and path (undefined ones are not written).
      closeRefused(t, exchange, refusal, 'token' in record ? { route, token, ...(path !== undefined && { path }) } : {});
    },
    carry,
  };
}
