// The `token` summary of an audit record, built from an authorization decision: who the token names,
// its revocation ids, and for an attenuated or delegated token what each block is and whom it binds.
import type { Decision } from '../authz/types.ts';
import type { AuditToken } from './auditRecord.ts';

export function auditTokenOf(decision: Decision | undefined): AuditToken | undefined {
  if (decision === undefined) return undefined;
  // Built field by field in the record's order (once per request: no temporary objects to spread).
  const token: AuditToken = { user: decision.user };
  if (decision.allow) token.groups = decision.groups;
  token.revocationIds = decision.revocationIds;
  // Shared by reference with the token cache: decisions about one token carry the same array.
  if (decision.blocks !== undefined && decision.blocks.length > 1) token.blocks = decision.blocks;
  // Who the token comes from: an issuer's token (and every loan from it) names the IdP login behind it.
  if (decision.issuedBy !== undefined) {
    token.signer = decision.issuedBy.signer;
    if (decision.issuedBy.idp !== undefined) token.idp = decision.issuedBy.idp;
  }
  return token;
}

/** The `token` summary of a publisher's records: who the token names and its revocation ids, no blocks. */
export function publisherTokenOf(decision: Decision | undefined): AuditToken | undefined {
  return decision && { user: decision.user, ...(decision.allow && { groups: decision.groups }), revocationIds: decision.revocationIds };
}
