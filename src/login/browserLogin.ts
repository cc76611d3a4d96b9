// The authorization code flow with PKCE for browsers: "Sign in with <IdP>" on the sign-in page, ending in
// the session cookie (no token shown to the user).
import type { IncomingMessage } from 'node:http';
import type { AuditRecord } from '../audit/auditRecord.ts';
import { refuse, type Refusal } from '../errors/refusal.ts';
import { BROWSER_LOGIN_PATH, landingPage, messagePage, pageHeaders } from '../portal/portalPages.ts';
import { send } from '../portal/portalSession.ts';
import { LOGIN_PATH } from '../routing/reservedPaths.ts';
import { cutText } from '../text/cutText.ts';
import { keepLogin, loginCookie, readBinding, takeLogin } from './browserLogins.ts';
import type { LoginDeps } from './loginEndpoints.ts';
import { recordLogin, type LoginCall, type LoginEndpoint } from './loginPages.ts';

export const CALLBACK_PATH = `${LOGIN_PATH}/callback`;

/** A Host header a redirect URI may be built from: a DNS name or an address, and a port. */
const HOST_HEADER = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

/**
 * The redirect URI the IdP has registered exactly: the configured one, or this gateway's callback on the
 * host the browser is on (the portal sends browsers to its own host, browser.portalHost, first).
 */
export function redirectUriFor(configured: string | undefined, host: string | undefined): { ok: true; uri: string; host: string } | { ok: false; reason: string } {
  if (configured !== undefined) return { ok: true, uri: configured, host: new URL(configured).host };
  const none = { ok: false as const, reason: `no redirect URI: issuer.provider.redirectUri is not set and the Host header ${JSON.stringify(cutText(host ?? '', 100))} names no host` };
  if (host === undefined || !HOST_HEADER.test(host)) return none;
  try {
    const uri = new URL(`https://${host}${CALLBACK_PATH}`);
    return { ok: true, uri: uri.toString(), host: uri.host };
  } catch {
    // A port over 65535, an address the URL parser refuses.
    return none;
  }
}

/** The login in progress stays bound to the browser's cookie, never to anything the URL carries. */
const cookieHeader = (req: IncomingMessage) => (typeof req.headers.cookie === 'string' ? req.headers.cookie : undefined);

