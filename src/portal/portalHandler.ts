// The gateway's own paths under /.well-known/gatehouse/ (the tunnel endpoint aside): the sign-in page
// and portal, signing in (token -> session cookie) and out. Every sign-in and sign-out is audited.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AuditLog } from '../audit/auditLog.ts';
import { auditClient, type AuditRecord } from '../audit/auditRecord.ts';
import type { IdentityLimits } from '../admission/identityLimits.ts';
import type { GatewayLimits } from '../config/schema.ts';
import { contextOf, type ConnectionContext } from '../listener/connectionContext.ts';
import { nextTarget, PORTAL_PATH } from '../session/nextTarget.ts';
import { fromOwnOrigin } from '../session/requestCredential.ts';
import { clearSessionCookie, DEFAULT_SESSION_SECONDS, readSessionCookie, setSessionCookie } from '../session/sessionCookie.ts';
import { mintSessionToken, sessionExpiry, verifyForCertificate, type TokenCheck } from '../session/sessionToken.ts';
import { earliestExpiry } from '../token/inspectToken.ts';
import { messagePage, pageHeaders, portalPage, signInPage } from './portalPages.ts';
import type { RootKeySource } from './rootKeySource.ts';

const SESSION_PATH = '/.well-known/gatehouse/session';
const SIGN_OUT_PATH = '/.well-known/gatehouse/session/end';

/** The gateway's own pages: everything under this prefix that is not the tunnel endpoint. */
export function isPortalPath(url: string | undefined): boolean {
  return url !== undefined && (url === '/.well-known/gatehouse' || url.startsWith(PORTAL_PATH)) && !url.startsWith('/.well-known/gatehouse/tunnel/');
}

