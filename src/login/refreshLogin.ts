// Refresh and logout of an issued token (`gatehouse login` renewing, `gatehouse logout`): the token as issued,
// by this issuer, on the certificate it is bound to. Refresh mints the next token of the same login without
// the IdP, up to issuer.refreshLimit; logout revokes every token of the login at once.
import type { AuditRecord } from '../audit/auditRecord.ts';
import { refuse, refusalOf, type Refusal } from '../errors/refusal.ts';
import { LOGIN_PATH } from '../routing/reservedPaths.ts';
import type { VerifiedToken } from '../session/sessionToken.ts';
import { readTokenEnvelope } from '../token/tokenEnvelope.ts';
import { issuedAnswer, refreshDeadline } from './issuedAnswer.ts';
import { issuedTokenFacts, type IssuedTokenFacts } from './issuedTokenFacts.ts';
import { issueRefusalCode, readJsonBody, refuseLogin, sendRefusal } from './loginAnswers.ts';
import type { LoginDeps } from './loginEndpoints.ts';
import { recordLogin, sendJson, type LoginCall, type LoginEndpoint } from './loginPages.ts';

export const REFRESH_PATH = `${LOGIN_PATH}/refresh`;
export const LOGOUT_PATH = `${LOGIN_PATH}/logout`;

interface IssuedHolder {
  verified: VerifiedToken;
  facts: IssuedTokenFacts;
}

type HolderResult = { ok: true; holder: IssuedHolder } | { ok: false; refusal: Refusal; token?: AuditRecord['token'] };

/** The bearer token of `call`, if it is this issuer's token as issued, valid now on this connection's certificate. */
async function issuedHolder(deps: LoginDeps, call: LoginCall): Promise<HolderResult> {
  const settings = deps.issuer.settings();
  if (settings === undefined) return { ok: false, refusal: refuse('GH_ISSUE_MINT_FAILED', 'this gateway runs no issuer') };
  const credential = deps.bearer(call.req.headers);
  if (credential.kind === 'invalid') return { ok: false, refusal: credential.refusal };
  if (credential.kind === 'none') return { ok: false, refusal: refuse('GH_TOKEN_MISSING', 'no Authorization: Bearer token') };
  // Cheap and before any signature work: a root key token, or another issuer's, is refused by its key id.
  const envelope = readTokenEnvelope(credential.token);
  const keyId = envelope.ok ? envelope.value.rootKeyId : undefined;
  if (keyId !== settings.keyId) return { ok: false, refusal: refuse('GH_REFRESH_NOT_ISSUED', `the token's root key id is ${keyId ?? 'absent (the root key)'}, the issuer ${settings.name} signs with key id ${settings.keyId}`) };
  // Signature (the trusted signers pick the issuer's key by its id), revocation, expiry and the certificate
  // binding, in the authorization workers: no token parsing in the main thread.
  const identity = call.exchange.conn.identity;
  const check = await deps.sessions().verify(credential.token, identity, call.exchange.conn.sourceIp);
  if (!check.ok) {
    const token = { ...(check.user !== undefined && { user: check.user }), ...(check.revocationIds !== undefined && { revocationIds: check.revocationIds }) };
    const refusal = check.code === 'GH_TOKEN_FOREIGN' ? refuse('GH_REFRESH_NOT_ISSUED', check.reason) : refusalOf(check);
    return { ok: false, refusal, token };
  }
  const verified = check.token;
  const token = { user: verified.user, revocationIds: verified.revocationIds };
  if (verified.blocks.length !== 1) return { ok: false, refusal: refuse('GH_REFRESH_ATTENUATED', `the token has ${verified.blocks.length} blocks: an attenuated token or a loan is never refreshed (nor logs its lender out)`), token };
  const facts = issuedTokenFacts(verified.blocks[0]?.source ?? '');
  if (!facts.ok) return { ok: false, refusal: refuse('GH_REFRESH_NOT_ISSUED', facts.reason), token };
  if (facts.facts.fingerprint !== identity.fingerprint) return { ok: false, refusal: refuse('GH_TOKEN_WRONG_CERTIFICATE', `the token is bound to ${facts.facts.fingerprint}, the connection presents ${identity.fingerprint}`), token };
  return { ok: true, holder: { verified, facts: facts.facts } };
}

