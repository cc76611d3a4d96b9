// The gateway's own paths under /.well-known/gatehouse/ (the tunnel endpoint aside): the sign-in page
// and portal, signing in (token -> session cookie) and out, and handing a session to a service's own
// origin with a one-time code. Every sign-in and sign-out is audited.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { LRUCache } from 'lru-cache';
import type { AuditLog } from '../audit/auditLog.ts';
import type { AuditRecord } from '../audit/auditRecord.ts';
import type { RefusalRecords } from '../audit/refusalRecords.ts';
import type { IdentityLimits } from '../admission/identityLimits.ts';
import type { GatewayLimits } from '../config/schema.ts';
import type { ConnectionContext } from '../listener/connectionContext.ts';
import { openExchange, type Exchange } from '../exchange/exchange.ts';
import { auditUnavailable, overRequestRate } from '../exchange/admissionPreamble.ts';
import type { AdmissionContext } from '../admission/admitRequest.ts';
import { sendRefusalOnSocket } from '../forward/refusals.ts';
import { refuse, refusalOf, type Refusal } from '../errors/refusal.ts';
import type { ReservedPath } from '../routing/reservedPaths.ts';
import { hostOnly } from '../routing/routeTable.ts';
import type { PublishedListing } from '../upstream/publishedServices.ts';
import type { BrowserSettings } from '../session/browserSettings.ts';
import { localHandoffStore, type HandoffStore } from '../session/handoffCodes.ts';
import { asLocalPath, nextTarget, portOf, PORTAL_PATH, type NextTarget } from '../session/nextTarget.ts';
import { isGatewayHost } from '../session/ownHosts.ts';
import { fromOwnOrigin } from '../session/requestCredential.ts';
import { clearSessionCookie, DEFAULT_SESSION_SECONDS, readSessionCookie, setSessionCookie } from '../session/sessionCookie.ts';
import { sessionExpiry, type TokenCheck } from '../session/sessionToken.ts';
import type { SessionTokens } from '../authz/types.ts';
import { earliestExpiry } from '../token/inspectToken.ts';
import { continuePage, landingPage, messagePage, pageHeaders, portalPage, signInPage } from './portalPages.ts';
import { portalSections } from './portalSections.ts';
import type { RootKeySource } from './rootKeySource.ts';

const SESSION_PATH = '/.well-known/gatehouse/session';
const SIGN_OUT_PATH = '/.well-known/gatehouse/session/end';
const HANDOFF_PATH = '/.well-known/gatehouse/session/handoff';

type PortalPage = Extract<ReservedPath, { kind: 'portal' }>;

