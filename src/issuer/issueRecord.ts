// The `token.issue` audit record of one issuance or refusal: the IdP issuer and subject, the claims the
// rules read, the rules that applied, the token's revocation id, the certificate and the lifetime.
import { auditClient, type AuditRecord } from '../audit/auditRecord.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import type { IssueResult } from './issueToken.ts';

export interface IssueRecordInput {
  result: IssueResult;
  certificate: PeerIdentity;
  /** `ip:port` of the client that logged in. */
  source?: string;
  /** How the login ran: `device` (RFC 8628), `code` (browser, PKCE), or `refresh` (a new token for a still-valid one). */
  flow?: 'device' | 'code' | 'refresh';
}

export function issueRecord(input: IssueRecordInput): AuditRecord {
  const { result, certificate } = input;
  const base: AuditRecord = {
    event: 'token.issue',
    ...(input.source !== undefined && { source: input.source }),
    client: auditClient(certificate),
  };
  if (!result.ok) {
    return {
      ...base,
      decision: 'deny',
      reason: `${result.refusal.code}: ${result.refusal.reason}`,
      detail: { idp: { issuer: result.claimsUsed.iss, subject: result.claimsUsed.sub }, claims: result.claimsUsed, rules: result.rules, ...(input.flow && { flow: input.flow }) },
    };
  }
  const { issued } = result;
  const { grant } = issued;
  return {
    ...base,
    decision: 'allow',
    token: { user: grant.user, groups: grant.groups, revocationIds: [issued.revocationId] },
    detail: {
      idp: grant.idp,
      claims: grant.claimsUsed,
      rules: grant.rules,
      signer: issued.signer,
      fingerprint: issued.fingerprint,
      ttlSeconds: grant.ttlSeconds,
      expiresAt: issued.expiresAt.toISOString(),
      login: { id: issued.login.id, time: issued.login.time.toISOString(), ...(issued.login.idpSessionEnd !== undefined && { idpSessionEnd: issued.login.idpSessionEnd.toISOString() }) },
      ...(grant.routes !== undefined && { routes: grant.routes }),
      ...(grant.publish !== undefined && { publish: grant.publish }),
      ...(input.flow && { flow: input.flow }),
    },
  };
}