export function refreshEndpoints(deps: LoginDeps): LoginEndpoint[] {
  const refused = (call: LoginCall, result: Extract<HolderResult, { ok: false }>): void => {
    call.exchange.base.token = result.token;
    refuseLogin(call, result.refusal);
  };

  /** The body drained (refresh and logout need none) and the bearer token judged; undefined: refused, answered. */
  const heldBy = async (call: LoginCall): Promise<IssuedHolder | undefined> => {
    const body = await readJsonBody(call.req);
    const held: HolderResult = body.ok ? await issuedHolder(deps, call) : { ok: false, refusal: body.refusal };
    if (held.ok) return held.holder;
    refused(call, held);
    return undefined;
  };

  async function refresh(call: LoginCall): Promise<void> {
    const held = await heldBy(call);
    if (held === undefined) return;
    const { verified, facts } = held;
    const settings = deps.issuer.settings() ?? { refreshLimit: 0 as const, claims: { user: 'preferred_username', groups: 'groups' } };
    const deadline = refreshDeadline(facts.login, settings);
    const now = new Date();
    const token = { user: verified.user, revocationIds: verified.revocationIds };
    if (deadline === undefined) return refused(call, { ok: false, refusal: refuse('GH_REFRESH_LIMIT', 'issuer.refreshLimit is 0: tokens are never refreshed'), token });
    if (deadline <= now) {
      const why = deadline.getTime() === facts.login.idpSessionEnd?.getTime() ? 'the IdP session ended' : `issuer.refreshLimit (${settings.refreshLimit}) after the login at ${facts.login.time.toISOString()} has passed`;
      return refused(call, { ok: false, refusal: refuse('GH_REFRESH_LIMIT', `${why}: refresh until ${deadline.toISOString()}`), token });
    }
    let record: AuditRecord | undefined;
    // The claim rules run again on what the token carries (a group the site has since dropped is refused);
    // the new token keeps the login, the routes, the delegation key and the certificate of the old one.
    const result = deps.issuer.issue({
      login: { claims: { iss: facts.idp.issuer, sub: facts.idp.subject, [settings.claims.user]: verified.user, [settings.claims.groups]: verified.groups }, sessionEndsAt: deadline },
      certificate: call.exchange.conn.identity,
      flow: 'refresh',
      source: call.exchange.conn.source,
      request: { groups: verified.groups, ttlSeconds: facts.login.lifetimeSeconds, ...(facts.routes !== undefined && { routes: facts.routes }) },
      previous: facts.login,
      now,
      ...(facts.delegationKey !== undefined && { delegationKey: facts.delegationKey }),
      writeRecord: (made) => (record = made),
    });
    const refusal = result.ok ? undefined : refuse(issueRefusalCode(result.refusal.code), result.refusal.reason, { clientReason: result.refusal.clientReason });
    const detail = { ...record?.detail, refreshed: verified.revocationIds[0] };
    call.exchange.close({ ...record, detail, method: 'POST', path: call.path, status: refusal?.status ?? 200 }, 'completed');
    if (refusal !== undefined) return sendRefusal(call, refusal);
    if (result.ok) sendJson(call.res, 200, issuedAnswer(result.issued, settings));
  }

  async function logout(call: LoginCall): Promise<void> {
    const held = await heldBy(call);
    if (held === undefined) return;
    const { verified, facts } = held;
    call.exchange.base.token = { user: verified.user, revocationIds: verified.revocationIds };
    // Every token of the login, as the token.issue records name them: the first and each refresh.
    const found = await deps.issuer.tokensOfLogin(facts.login.id);
    const unread = found.ok ? undefined : found.reason;
    const ids = [...new Set([...verified.revocationIds, ...(found.ok ? found.ids : [])])];
    const revoked = await deps.issuer.revoke(ids);
    const detail = { logout: facts.login.id, revoked: ids, ...(unread !== undefined && { auditUnread: unread }) };
    if (!revoked.ok) return refuseLogin(call, refuse('GH_ISSUE_MINT_FAILED', `logout of login ${facts.login.id}: ${revoked.reason}`, { clientReason: 'cannot log out now' }), {}, detail);
    recordLogin(call.exchange, { event: 'request', method: 'POST', path: call.path, decision: 'allow', status: 200, detail });
    sendJson(call.res, 200, { revoked: ids });
  }

  return [
    { method: 'POST', path: REFRESH_PATH, handle: refresh },
    { method: 'POST', path: LOGOUT_PATH, handle: logout },
  ];
}