export interface PortalDeps {
  audit: AuditLog;
  identityLimits: IdentityLimits;
  limits: () => GatewayLimits;
  rootKey: RootKeySource;
  /** Whether any of these revocation ids is revoked, per the list as last loaded. */
  isRevoked: (ids: readonly string[]) => boolean;
  sessionSeconds?: number;
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

export function createPortal(deps: PortalDeps) {
  const sessionSeconds = deps.sessionSeconds ?? DEFAULT_SESSION_SECONDS;

  function send(res: ServerResponse, status: number, html: string, extra: Record<string, string> = {}): void {
    res.writeHead(status, { ...pageHeaders(), ...extra, 'content-length': String(Buffer.byteLength(html)) }).end(html);
  }

  function record(conn: ConnectionContext, fields: Partial<AuditRecord> & Pick<AuditRecord, 'event'>): void {
    deps.audit.write({ conn: conn.id, req: `${conn.id}.${conn.requests}`, source: conn.source, client: auditClient(conn.identity), protocol: 'http', ...fields });
  }

  /** The signed-in session of this request, if its cookie verifies for this certificate now. */
  function currentSession(req: IncomingMessage, conn: ConnectionContext): TokenCheck | undefined {
    const cookie = readSessionCookie(req.headers.cookie, deps.limits().maxTokenBytes);
    if (cookie.kind !== 'token') return undefined;
    const key = deps.rootKey.current();
    if (!key.ok) return { ok: false, status: 503, clientReason: 'gateway unavailable', reason: key.reason };
    return verifyForCertificate(cookie.token, key.key, conn.identity, conn.sourceIp, deps.isRevoked);
  }

  function showPage(req: IncomingMessage, res: ServerResponse, conn: ConnectionContext, url: URL): void {
    const session = currentSession(req, conn);
    if (session?.ok) {
      const { token } = session;
      const ownExpiry = earliestExpiry(token.blocks.slice(0, -1).map((b) => b.source ?? ''));
      const view = { identity: conn.identity, token: { ...token, ...(ownExpiry !== undefined ? { expiresAt: new Date(ownExpiry) } : {}) }, sessionEndsAt: token.expiresAt ?? new Date() };
      return send(res, 200, portalPage(view));
    }
    const next = url.searchParams.get('next') ?? '';
    send(res, 200, signInPage({ identity: conn.identity, next, ...(session && !session.ok && { error: `Your session ended (${session.clientReason}); sign in again.` }) }), session ? { 'set-cookie': clearSessionCookie() } : {});
  }

  async function signIn(req: IncomingMessage, res: ServerResponse, conn: ConnectionContext): Promise<void> {
    const started = performance.now();
    const refuse = (status: number, clientReason: string, reason: string, extra: Partial<AuditRecord> = {}) => {
      record(conn, { event: 'session.start', method: 'POST', path: SESSION_PATH, decision: 'deny', status, reason, durationMs: Math.round(performance.now() - started), ...extra });
      send(res, status, signInPage({ identity: conn.identity, error: `Not signed in: ${clientReason}.` }));
    };
    const rate = deps.identityLimits.takeRequest(conn.identity.fingerprint);
    if (!rate.ok) return refuse(429, 'too many requests', rate.reason);
    const origin = req.headers.origin;
    // A sign-in started by another site would sign this browser in as someone else (login CSRF).
    if (origin !== undefined && !fromOwnOrigin(req.headers)) return refuse(403, 'sign-in form posted from another site', `sign-in posted from origin ${JSON.stringify(origin.slice(0, 200))}`);
    const form = await readForm(req, deps.limits().maxTokenBytes + 8192);
    if (form === undefined) return refuse(413, 'form too large or incomplete', 'sign-in form over the size limit or broken off');
    const next = nextTarget(form.get('next'));
    if (!next.ok) return refuse(400, 'the page to return to is not on this gateway', next.reason);
    const text = (form.get('token') ?? '').trim().replace(/^Bearer\s+/i, '');
    if (text === '') return refuse(400, 'no token given', 'sign-in form without a token');
    if (text.length > deps.limits().maxTokenBytes) return refuse(413, 'token too large', `token is ${text.length} bytes, over limits.maxTokenBytes`);
    const key = deps.rootKey.current();
    if (!key.ok) return refuse(503, 'gateway unavailable', key.reason);
    const checked = verifyForCertificate(text, key.key, conn.identity, conn.sourceIp, deps.isRevoked);
    if (!checked.ok) {
      return refuse(checked.status, checked.clientReason, checked.reason, { token: { ...(checked.user !== undefined && { user: checked.user }), ...(checked.revocationIds && { revocationIds: checked.revocationIds }) } });
    }
    const { token } = checked;
    const endsAt = sessionExpiry(token, sessionSeconds);
    const minted = mintSessionToken(text, key.key, conn.identity.fingerprint, endsAt);
    if (!minted.ok) return refuse(503, 'cannot start a session', minted.reason);
    const maxAge = Math.floor((endsAt.getTime() - Date.now()) / 1000);
    record(conn, {
      event: 'session.start', method: 'POST', path: SESSION_PATH, decision: 'allow', status: 303, auth: 'session',
      token: { user: token.user, groups: token.groups, revocationIds: token.revocationIds },
      reason: 'token verified for this certificate', durationMs: Math.round(performance.now() - started),
      detail: { expiresAt: endsAt.toISOString(), next: next.path },
    });
    res.writeHead(303, { ...pageHeaders(), location: next.path, 'set-cookie': setSessionCookie(minted.token, maxAge), 'content-length': '0' }).end();
  }

  function signOut(req: IncomingMessage, res: ServerResponse, conn: ConnectionContext): void {
    const origin = req.headers.origin;
    if (origin !== undefined && !fromOwnOrigin(req.headers)) {
      record(conn, { event: 'session.end', method: 'POST', path: SIGN_OUT_PATH, decision: 'deny', status: 403, reason: `sign-out posted from origin ${JSON.stringify(origin.slice(0, 200))}` });
      return send(res, 403, messagePage('Not signed out', 'The sign-out form was posted from another site.'));
    }
    const session = currentSession(req, conn);
    const token = session?.ok ? { user: session.token.user, revocationIds: session.token.revocationIds } : undefined;
    record(conn, { event: 'session.end', method: 'POST', path: SIGN_OUT_PATH, decision: 'allow', status: 303, ...(token && { token }), reason: session ? 'signed out' : 'no session to end' });
    req.resume();
    res.writeHead(303, { ...pageHeaders(), location: PORTAL_PATH, 'set-cookie': clearSessionCookie(), 'content-length': '0' }).end();
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const conn = contextOf(req.socket as TLSSocket);
    if (!conn) return send(res, 421, messagePage('Not authenticated', 'The connection presented no client certificate.'));
    conn.requests += 1;
    if (!deps.audit.healthy) return send(res, 503, messagePage('Unavailable', 'The gateway cannot record what happens right now.'));
    const url = new URL(req.url ?? '/', 'https://gateway.invalid');
    const method = req.method ?? 'GET';
    if (url.pathname === '/.well-known/gatehouse') return void res.writeHead(308, { location: PORTAL_PATH, 'content-length': '0' }).end();
    if (url.pathname === PORTAL_PATH && (method === 'GET' || method === 'HEAD')) return showPage(req, res, conn, url);
    if (url.pathname === SESSION_PATH && method === 'POST') return signIn(req, res, conn);
    if (url.pathname === SIGN_OUT_PATH && method === 'POST') return signOut(req, res, conn);
    const known = [PORTAL_PATH, SESSION_PATH, SIGN_OUT_PATH].includes(url.pathname);
    req.resume();
    send(res, known ? 405 : 404, messagePage(known ? 'Method not allowed' : 'Not found', known ? `${method} is not used here.` : 'No such gateway page.'), known ? { allow: url.pathname === PORTAL_PATH ? 'GET, HEAD' : 'POST' } : {});
  }

  return { handle };
}
