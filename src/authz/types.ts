// The authorization stage's contract: what a forwarder hands in (token + request facts + route
// policy) and the decision it gets back. Forwarders never touch biscuit-wasm directly.
import type { Protocol, RunLimits } from '../config/schema.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';

/** Everything the gateway knows about one request; becomes the authorizer facts of the README. */
export interface RequestFacts {
  time: Date;
  /** Absent when publishing (no route is involved). */
  route?: string;
  /** `publish` when a publisher registers its services. */
  protocol: Protocol | 'publish';
  method?: string;
  host?: string;
  /** Normalized request path. */
  path?: string;
  /** Route template captures, e.g. { user: 'alice', service: 'jupyter' }. */
  params: Record<string, string>;
  sourceIp: string;
  client: PeerIdentity;
  /** The service a publisher registers (`service(name)`). */
  service?: string;
  /** Certificate fingerprint of the publisher a published upstream is reached through (`publisher_fingerprint(fp)`). */
  publisherFingerprint?: string;
}

/** The route-specific part of authorization. */
export interface RoutePolicy {
  name: string;
  /** Datalog checks and allow/deny policies from routes.yaml. */
  policy: string;
  limits: RunLimits;
}

export type Decision =
  | {
      allow: true;
      user: string;
      groups: string[];
      revocationIds: string[];
      /** The allow policy that matched, as Datalog source. */
      matched: string;
    }
  | {
      allow: false;
      /** 401: no/unparsable/badly signed token; 403: revoked or policy denial; 503: cannot decide. */
      status: 401 | 403 | 503;
      /** Short, safe for the client: never internals. */
      clientReason: string;
      /** Full reason for the audit log: the failing checks or policy, the parse error. */
      reason: string;
      user?: string;
      revocationIds?: string[];
    };

export interface RequestAuthorizer {
  /** `token` is the base64url Biscuit from the request, or undefined when none was sent. */
  authorize(token: string | undefined, route: RoutePolicy, facts: RequestFacts): Promise<Decision>;
  close(): Promise<void>;
}
