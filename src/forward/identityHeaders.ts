// Header hygiene between client and upstream: whatever the client claims about identity or
// forwarding is dropped, then the gateway states what it verified, in headers the upstream can trust.
import type { IncomingHttpHeaders } from 'node:http';
import type { PeerIdentity } from '../tls/peerIdentity.ts';

/** Prefix of every header the gateway sets about the caller. */
export const IDENTITY_PREFIX = 'x-gatehouse-';

const CLIENT_CONTROLLED = new Set([
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-user',
  'x-real-ip',
  'x-remote-user',
  'x-client-cert',
  'x-ssl-client-cert',
  'x-ssl-client-dn',
  'remote-user',
  // Some frameworks route by these instead of the request line: the path that was authorized must win.
  'x-original-url',
  'x-rewrite-url',
]);

export interface VerifiedCaller {
  identity: PeerIdentity;
  sourceIp: string;
  user: string;
  groups: string[];
  route: string;
}

/** Header values must be visible ASCII; anything else (UTF-8 in a DN, CR/LF) is percent-encoded. */
function headerSafe(value: string): string {
  return value.replace(/[^\x20-\x7e]|%/g, (c) => encodeURIComponent(c));
}

/**
 * Rewrites `headers` in place for the upstream. `keepToken` keeps Authorization for routes that ask
 * for it; Proxy-Authorization is always dropped (it is addressed to the gateway, never the service).
 */
export function applyIdentityHeaders(headers: IncomingHttpHeaders, caller: VerifiedCaller, keepToken: boolean): void {
  // Headers the client lists in Connection are hop-by-hop: a proxy behind us would drop them, and a
  // client could use that to make it drop the identity headers set below. Drop them here instead.
  const connection = typeof headers.connection === 'string' ? headers.connection.toLowerCase().split(',').map((t) => t.trim()) : [];
  for (const name of connection) if (name !== 'upgrade' && name !== 'keep-alive' && name !== 'close') delete headers[name];
  for (const name of Object.keys(headers)) {
    // CGI, WSGI and PHP map `_` and `-` alike (X-Gatehouse_User reads as X-Gatehouse-User), so a name
    // with an underscore could smuggle an identity past an exact-name check: drop all of them, as nginx does.
    if (name.includes('_') || CLIENT_CONTROLLED.has(name) || name.startsWith(IDENTITY_PREFIX) || name === 'proxy-authorization') delete headers[name];
  }
  if (!keepToken) delete headers.authorization;
  const host = headers.host;
  headers['x-forwarded-for'] = caller.sourceIp;
  headers['x-forwarded-proto'] = 'https';
  if (host !== undefined) headers['x-forwarded-host'] = headerSafe(host);
  headers[`${IDENTITY_PREFIX}user`] = headerSafe(caller.user);
  if (caller.groups.length > 0) headers[`${IDENTITY_PREFIX}groups`] = caller.groups.map(headerSafe).join(',');
  headers[`${IDENTITY_PREFIX}client-subject`] = headerSafe(caller.identity.subject);
  headers[`${IDENTITY_PREFIX}client-issuer`] = headerSafe(caller.identity.issuer);
  headers[`${IDENTITY_PREFIX}client-fingerprint`] = caller.identity.fingerprint;
  headers[`${IDENTITY_PREFIX}route`] = caller.route;
}

/** The bearer token from `Authorization` (or, for CONNECT, `Proxy-Authorization`), if any. */
export function bearerToken(headers: IncomingHttpHeaders, ...names: Array<'authorization' | 'proxy-authorization'>): string | undefined {
  for (const name of names) {
    const value = headers[name];
    if (typeof value !== 'string') continue;
    const m = /^Bearer[ \t]+([A-Za-z0-9_\-=+/.]+)[ \t]*$/i.exec(value);
    if (m) return m[1];
  }
  return undefined;
}
