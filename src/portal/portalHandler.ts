// The gateway's own paths under /.well-known/gatehouse/ (the tunnel endpoint aside): admitted like any
// request, then the sign-in page and portal here, signing in and out and session hand-off in portalSession.ts.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LRUCache } from 'lru-cache';
import type { AuditLog } from '../audit/auditLog.ts';
import type { RefusalRecords } from '../audit/refusalRecords.ts';
import type { IdentityLimits } from '../admission/identityLimits.ts';
import type { GatewayLimits } from '../config/schema.ts';
import type { Exchange } from '../exchange/exchange.ts';
import type { WayIn } from '../exchange/wayIn.ts';
import type { Admission, AdmissionContext, AdmissionRequest } from '../admission/admitRequest.ts';
import type { PortalPage } from '../exchange/dispatch.ts';
import { hostOnly } from '../routing/routeTable.ts';
import type { PublishedListing } from '../upstream/publishedServices.ts';
import type { BrowserSettings } from '../config/browserSettings.ts';
import type { LoginPages } from '../login/loginPages.ts';
import { LOGIN_PATH } from '../routing/reservedPaths.ts';
import { localHandoffStore, type HandoffStore } from './handoffCodes.ts';
import { portOf, PORTAL_PATH } from './nextTarget.ts';
import { clearSessionCookie, DEFAULT_SESSION_SECONDS } from './sessionCookie.ts';
import type { TokenCheck } from '../session/sessionToken.ts';
import type { SessionTokens } from '../authz/types.ts';
import { earliestExpiry } from '../token/inspectToken.ts';
import { continuePage, messagePage, portalPage, signInPage } from './portalPages.ts';
import { portalSections } from './portalSections.ts';
import type { RootKeySource } from './rootKeySource.ts';
import { continueTo, currentSession, HANDOFF_PATH, portalSignIn, readNext, signInProvider, record, redeem, send, SESSION_PATH, SIGN_OUT_PATH, signIn, signOut, type PortalContext } from './portalSession.ts';

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
  /** Admission's own decision, run dry for the routes the portal lists. */
  dryRun: (context: AdmissionContext, request: AdmissionRequest) => Promise<Admission>;
  auditFile: () => string;
  browser: () => BrowserSettings | undefined;
  /** What a user publishes now (`gatehouse publish`). */
  publishedBy: (user: string) => PublishedListing[];
  /** Host names of the gateway's listeners (where `next` may also point). */
  listenerHosts: () => readonly string[];
  /** Where hand-off codes are kept (default: this process; the primary under `serve --processes N`). */
  handoffs?: HandoffStore;
  /** The issuer's endpoints under LOGIN_PATH (absent: those paths are not found). */
  login?: LoginPages;
}

/** How long a verified session cookie is trusted without verifying it again (revocation is checked every time). */
const VERIFIED_TTL_MS = 60_000;

async function showPage(p: PortalContext, req: IncomingMessage, res: ServerResponse, exchange: Exchange, url: URL): Promise<void> {
  const { conn } = exchange;
  const portalHost = p.deps.browser()?.portalHost?.toLowerCase();
  const host = hostOnly(req.headers.host);
  const next = readNext(p, req, url.searchParams.get('next'));
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
  const session = await currentSession(p, req, conn);
  const targets = next.origin ? [next.origin] : [];
  if (session?.check.ok) {
    const { token } = session.check;
    if (next.origin) return send(res, 200, continuePage(token.user, next.origin + next.path, next.origin + next.path), {}, targets);
    const ownExpiry = earliestExpiry(token.blocks.slice(0, -1).map((b) => b.source ?? ''));
    // The cookie's token is the signed-in token plus the gateway's session block: more than two blocks is a loan or an attenuation.
    const account = token.blocks.length <= 2;
    const sections = await portalSections({ admission: p.deps.admission(), dryRun: p.deps.dryRun, auditFile: p.deps.auditFile(), identity: conn.identity, sourceIp: conn.sourceIp, token: session.cookie, user: token.user, hostHeader: req.headers.host ?? '', published: account ? p.deps.publishedBy(token.user) : [], account });
    const view = { identity: conn.identity, token: { ...token, ...(ownExpiry !== undefined ? { expiresAt: new Date(ownExpiry) } : {}) }, sessionEndsAt: token.expiresAt ?? new Date(), sections };
    return send(res, 200, portalPage(view));
  }
  const error = session && !session.check.ok ? `Your session ended (${session.check.clientReason}); sign in again.` : undefined;
  const back = url.searchParams.has('next') ? (next.origin ?? '') + next.path : '';
  send(res, 200, signInPage({ identity: conn.identity, next: back, ...(error && { error }), ...signInProvider(p) }), session ? { 'set-cookie': clearSessionCookie() } : {}, targets);
}