export interface PortalDeps {
  audit: AuditLog;
  /** A client's refusals are recorded within its budgets, as on every other way in. */
  refusals: RefusalRecords;
  identityLimits: IdentityLimits;
  limits: () => GatewayLimits;
  rootKey: RootKeySource;
  /** Whether any of these revocation ids is revoked, per the list as last loaded. */
  isRevoked: (ids: readonly string[]) => boolean;
  /** Verifying and minting session tokens, done by the authorization workers (never biscuit-wasm in this thread). */
  sessions: () => SessionTokens;
  /** Routes and authorizer, for `next` checks and the portal's dry runs. */
  admission: () => AdmissionContext;
  auditFile: () => string;
  browser: () => BrowserSettings | undefined;
  /** What a user publishes now (`gatehouse publish`). */
  publishedBy: (user: string) => PublishedListing[];
  /** Host names of the gateway's listeners (where `next` may also point). */
  listenerHosts: () => readonly string[];
  /** Where hand-off codes are kept (default: this process; the primary under `serve --processes N`). */
  handoffs?: HandoffStore;
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

/** How long a verified session cookie is trusted without verifying it again (revocation is checked every time). */
const VERIFIED_TTL_MS = 60_000;

export function createPortal(deps: PortalDeps) {
  const codes = deps.handoffs ?? localHandoffStore();
  // Verifying a token costs a worker's time (and biscuit-wasm memory, returned when the worker is
  // replaced): a session is verified once a minute at most (per certificate), not on every page view.
  const verified = new LRUCache<string, Extract<TokenCheck, { ok: true }>>({ max: 2048, ttl: VERIFIED_TTL_MS });
  const sessionSeconds = () => deps.browser()?.sessionSeconds ?? DEFAULT_SESSION_SECONDS;

  function send(res: ServerResponse, status: number, html: string, extra: Record<string, string> = {}, formTargets: string[] = []): void {
    res.writeHead(status, { ...pageHeaders(formTargets), ...extra, 'content-length': String(Buffer.byteLength(html)) }).end(html);
  }

  /** A page's one record: refusals within the client's budgets, as on every other way in. */
  function record(exchange: Exchange, fields: Partial<AuditRecord> & Pick<AuditRecord, 'event'>): void {
    exchange.close(fields, fields.decision === 'deny' ? 'refused' : 'completed');
  }

  /** `next` for this request: a path here, or a URL on the same port, on a host of the gateway's own, that one of its routes serves. */
  function readNext(req: IncomingMessage, value: string | null | undefined): NextTarget {
    const { routes } = deps.admission();
    const hosts = { portalHost: deps.browser()?.portalHost, listenerHosts: deps.listenerHosts(), routes: routes.list() };
    return nextTarget(value, {
      hostHeader: req.headers.host,
      serves: (hostname, segments) => isGatewayHost(hostname, hosts) && routes.match(hostname, segments, 'http').ok,
    });
  }

  /** The signed-in session of this request, if its cookie verifies for this certificate now. */
  async function currentSession(req: IncomingMessage, conn: ConnectionContext): Promise<{ check: TokenCheck; cookie: string } | undefined> {
    const cookie = readSessionCookie(req.headers.cookie, deps.limits().maxTokenBytes);
    if (cookie.kind !== 'token') return undefined;
    const key = deps.rootKey.current();
    if (!key.ok) return { cookie: cookie.token, check: { ok: false, status: 503, clientReason: 'gateway unavailable', reason: key.reason } };
    const cacheKey = `${conn.identity.fingerprint} ${cookie.token}`;
    const known = verified.get(cacheKey);
    if (known && !deps.isRevoked(known.token.revocationIds) && (known.token.expiresAt?.getTime() ?? Infinity) > Date.now()) return { cookie: cookie.token, check: known };
    const check = await deps.sessions().verify(cookie.token, conn.identity, conn.sourceIp);
    if (check.ok) verified.set(cacheKey, check);
    else verified.delete(cacheKey);
    return { cookie: cookie.token, check };
  }

  /** Issues a code that hands a session for `origin` to the browser, and the URL that redeems it there. */
  async function handoff(conn: ConnectionContext, tokenText: string, user: string, revocationIds: string[], endsAt: Date, origin: string, next: string): Promise<{ ok: true; location: string } | { ok: false; reason: string }> {
    const key = deps.rootKey.current();
    if (!key.ok) return key;
    const url = new URL(origin);
    const minted = await deps.sessions().mint(tokenText, conn.identity.fingerprint, endsAt, url.hostname.toLowerCase());
    if (!minted.ok) return minted;
    const issued = await codes.issue({ token: minted.token, maxAgeSeconds: Math.floor((endsAt.getTime() - Date.now()) / 1000), fingerprint: conn.identity.fingerprint, host: url.host.toLowerCase(), next, user, revocationIds });
    if (!issued.ok) return issued;
    return { ok: true, location: `${origin}${HANDOFF_PATH}?code=${issued.code}` };
  }

  async function showPage(req: IncomingMessage, res: ServerResponse, exchange: Exchange, url: URL): Promise<void> {
    const { conn } = exchange;
    const portalHost = deps.browser()?.portalHost?.toLowerCase();
    const host = hostOnly(req.headers.host);
    const next = readNext(req, url.searchParams.get('next'));
    // Nowhere to go back to that the gateway serves: refused, never shown as a link or a form target.
    if (!next.ok) {
      record(exchange, { event: 'session.start', method: req.method ?? 'GET', path: PORTAL_PATH, decision: 'deny', status: 400, reason: next.reason });
      return send(res, 400, messagePage('Not a page of this gateway', 'The page to return to after signing in is not served by this gateway.'));
    }
    // A service with an origin of its own: signing in happens on the gateway's origin, never here.
    if (portalHost !== undefined && host !== undefined && host !== portalHost) {
      const target = `https://${req.headers.host}${url.searchParams.has('next') ? next.path : '/'}`;
      const port = portOf(req.headers.host);
      return send(res, 303, '', { location: `https://${portalHost}${port === '443' ? '' : `:${port}`}${PORTAL_PATH}?next=${encodeURIComponent(target)}` });
    }
    const session = await currentSession(req, conn);
    const targets = next.origin ? [next.origin] : [];
    if (session?.check.ok) {
      const { token } = session.check;
      if (next.origin) return send(res, 200, continuePage(token.user, next.origin + next.path, next.origin + next.path), {}, targets);
      const ownExpiry = earliestExpiry(token.blocks.slice(0, -1).map((b) => b.source ?? ''));
      // The cookie's token is the signed-in token plus the gateway's session block: more than two blocks is a loan or an attenuation.
      const account = token.blocks.length <= 2;
      const sections = await portalSections({ admission: deps.admission(), auditFile: deps.auditFile(), identity: conn.identity, sourceIp: conn.sourceIp, token: session.cookie, user: token.user, hostHeader: req.headers.host ?? '', published: account ? deps.publishedBy(token.user) : [], account });
      const view = { identity: conn.identity, token: { ...token, ...(ownExpiry !== undefined ? { expiresAt: new Date(ownExpiry) } : {}) }, sessionEndsAt: token.expiresAt ?? new Date(), sections };
      return send(res, 200, portalPage(view));
    }
    const error = session && !session.check.ok ? `Your session ended (${session.check.clientReason}); sign in again.` : undefined;
    const back = url.searchParams.has('next') ? (next.origin ?? '') + next.path : '';
    send(res, 200, signInPage({ identity: conn.identity, next: back, ...(error && { error }) }), session ? { 'set-cookie': clearSessionCookie() } : {}, targets);
  }

  async function signIn(req: IncomingMessage, res: ServerResponse, exchange: Exchange): Promise<void> {
    const { conn } = exchange;
    const started = performance.now();
    const deny = (refusal: Refusal, extra: Partial<AuditRecord> = {}) => {
      record(exchange, { event: 'session.start', method: 'POST', path: SESSION_PATH, decision: 'deny', status: refusal.status, reason: refusal.reason, durationMs: Math.round(performance.now() - started), ...extra });
      send(res, refusal.status, signInPage({ identity: conn.identity, error: `Not signed in: ${refusal.clientReason}.` }));
    };
    // A sign-in started by another site would sign this browser in as someone else (login CSRF).
    if (req.headers.origin !== undefined && !fromOwnOrigin(req.headers)) return deny(refuse('GH_CROSS_SITE_FORM', `sign-in posted from origin ${JSON.stringify(req.headers.origin.slice(0, 200))}`));
    const form = await readForm(req, deps.limits().maxTokenBytes + 8192);
    if (form === undefined) return deny(refuse('GH_FORM_TOO_LARGE', 'sign-in form over the size limit or broken off'));
    const next = readNext(req, form.get('next'));
    if (!next.ok) return deny(refuse('GH_BAD_NEXT', next.reason));
    const text = (form.get('token') ?? '').trim().replace(/^Bearer\s+/i, '');
    if (text === '') return deny(refuse('GH_NO_TOKEN_GIVEN', 'sign-in form without a token'));
    if (text.length > deps.limits().maxTokenBytes) return deny(refuse('GH_FORM_TOKEN_TOO_LARGE', `token is ${text.length} bytes, over limits.maxTokenBytes`));
    const key = deps.rootKey.current();
    if (!key.ok) return deny(refuse('GH_KEY_UNAVAILABLE', key.reason));
    const checked = await deps.sessions().verify(text, conn.identity, conn.sourceIp);
    if (!checked.ok) {
      return deny(refusalOf(checked), { token: { ...(checked.user !== undefined && { user: checked.user }), ...(checked.revocationIds && { revocationIds: checked.revocationIds }) } });
    }
    const { token } = checked;
    const endsAt = sessionExpiry(token, sessionSeconds());
    const minted = await deps.sessions().mint(text, conn.identity.fingerprint, endsAt);
    if (!minted.ok) return deny(refuse(minted.busy ? 'GH_RATE_LIMITED' : 'GH_SESSION_UNAVAILABLE', minted.reason));
    let location: string = next.path;
    if (next.origin !== undefined) {
      const handed = await handoff(conn, minted.token, token.user, token.revocationIds, endsAt, next.origin, next.path);
      if (!handed.ok) return deny(refuse('GH_SESSION_UNAVAILABLE', handed.reason));
      location = handed.location;
    }
    record(exchange, {
      event: 'session.start', method: 'POST', path: SESSION_PATH, decision: 'allow', status: 303, auth: 'session',
      token: { user: token.user, groups: token.groups, revocationIds: token.revocationIds },
      reason: 'token verified for this certificate', durationMs: Math.round(performance.now() - started),
      detail: { expiresAt: endsAt.toISOString(), next: (next.origin ?? '') + next.path },
    });
    const maxAge = Math.floor((endsAt.getTime() - Date.now()) / 1000);
    res.writeHead(303, { ...pageHeaders(), location, 'set-cookie': setSessionCookie(minted.token, maxAge), 'content-length': '0' }).end();
  }

  /** On the gateway's origin: a signed-in user continues to a service's origin (POST, so another site cannot start it). */
  async function continueTo(req: IncomingMessage, res: ServerResponse, exchange: Exchange): Promise<void> {
    const { conn } = exchange;
    const deny = (refusal: Refusal) => {
      record(exchange, { event: 'session.start', method: 'POST', path: HANDOFF_PATH, decision: 'deny', status: refusal.status, reason: refusal.reason });
      send(res, refusal.status, messagePage('Not signed in', refusal.clientReason));
    };
    if (!fromOwnOrigin(req.headers)) return deny(refuse('GH_CROSS_SITE_HANDOFF', `hand-off posted from origin ${JSON.stringify((req.headers.origin ?? 'none').slice(0, 200))}`));
    const form = await readForm(req, 8192);
    const next = readNext(req, form?.get('next'));
    if (!next.ok || next.origin === undefined) return deny(refuse('GH_FOREIGN_PAGE', next.ok ? 'hand-off without another origin' : next.reason));
    const session = await currentSession(req, conn);
    if (!session) return deny(refuse('GH_SIGN_IN_FIRST', 'no session'));
    if (!session.check.ok) return deny(refuse('GH_SIGN_IN_FIRST', session.check.reason));
    const { token } = session.check;
    const endsAt = token.expiresAt ?? new Date(Date.now() + sessionSeconds() * 1000);
    const handed = await handoff(conn, session.cookie, token.user, token.revocationIds, endsAt, next.origin, next.path);
    if (!handed.ok) return deny(refuse('GH_HANDOFF_UNAVAILABLE', handed.reason));
    res.writeHead(303, { ...pageHeaders(), location: handed.location, 'content-length': '0' }).end();
  }

  /** On a service's origin: redeems the one-time code, sets that host's own cookie, lands on `next`. */
  async function redeem(req: IncomingMessage, res: ServerResponse, exchange: Exchange, url: URL): Promise<void> {
    const { conn } = exchange;
    const taken = await codes.take(url.searchParams.get('code') ?? '', conn.identity.fingerprint, req.headers.host ?? '');
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

  async function signOut(req: IncomingMessage, res: ServerResponse, exchange: Exchange): Promise<void> {
    const { conn } = exchange;
    if (req.headers.origin !== undefined && !fromOwnOrigin(req.headers)) {
      record(exchange, { event: 'session.end', method: 'POST', path: SIGN_OUT_PATH, decision: 'deny', status: 403, reason: `sign-out posted from origin ${JSON.stringify(req.headers.origin.slice(0, 200))}` });
      return send(res, 403, messagePage('Not signed out', 'The sign-out form was posted from another site.'));
    }
    const session = await currentSession(req, conn);
    const token = session?.check.ok ? { user: session.check.token.user, revocationIds: session.check.token.revocationIds } : undefined;
    record(exchange, { event: 'session.end', method: 'POST', path: SIGN_OUT_PATH, decision: 'allow', status: 303, ...(token && { token }), reason: session ? 'signed out' : 'no session to end' });
    req.resume();
    res.writeHead(303, { ...pageHeaders(), location: PORTAL_PATH, 'set-cookie': clearSessionCookie(), 'content-length': '0' }).end();
  }

  /** A page dispatch found under the reserved prefix: `page.path` is the normalized path, the one every stage judges. */
  async function handle(conn: ConnectionContext, req: IncomingMessage, res: ServerResponse, page: PortalPage): Promise<void> {
    const exchange = openExchange(conn, deps, { protocol: 'http' });
    if (auditUnavailable(deps.audit)) return send(res, 503, messagePage('Unavailable', 'The gateway cannot record what happens right now.'));
    // Gateway pages spend the certificate's request rate like any request (they verify tokens).
    const overRate = overRequestRate(deps.identityLimits, exchange);
    if (overRate) {
      req.resume();
      const over = await overRate;
      record(exchange, { event: 'request', method: req.method ?? '', path: page.path, decision: 'deny', status: over.status, reason: over.reason });
      return send(res, over.status, messagePage('Too many requests', 'Try again in a moment.'), { 'retry-after': String(over.headers?.['retry-after']) });
    }
    // Only the query is read from the URL: the path is the dispatcher's, never re-read from the raw target.
    const url = new URL('https://gateway.invalid/');
    url.search = page.query;
    const method = req.method ?? 'GET';
    const path = page.path;
    if (path === '/.well-known/gatehouse') return void res.writeHead(308, { location: PORTAL_PATH, 'content-length': '0' }).end();
    if (path === PORTAL_PATH && (method === 'GET' || method === 'HEAD')) return showPage(req, res, exchange, url);
    if (path === SESSION_PATH && method === 'POST') return signIn(req, res, exchange);
    if (path === SIGN_OUT_PATH && method === 'POST') return signOut(req, res, exchange);
    if (path === HANDOFF_PATH && method === 'POST') return continueTo(req, res, exchange);
    if (path === HANDOFF_PATH && method === 'GET') return redeem(req, res, exchange, url);
    const known = [PORTAL_PATH, SESSION_PATH, SIGN_OUT_PATH, HANDOFF_PATH].includes(path);
    req.resume();
    record(exchange, { event: 'request', method, path: path, decision: 'deny', status: known ? 405 : 404, reason: known ? `gateway page ${path} does not take ${method}` : 'no such gateway page' });
    send(res, known ? 405 : 404, messagePage(known ? 'Method not allowed' : 'Not found', known ? `${method} is not used here.` : 'No such gateway page.'), known ? { allow: path === PORTAL_PATH ? 'GET, HEAD' : 'POST' } : {});
  }

  /** The gateway's pages take no upgrade, and a route never gets one on their paths: refused here. */
  function refuseUpgrade(conn: ConnectionContext, req: IncomingMessage, socket: Duplex, page: PortalPage): void {
    socket.on('error', () => {});
    const exchange = openExchange(conn, deps, { protocol: 'http' });
    record(exchange, { event: 'request', protocol: 'websocket', method: req.method ?? '', path: page.path, decision: 'deny', status: 404, reason: 'gateway pages take no upgrade' });
    sendRefusalOnSocket(socket, refuse('GH_NO_PAGE', 'gateway pages take no upgrade'));
  }

  return { handle, refuseUpgrade };
}
