// Signing in and out on the gateway's pages: a token becomes a session cookie for this certificate, a
// session is handed to a service's own origin with a one-time code, and every step is recorded.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LRUCache } from 'lru-cache';
import type { AuditRecord } from '../audit/auditRecord.ts';
import type { ConnectionContext } from '../exchange/connection.ts';
import type { Exchange } from '../exchange/exchange.ts';
import { refuse, refusalOf, type Refusal } from '../errors/refusal.ts';
import type { HandoffStore } from './handoffCodes.ts';
import { asLocalPath, nextTarget, PORTAL_PATH, type LocalPath, type NextTarget } from './nextTarget.ts';
import { isGatewayHost } from './ownHosts.ts';
import { fromOwnOrigin } from '../routing/origin.ts';
import { clearSessionCookie, readSessionCookie, sessionExpiry, setSessionCookie } from './sessionCookie.ts';
import type { TokenCheck, VerifiedToken } from '../session/sessionToken.ts';
import { landingPage, messagePage, pageHeaders, signInPage } from './portalPages.ts';
import type { PortalDeps } from './portalHandler.ts';

export const SESSION_PATH = '/.well-known/gatehouse/session';
export const SIGN_OUT_PATH = '/.well-known/gatehouse/session/end';
export const HANDOFF_PATH = '/.well-known/gatehouse/session/handoff';

/** What every page of one portal shares: its dependencies, the hand-off codes and the verified sessions. */
export interface PortalContext {
  deps: PortalDeps;
  codes: HandoffStore;
  /** Sessions verified lately, by certificate and cookie. */
  verified: LRUCache<string, Extract<TokenCheck, { ok: true }>>;
  sessionSeconds(): number;
}

/** Reads a form body up to `limit` bytes; undefined when it is larger or broken off. */
function readForm(req: IncomingMessage, limit: number): Promise<URLSearchParams | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        resolve(undefined);
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.once('error', () => resolve(undefined));
    req.once('close', () => resolve(undefined));
  });
}

/** "Sign in with <IdP>" on the sign-in page, when the gateway runs an issuer: the provider's display name. */
export function signInProvider(p: PortalContext): { provider?: string } {
  const provider = p.deps.login?.issuer.settings()?.provider;
  return provider === undefined ? {} : { provider: provider.displayName ?? 'your identity provider' };
}

export function send(res: ServerResponse, status: number, html: string, extra: Record<string, string> = {}, formTargets: string[] = []): void {
  res.writeHead(status, { ...pageHeaders(formTargets), ...extra, 'content-length': String(Buffer.byteLength(html)) }).end(html);
}

/** A page's one record: refusals within the client's budgets, as on every other way in. */
export function record(exchange: Exchange, fields: Partial<AuditRecord> & Pick<AuditRecord, 'event'>): void {
  exchange.close(fields, fields.decision === 'deny' ? 'refused' : 'completed');
}

/** `next` for this request: a path here, or a URL on the same port, on a host of the gateway's own, that one of its routes serves. */
export function readNext(p: PortalContext, req: IncomingMessage, value: string | null | undefined): NextTarget {
  const { routes } = p.deps.admission();
  const hosts = { portalHost: p.deps.browser()?.portalHost, listenerHosts: p.deps.listenerHosts(), routes: routes.list() };
  return nextTarget(value, {
    hostHeader: req.headers.host,
    serves: (hostname, segments) => isGatewayHost(hostname, hosts) && routes.match(hostname, segments, 'http').ok,
  });
}

/** The signed-in session of this request, if its cookie verifies for this certificate now. */
export async function currentSession(p: PortalContext, req: IncomingMessage, conn: ConnectionContext): Promise<{ check: TokenCheck; cookie: string } | undefined> {
  const cookie = readSessionCookie(req.headers.cookie, p.deps.limits().maxTokenBytes);
  if (cookie.kind !== 'token') return undefined;
  const key = p.deps.rootKey.current();
  if (!key.ok) return { cookie: cookie.token, check: { ok: false, ...refuse('GH_KEY_UNAVAILABLE', key.reason) } };
  const cacheKey = `${conn.identity.fingerprint} ${cookie.token}`;
  const known = p.verified.get(cacheKey);
  if (known && !p.deps.isRevoked(known.token.revocationIds) && (known.token.expiresAt?.getTime() ?? Infinity) > Date.now()) return { cookie: cookie.token, check: known };
  const check = await p.deps.sessions().verify(cookie.token, conn.identity, conn.sourceIp);
  if (check.ok) p.verified.set(cacheKey, check);
  else p.verified.delete(cacheKey);
  return { cookie: cookie.token, check };
}

