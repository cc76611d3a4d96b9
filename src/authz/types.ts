// The authorization stage's contract: what a forwarder hands in (token + request facts + route
// policy) and the decision it gets back. Forwarders never touch biscuit-wasm directly.
import type { Refusal } from '../errors/refusal.ts';
import type { Protocol, RunLimits } from '../config/schema.ts';
import type { TokenCheck } from '../session/sessionToken.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import type { IdpIdentity } from '../token/issuedBy.ts';
import type { MintedSession } from './engine/workerProtocol.ts';

/** Everything the gateway knows about one request; becomes the authorizer facts of docs/reference/facts.md. */
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
  /** Who signed the token (`signer(name)`): `root` or a trusted issuer's name; set by the engine once the token verifies. */
  signer?: string;
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

/** What a block of a multi-block (attenuated, delegated) token is, for the audit record. */
export interface TokenBlock {
  index: number;
  /** `authority`: block 0, signed with the root key; `attenuation`: appended by whoever held the token; `third-party`: signed by `signer`. */
  role: 'authority' | 'attenuation' | 'third-party';
  /** Lowercase hex, as in `revocationIds`. */
  revocationId: string;
  /** Third-party blocks: the `authz.externalKeys` name of the signing key, else the key itself (`ed25519/<hex>`). */
  signer?: string;
  /** Third-party blocks signed by the delegation key the authority block names: a loan by the token's user. */
  delegation?: true;
  /** The client certificate the block's checks require (`check if client_fingerprint(...)` / `client_cn(...)`). */
  boundTo?: { fingerprint?: string; cn?: string };
}

/** Who signed a token other than the root key, and the IdP identity it was issued for (request records name both). */
export interface IssuedBy {
  /** The trusted issuer's name (`signer(...)`). */
  signer: string;
  /** The `idp_issuer` and `idp_subject` its authority block states. */
  idp?: IdpIdentity;
}

export type Decision =
  | {
      allow: true;
      user: string;
      groups: string[];
      revocationIds: string[];
      /** Tokens with more than one block only: what each block is (filled in by the main thread from its token cache). */
      blocks?: TokenBlock[];
      /** Tokens of a trusted issuer (not the root key): filled in by the main thread from its token cache. */
      issuedBy?: IssuedBy;
      /** The allow policy that matched, as Datalog source. */
      matched: string;
    }
  | ({
      allow: false;
      user?: string;
      revocationIds?: string[];
      blocks?: TokenBlock[];
      issuedBy?: IssuedBy;
    } & Refusal);

export interface RequestAuthorizer {
  /** `token` is the base64url Biscuit from the request, or undefined when none was sent. */
  authorize(token: string | undefined, route: RoutePolicy, facts: RequestFacts): Promise<Decision>;
  close(): Promise<void>;
}

/**
 * Authorization engine time per client certificate: charged after each call, checked before one is
 * queued (the gateway keeps it with the other per-identity limits, across reloads).
 */
export interface EngineBudget {
  charge(fingerprint: string, ms: number): void;
  /** Why this certificate may not use the engine now (its budget is spent), or undefined. */
  refusal(fingerprint: string): string | undefined;
}

/**
 * Browser sign-in's token work, done by the authorization workers (biscuit-wasm memory used in the
 * main thread is never returned), queued and charged to the certificate like an authorization.
 */
export interface SessionTokens {
  /** Verifies a token for this certificate now: signature, revocation, expiry, the checks sign-in can judge. */
  verify(token: string, identity: PeerIdentity, sourceIp: string): Promise<TokenCheck>;
  /** The session token: `token` with the gateway's session block (certificate, end, protocols, optional host). */
  mint(token: string, fingerprint: string, expiresAt: Date, host?: string): Promise<MintedSession>;
}

/** What the main thread learns about a token the first time a worker verifies it. */
export type TokenInfo =
  | {
      valid: true;
      revocationIds: string[];
      /** Earliest expiry (ms since epoch) stated by a standard time check; only ever used to shorten cache life. */
      expiresAt?: number;
      /** Multi-block tokens: role, signer and bound certificate of each block (the main thread caches it with the token). */
      blocks?: TokenBlock[];
      /** Tokens of a trusted issuer: its name and the IdP identity (cached with the token like `blocks`). */
      issuedBy?: IssuedBy;
    }
  | { valid: false; reason: string };