/** A page request as dispatch found it under the reserved prefix: `page.path` is the normalized path, the one every stage judges. */
interface PageArrival {
  req: IncomingMessage;
  res: ServerResponse;
  page: PortalPage;
}

/** Serves an admitted page request. */
function servePage(p: PortalContext, { req, res, page }: PageArrival, exchange: Exchange): Promise<void> | void {
  // Only the query is read from the URL: the path is the dispatcher's, never re-read from the raw target.
  const url = new URL('https://gateway.invalid/');
  url.search = page.query;
  const method = req.method ?? 'GET';
  const path = page.path;
  if (path === '/.well-known/gatehouse') return void res.writeHead(308, { location: PORTAL_PATH, 'content-length': '0' }).end();
  if (path === PORTAL_PATH && (method === 'GET' || method === 'HEAD')) return showPage(p, req, res, exchange, url);
  if (path === SESSION_PATH && method === 'POST') return signIn(p, req, res, exchange);
  if (path === SIGN_OUT_PATH && method === 'POST') return signOut(p, req, res, exchange);
  if (path === HANDOFF_PATH && method === 'POST') return continueTo(p, req, res, exchange);
  if (path === HANDOFF_PATH && method === 'GET') return redeem(p, req, res, exchange, url);
  if (p.deps.login !== undefined && (path === LOGIN_PATH || path.startsWith(`${LOGIN_PATH}/`))) return p.deps.login.serve({ req, res, exchange, path, query: url.searchParams, portal: portalSignIn(p) });
  const known = [PORTAL_PATH, SESSION_PATH, SIGN_OUT_PATH, HANDOFF_PATH].includes(path);
  req.resume();
  record(exchange, { event: 'request', method, path: path, decision: 'deny', status: known ? 405 : 404, reason: known ? `gateway page ${path} does not take ${method}` : 'no such gateway page' });
  send(res, known ? 405 : 404, messagePage(known ? 'Method not allowed' : 'Not found', known ? `${method} is not used here.` : 'No such gateway page.'), known ? { allow: path === PORTAL_PATH ? 'GET, HEAD' : 'POST' } : {});
}

/**
 * The gateway pages' way in. They spend the certificate's request rate like any request (they verify
 * tokens); they read their credential (the session cookie, a sign-in form) and decide themselves.
 */
function pageWayIn(p: PortalContext): WayIn<[IncomingMessage, ServerResponse, PortalPage], PageArrival, 'none'> {
  return {
    stage: p.deps,
    decides: 'none',
    arrive: (req, res, page) => ({ req, res, page }),
    opens: () => ({ protocol: 'http' }),
    decideOn: () => undefined,
    answer: ({ res }, refusal) => send(res, refusal.status, messagePage('Refused', refusal.clientReason)),
    refuse({ req, res, page }, exchange, { refusal }) {
      // The audit log cannot record: the page says so and nothing is written.
      if (refusal.code === 'GH_AUDIT_UNAVAILABLE') return send(res, 503, messagePage('Unavailable', 'The gateway cannot record what happens right now.'));
      req.resume();
      record(exchange, { event: 'request', method: req.method ?? '', path: page.path, decision: 'deny', status: refusal.status, reason: refusal.reason });
      send(res, refusal.status, messagePage('Too many requests', 'Try again in a moment.'), { 'retry-after': String(refusal.headers?.['retry-after']) });
    },
    carry: (arrival, exchange) => servePage(p, arrival, exchange),
  };
}

export function createPortal(deps: PortalDeps) {
  const p: PortalContext = {
    deps,
    codes: deps.handoffs ?? localHandoffStore(),
    // Verifying a token costs a worker's time (and biscuit-wasm memory, returned when the worker is
    // replaced): a session is verified once a minute at most (per certificate), not on every page view.
    verified: new LRUCache<string, Extract<TokenCheck, { ok: true }>>({ max: 2048, ttl: VERIFIED_TTL_MS }),
    sessionSeconds: () => deps.browser()?.sessionSeconds ?? DEFAULT_SESSION_SECONDS,
  };
  return { wayIn: pageWayIn(p) };
}