/** Issues a code that hands a session for `origin` to the browser, and the URL that redeems it there. */
async function handoff(p: PortalContext, conn: ConnectionContext, tokenText: string, user: string, revocationIds: string[], endsAt: Date, origin: string, next: string): Promise<{ ok: true; location: string } | { ok: false; reason: string }> {
  const key = p.deps.rootKey.current();
  if (!key.ok) return key;
  const url = new URL(origin);
  const minted = await p.deps.sessions().mint(tokenText, conn.identity.fingerprint, endsAt, url.hostname.toLowerCase());
  if (!minted.ok) return minted;
  const issued = await p.codes.issue({ token: minted.token, maxAgeSeconds: Math.floor((endsAt.getTime() - Date.now()) / 1000), fingerprint: conn.identity.fingerprint, host: url.host.toLowerCase(), next, user, revocationIds });
  if (!issued.ok) return issued;
  return { ok: true, location: `${origin}${HANDOFF_PATH}?code=${issued.code}` };
}

/** A session started from a token: where the browser goes next and the cookie it gets, or the refusal. */
export type SessionStart =
  | { ok: true; token: VerifiedToken; endsAt: Date; cookie: string; next: string; location: string; landing?: LocalPath }
  | { ok: false; refusal: Refusal; token?: Partial<Pick<VerifiedToken, 'user' | 'revocationIds'>> };

/**
 * A session from `text` for this certificate: the token verified here, the session token minted (the
 * token plus the gateway's session block), and, when `next` is another origin of the gateway's, a
 * one-time hand-off code to carry it there. Signing in with a pasted token and with the IdP both end here.
 */
export async function startSession(p: PortalContext, conn: ConnectionContext, text: string, next: Extract<NextTarget, { ok: true }>): Promise<SessionStart> {
  const key = p.deps.rootKey.current();
  if (!key.ok) return { ok: false, refusal: refuse('GH_KEY_UNAVAILABLE', key.reason) };
  const checked = await p.deps.sessions().verify(text, conn.identity, conn.sourceIp);
  if (!checked.ok) return { ok: false, refusal: refusalOf(checked), token: { ...(checked.user !== undefined && { user: checked.user }), ...(checked.revocationIds && { revocationIds: checked.revocationIds }) } };
  const { token } = checked;
  const endsAt = sessionExpiry(token, p.sessionSeconds());
  const minted = await p.deps.sessions().mint(text, conn.identity.fingerprint, endsAt);
  if (!minted.ok) return { ok: false, refusal: refuse(minted.busy ? 'GH_RATE_LIMITED' : 'GH_SESSION_UNAVAILABLE', minted.reason) };
  const cookie = setSessionCookie(minted.token, Math.floor((endsAt.getTime() - Date.now()) / 1000));
  const shown = (next.origin ?? '') + next.path;
  if (next.origin === undefined) return { ok: true, token, endsAt, cookie, next: shown, location: next.path, landing: next.path };
  const handed = await handoff(p, conn, minted.token, token.user, token.revocationIds, endsAt, next.origin, next.path);
  if (!handed.ok) return { ok: false, refusal: refuse('GH_SESSION_UNAVAILABLE', handed.reason) };
  return { ok: true, token, endsAt, cookie, next: shown, location: handed.location };
}

/** What the issuer's browser sign-in uses of the portal: its rule for `next`, its one-time store, and starting a session. */
export interface PortalSignIn {
  readNext(req: IncomingMessage, value: string | null | undefined): NextTarget;
  /** Where one-time entries live (this process, the primary of a process group, or the cluster database). */
  pending: HandoffStore;
  startSession(conn: ConnectionContext, text: string, next: Extract<NextTarget, { ok: true }>): Promise<SessionStart>;
}

export function portalSignIn(p: PortalContext): PortalSignIn {
  return { readNext: (req, value) => readNext(p, req, value), pending: p.codes, startSession: (conn, text, next) => startSession(p, conn, text, next) };
}

export async function signIn(p: PortalContext, req: IncomingMessage, res: ServerResponse, exchange: Exchange): Promise<void> {
  const { conn } = exchange;
  const started = performance.now();
  const deny = (refusal: Refusal, extra: Partial<AuditRecord> = {}) => {
    record(exchange, { event: 'session.start', method: 'POST', path: SESSION_PATH, decision: 'deny', status: refusal.status, reason: refusal.reason, durationMs: Math.round(performance.now() - started), ...extra });
    send(res, refusal.status, signInPage({ identity: conn.identity, error: `Not signed in: ${refusal.clientReason}.`, ...signInProvider(p) }));
  };
  // A sign-in started by another site would sign this browser in as someone else (login CSRF).
  if (req.headers.origin !== undefined && !fromOwnOrigin(req.headers)) return deny(refuse('GH_CROSS_SITE_FORM', `sign-in posted from origin ${JSON.stringify(req.headers.origin.slice(0, 200))}`));
  const form = await readForm(req, p.deps.limits().maxTokenBytes + 8192);
  if (form === undefined) return deny(refuse('GH_FORM_TOO_LARGE', 'sign-in form over the size limit or broken off'));
  const next = readNext(p, req, form.get('next'));
  if (!next.ok) return deny(refuse('GH_BAD_NEXT', next.reason));
  const text = (form.get('token') ?? '').trim().replace(/^Bearer\s+/i, '');
  if (text === '') return deny(refuse('GH_NO_TOKEN_GIVEN', 'sign-in form without a token'));
  if (text.length > p.deps.limits().maxTokenBytes) return deny(refuse('GH_FORM_TOKEN_TOO_LARGE', `token is ${text.length} bytes, over limits.maxTokenBytes`));
  const session = await startSession(p, conn, text, next);
  if (!session.ok) return deny(session.refusal, session.token ? { token: session.token } : {});
  const { token, endsAt } = session;
  record(exchange, {
    event: 'session.start', method: 'POST', path: SESSION_PATH, decision: 'allow', status: 303, auth: 'session',
    token: { user: token.user, groups: token.groups, revocationIds: token.revocationIds },
    reason: 'token verified for this certificate', durationMs: Math.round(performance.now() - started),
    detail: { expiresAt: endsAt.toISOString(), next: session.next },
  });
  res.writeHead(303, { ...pageHeaders(), location: session.location, 'set-cookie': session.cookie, 'content-length': '0' }).end();
}