export function browserEndpoints(deps: LoginDeps): LoginEndpoint[] {
  /** A refusal: the portal's message page with the short reason, the record with the full one. */
  const refused = (call: LoginCall, refusal: Refusal, fields: Partial<AuditRecord> = {}) => {
    call.req.resume();
    recordLogin(call.exchange, { event: 'session.start', method: call.req.method ?? 'GET', path: call.path, decision: 'deny', status: refusal.status, reason: `${refusal.code}: ${refusal.reason}`, ...fields, detail: { flow: 'code', ...fields.detail } });
    send(call.res, refusal.status, messagePage('Not signed in', refusal.clientReason));
  };

  /** GET …/login/browser?next=…: the browser goes to the IdP with PKCE S256, state and nonce. */
  async function start(call: LoginCall): Promise<void> {
    const { req, exchange } = call;
    const next = call.portal.readNext(req, call.query.get('next'));
    if (!next.ok) return refused(call, refuse('GH_BAD_NEXT', next.reason));
    const redirect = redirectUriFor(deps.issuer.settings()?.provider.redirectUri, req.headers.host);
    if (!redirect.ok) return refused(call, refuse('GH_BAD_REQUEST', redirect.reason));
    // The callback comes back to the redirect URI's host: the login cookie must be set there, so start there.
    // `next` goes along as it is: a path lands on that host (where the session cookie will be), another origin gets a hand-off.
    if (redirect.host !== req.headers.host?.toLowerCase()) {
      recordLogin(exchange, { event: 'request', method: req.method ?? 'GET', path: call.path, decision: 'allow', status: 303, reason: `browser sign-in starts on ${redirect.host}, the redirect URI's host`, detail: { flow: 'code' } });
      return send(call.res, 303, '', { location: `https://${redirect.host}${BROWSER_LOGIN_PATH}?next=${encodeURIComponent((next.origin ?? '') + next.path)}` });
    }
    const party = await deps.issuer.relyingParty();
    if (!party.ok) return refused(call, refuse('GH_LOGIN_IDP_UNAVAILABLE', party.reason));
    let code;
    try {
      code = await party.party.startCode(redirect.uri);
    } catch (error) {
      return refused(call, refuse('GH_LOGIN_IDP_UNAVAILABLE', `cannot start the code flow: ${error instanceof Error ? error.message : String(error)}`));
    }
    const kept = await keepLogin(call.portal.pending, code, readBinding(cookieHeader(req)), exchange.conn.identity.fingerprint, redirect.host, next);
    if (!kept.ok) return refused(call, refuse('GH_SESSION_UNAVAILABLE', kept.reason));
    recordLogin(exchange, { event: 'request', method: req.method ?? 'GET', path: call.path, decision: 'allow', status: 303, reason: 'browser sent to the identity provider', detail: { flow: 'code', redirectUri: redirect.uri, next: (next.origin ?? '') + next.path } });
    call.res.writeHead(303, { ...pageHeaders(), location: kept.url, 'set-cookie': loginCookie(kept.binding), 'content-length': '0' }).end();
  }

  /** GET …/login/callback?code&state: the code exchanged, the claim rules applied, the session cookie set. */
  async function callback(call: LoginCall): Promise<void> {
    const { req, exchange } = call;
    const { conn } = exchange;
    const taken = await takeLogin(call.portal.pending, call.query.get('state') ?? '', readBinding(cookieHeader(req)), conn.identity.fingerprint, req.headers.host ?? '');
    if (!taken.ok) return refused(call, refuse(taken.kind === 'foreign' ? 'GH_LOGIN_FOREIGN' : taken.kind === 'unknown' ? 'GH_LOGIN_STATE_UNKNOWN' : 'GH_SESSION_UNAVAILABLE', taken.reason));
    const { login } = taken;
    const idpError = call.query.get('error');
    if (idpError !== null) {
      return refused(call, refuse('GH_LOGIN_IDP_REFUSED', `the identity provider answered ${cutText(idpError, 100)}: ${cutText(call.query.get('error_description') ?? '', 300)}`));
    }
    const party = await deps.issuer.relyingParty();
    if (!party.ok) return refused(call, refuse('GH_LOGIN_IDP_UNAVAILABLE', party.reason));
    // What the IdP sent back, on the exact redirect URI the login started with (openid-client checks state and iss).
    const returned = new URL(login.code.redirectUri);
    returned.search = call.query.toString();
    const finished = await party.party.finishCode(returned, login.code);
    if (!finished.ok) return refused(call, refuse('GH_LOGIN_IDP_REFUSED', `${finished.code}: ${finished.reason}`));
    const result = deps.issuer.issue({ login: finished.login, certificate: conn.identity, flow: 'code', source: conn.source, recordExtra: { conn: conn.id, req: exchange.id } });
    if (!result.ok) {
      const { refusal } = result;
      const code = refusal.code === 'mint-failed' ? 'GH_SESSION_UNAVAILABLE' : 'GH_LOGIN_NOT_ISSUED';
      return refused(call, refuse(code, `${refusal.code}: ${refusal.reason}`, { clientReason: `${refusal.clientReason.charAt(0).toUpperCase()}${refusal.clientReason.slice(1)}.` }), { detail: { issue: refusal.code } });
    }
    const { issued } = result;
    const session = await call.portal.startSession(conn, issued.token, login.next);
    if (!session.ok) return refused(call, session.refusal, { token: { user: issued.grant.user, revocationIds: [issued.revocationId] } });
    const { token, endsAt } = session;
    recordLogin(exchange, {
      event: 'session.start', method: req.method ?? 'GET', path: call.path, decision: 'allow', status: session.landing ? 200 : 303, auth: 'session',
      token: { user: token.user, groups: token.groups, revocationIds: token.revocationIds },
      reason: 'signed in with the identity provider',
      detail: { flow: 'code', idp: issued.grant.idp, expiresAt: endsAt.toISOString(), next: session.next },
    });
    // The redirect chain began on the IdP's site: a Strict cookie set now is not sent on a redirect, but it
    // is on a navigation this origin starts itself (the landing page's refresh). That navigation must not
    // carry this URL (code and state) as its Referer to the service behind `next`.
    if (session.landing !== undefined) return send(call.res, 200, landingPage(session.landing), { 'set-cookie': session.cookie, 'referrer-policy': 'no-referrer' });
    call.res.writeHead(303, { ...pageHeaders(), location: session.location, 'set-cookie': session.cookie, 'content-length': '0' }).end();
  }

  return [
    { method: 'GET', path: BROWSER_LOGIN_PATH, handle: start },
    { method: 'GET', path: CALLBACK_PATH, handle: callback },
  ];
}
