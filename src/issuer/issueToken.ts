// Minting after a login: the claim rules decide what the token carries, and the issuer's key (never
// the root key) signs it, bound to the certificate presented at login, with the IdP identity as facts.
import { expiryAfter } from '../token/duration.ts';
import { randomBytes } from 'node:crypto';
import { mintToken, type IssuedLogin } from '../token/mintToken.ts';
import { readTokenEnvelope } from '../token/tokenEnvelope.ts';
import { decideGrant, type Grant, type GrantInput, type IssueRefusal } from './claimGrant.ts';
import type { IssuerKey } from './issuerKey.ts';

export interface IssueInput extends GrantInput {
  key: IssuerKey;
  /**
   * Makes the token delegable with this public key (`ed25519/<hex>`), whose private half the user's client
   * generated and keeps: the holder can then lend it to another certificate (`token attenuate --delegate-to`).
   */
  delegationKey?: string;
  /** A refresh: the login the refreshed token came from (its id, time and lifetime); absent = a new login now. */
  login?: IssuedLogin;
}

export interface IssuedToken {
  token: string;
  /** The authority block's revocation id (lowercase hex): what `token revoke` and every request record name. */
  revocationId: string;
  expiresAt: Date;
  grant: Grant;
  /** `sha256:<hex>` of the certificate the token is bound to. */
  fingerprint: string;
  signer: string;
  /** The login it belongs to (`login_id`, `login_time`, ... facts): what refresh and logout go by. */
  login: IssuedLogin;
}

export type IssueResult = { ok: true; issued: IssuedToken } | { ok: false; refusal: IssueRefusal; claimsUsed: Record<string, unknown>; rules: string[] };

export function issueToken(input: IssueInput): IssueResult {
  const decided = decideGrant(input);
  if (!decided.ok) return decided;
  const { grant } = decided;
  const fingerprint = input.certificate.fingerprint;
  const sessionEnd = input.login?.idpSessionEnd ?? input.idpSessionEndsAt;
  const login: IssuedLogin = {
    id: input.login?.id ?? randomBytes(16).toString('hex'),
    // Whole seconds, as the token's Datalog date says it: what the client is told and what a refresh reads agree.
    time: input.login?.time ?? new Date(Math.floor(input.now.getTime() / 1000) * 1000),
    lifetimeSeconds: input.login?.lifetimeSeconds ?? grant.ttlSeconds,
    ...(sessionEnd !== undefined && { idpSessionEnd: sessionEnd }),
  };
  const minted = mintToken({
    privateKey: input.key.privateKey,
    rootKeyId: input.key.keyId,
    user: grant.user,
    groups: grant.groups,
    ttlSeconds: grant.ttlSeconds,
    clientFingerprint: fingerprint,
    idp: grant.idp,
    now: input.now,
    login,
    ...(grant.routes !== undefined && { routes: grant.routes }),
    ...(grant.publish !== undefined && { publish: grant.publish }),
    ...(input.delegationKey !== undefined && { delegationKey: input.delegationKey }),
  });
  const mintFailed = (reason: string): IssueResult => ({ ok: false, refusal: { code: 'mint-failed', clientReason: 'cannot issue a token now', reason }, claimsUsed: grant.claimsUsed, rules: grant.rules });
  if (!minted.ok) return mintFailed(`cannot mint: ${minted.error.message}`);
  // Read back from the token just made (no signature to check: it never left this function).
  const envelope = readTokenEnvelope(minted.value);
  const revocationId = envelope.ok ? envelope.value.revocationIds[0] : undefined;
  if (revocationId === undefined) return mintFailed('the minted token has no authority block');
  return { ok: true, issued: { token: minted.value, revocationId, expiresAt: expiryAfter(input.now, grant.ttlSeconds), grant, fingerprint, signer: input.key.name, login } };
}