/** On the gateway's origin: a signed-in user continues to a service's origin (POST, so another site cannot start it). */
export async function continueTo(p: PortalContext, req: IncomingMessage, res: ServerResponse, exchange: Exchange): Promise<void> {
  const { conn } = exchange;
  const deny = (refusal: Refusal) => {
    record(exchange, { event: 'session.start', method: 'POST', path: HANDOFF_PATH, decision: 'deny', status: refusal.status, reason: refusal.reason });
    send(res, refusal.status, messagePage('Not signed in', refusal.clientReason));
  };
  if (!fromOwnOrigin(req.headers)) return deny(refuse('GH_CROSS_SITE_HANDOFF', `hand-off posted from origin ${JSON.stringify((req.headers.origin ?? 'none').slice(0, 200))}`));
  const form = await readForm(req, 8192);
  const next = readNext(p, req, form?.get('next'));
  if (!next.ok || next.origin === undefined) return deny(refuse('GH_FOREIGN_PAGE', next.ok ? 'hand-off without another origin' : next.reason));
  const session = await currentSession(p, req, conn);
  if (!session) return deny(refuse('GH_SIGN_IN_FIRST', 'no session'));
  if (!session.check.ok) return deny(refuse('GH_SIGN_IN_FIRST', session.check.reason));
  const { token } = session.check;
  const endsAt = token.expiresAt ?? new Date(Date.now() + p.sessionSeconds() * 1000);
  const handed = await handoff(p, conn, session.cookie, token.user, token.revocationIds, endsAt, next.origin, next.path);
  if (!handed.ok) return deny(refuse('GH_HANDOFF_UNAVAILABLE', handed.reason));
  res.writeHead(303, { ...pageHeaders(), location: handed.location, 'content-length': '0' }).end();
}

/** On a service's origin: redeems the one-time code, sets that host's own cookie, lands on `next`. */
export async function redeem(p: PortalContext, req: IncomingMessage, res: ServerResponse, exchange: Exchange, url: URL): Promise<void> {
  const { conn } = exchange;
  const taken = await p.codes.take(url.searchParams.get('code') ?? '', conn.identity.fingerprint, req.headers.host ?? '');
  const path = `${HANDOFF_PATH}`;
  if (!taken.ok) {
    record(exchange, { event: 'session.start', method: 'GET', path, decision: 'deny', status: 403, reason: taken.reason });
    return send(res, 403, messagePage('Not signed in', 'This sign-in link is not valid (any more). Sign in again.'));
  }
  const { handoff: h } = taken;
  record(exchange, { event: 'session.start', method: 'GET', path, decision: 'allow', status: 200, auth: 'session', token: { user: h.user, revocationIds: h.revocationIds }, reason: 'one-time sign-in code redeemed', detail: { host: h.host, next: h.next } });
  // The path was rebuilt by the gateway when the code was issued; checked again where it becomes a URL.
  send(res, 200, landingPage(asLocalPath(h.next) ?? PORTAL_PATH), { 'set-cookie': setSessionCookie(h.token, h.maxAgeSeconds) });
}

export async function signOut(p: PortalContext, req: IncomingMessage, res: ServerResponse, exchange: Exchange): Promise<void> {
  const { conn } = exchange;
  if (req.headers.origin !== undefined && !fromOwnOrigin(req.headers)) {
    record(exchange, { event: 'session.end', method: 'POST', path: SIGN_OUT_PATH, decision: 'deny', status: 403, reason: `sign-out posted from origin ${JSON.stringify(req.headers.origin.slice(0, 200))}` });
    return send(res, 403, messagePage('Not signed out', 'The sign-out form was posted from another site.'));
  }
  const session = await currentSession(p, req, conn);
  const token = session?.check.ok ? { user: session.check.token.user, revocationIds: session.check.token.revocationIds } : undefined;
  record(exchange, { event: 'session.end', method: 'POST', path: SIGN_OUT_PATH, decision: 'allow', status: 303, ...(token && { token }), reason: session ? 'signed out' : 'no session to end' });
  req.resume();
  res.writeHead(303, { ...pageHeaders(), location: PORTAL_PATH, 'set-cookie': clearSessionCookie(), 'content-length': '0' }).end();
}
