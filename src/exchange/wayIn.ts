// A way in (HTTP, WebSocket, CONNECT, the tunnel endpoint, publish registration, a gateway page) as the
// exchange stage drives it: the way in says what its admission asks, how it refuses and how it carries.
import type { IncomingMessage } from 'node:http';
import type { AuditRecord } from '../audit/auditRecord.ts';
import type { AdmissionContext, AdmissionRequest } from '../admission/admitRequest.ts';
import type { PublisherAdmission, PublisherRequest } from '../admission/admitPublisher.ts';
import type { Decision } from '../authz/types.ts';
import type { PublishConfig, RunLimits } from '../config/schema.ts';
import type { Refusal } from '../errors/refusal.ts';
import type { RequestCredential } from '../session/requestCredential.ts';
import type { CredentialAsk } from './admissionPreamble.ts';
import type { AdmitDeps, Refused, RouteAdmission } from './admit.ts';
import type { Exchange, ExchangeSinks } from './exchange.ts';

/** What the exchange stage reads and writes for a way in: its records' sinks, the audit health and limits, the admission context. */
export interface ExchangeStage extends Pick<ExchangeSinks, 'refusals'>, Pick<AdmitDeps, 'identityLimits'> {
  audit: ExchangeSinks['audit'] & AdmitDeps['audit'];
  /** Read per exchange, so a config reload takes effect for the next one. */
  admission: () => AdmissionContext;
}

/** A publisher's registration as decided: re-authorized on the way (an expired or withdrawn token ends it). */
export interface PublisherDecided {
  decision: Extract<Decision, { allow: true }>;
  /** The request it was admitted with (the token it brought). */
  request: PublisherRequest;
  /** Authorizes the same registration again under the current config. */
  reauthorize(): Promise<PublisherAdmission>;
}

/** What a way in's decision is made on, by the kind of decision. */
export interface DecisionAsks {
  /** A route: route -> Biscuit decision -> upstream (identity and source address are the exchange's). */
  route: Omit<AdmissionRequest, 'token' | 'identity' | 'sourceIp'>;
  /** The publish policy, read again on each re-authorization, for these services. */
  publish: { services: readonly string[]; policy: () => { publish: PublishConfig | undefined; limits: RunLimits } };
  /** No decision here (gateway pages decide themselves). */
  none: undefined;
}

/** What an admitted exchange carries, by the kind of decision. */
export interface Decisions {
  route: RouteAdmission;
  publish: PublisherDecided;
  none: undefined;
}

export type DecisionKind = keyof Decisions;

export interface Admitted<T> {
  credential: RequestCredential | undefined;
  decided: T;
}

/**
 * A way in, made once per forwarder; `S` is the state of one arrival (made by `arrive`, holding its
 * request and socket), which every method is handed instead of a closure per request.
 */
export interface WayIn<A extends unknown[], S, K extends DecisionKind> {
  readonly stage: ExchangeStage;
  readonly decides: K;
  /** The state of one arrival, from what the listener handed over. */
  arrive(...args: A): S;
  /** Checks before any request is counted (a malformed CONNECT target): refused with a record naming the connection only. */
  screen?(state: S): Refused | undefined;
  /** The fields every record of the exchange starts with. */
  opens(state: S): Partial<AuditRecord>;
  /** The exchange is open, admission about to start. */
  opened?(state: S, exchange: Exchange): void;
  /** The way in's own checks, before the request spends any of the certificate's rate. */
  precheck?(state: S): Refused | undefined;
  /** The credential admission reads, if any. */
  credential?(state: S): CredentialAsk;
  /** What the decision is made on (after precheck). */
  decideOn(state: S): DecisionAsks[K];
  /** The request a browser navigated with, when a 401 should send it to sign in instead. */
  signInFrom?(state: S): IncomingMessage | undefined;
  /** Answers a refusal on the way in's transport (HTTP response, raw socket status line). */
  answer(state: S, refusal: Refusal): void;
  /** A refusal of an open exchange: answers it and closes the exchange with the deny record. */
  refuse(state: S, exchange: Exchange, refused: Refused): void;
  /** Carries an admitted exchange; it closes the exchange when done. */
  carry(state: S, exchange: Exchange, admitted: Admitted<Decisions[K]>): void | Promise<void>;
}
