// The one place that decides which header fields cross the gateway, in both directions, for every
// forwarder: RFC 9110 7.6.1 (Connection and hop-by-hop), RFC 9112 6 (framing is the gateway's own).
import type { IncomingHttpHeaders } from 'node:http';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import { setsGatewayCookie, withoutGatewayCookies } from '../portal/sessionCookie.ts';
import { rewriteCookiePath, rewriteLocation, type PrefixRewrite } from './prefixRewrite.ts';

/** Prefix of every header the gateway sets about the caller. */
export const IDENTITY_PREFIX = 'x-gatehouse-';

/** How a forwarded request body is framed: always what the gateway itself read, never the client's words. */
export type BodyFraming = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' };

export interface ForwardedCaller {
  identity: PeerIdentity;
  sourceIp: string;
  user: string;
  groups: string[];
  route: string;
}

/**
 * Fields that describe one connection (RFC 9110 7.6.1, RFC 9112 6/7, RFC 9113 8.2.2), or that are
 * addressed to the gateway itself (Proxy-Authorization, Expect: the gateway answers 100-continue).
 */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'http2-settings', 'expect',
]);

/** Framing is re-derived from what the gateway read; a client's Content-Length never passes as written. */
const FRAMING = new Set(['content-length', 'transfer-encoding']);

/**
 * Names through which clients, frameworks or other proxies claim who the caller is or where it came
 * from. Only the gateway speaks about identity, so every client-sent claim is dropped (an allow list of
 * ordinary fields would break applications; these are the claims known to be honoured somewhere).
 */
const IDENTITY_CLAIMS = new Set([
  'forwarded', 'x-real-ip', 'true-client-ip', 'client-ip', 'x-client-ip', 'x-cluster-client-ip',
  'cf-connecting-ip', 'fastly-client-ip', 'x-remote-user', 'x-remote-addr', 'x-remote-ip', 'remote-user',
  'remote-addr', 'x-user', 'x-username', 'x-email', 'x-original-url', 'x-rewrite-url',
  'x-original-forwarded-for', 'x-originating-ip', 'x-proxyuser-ip', 'x-envoy-external-address', 'via',
]);
const IDENTITY_CLAIM_PREFIXES = [IDENTITY_PREFIX, 'x-forwarded-', 'x-auth-request-', 'x-client-cert', 'x-ssl-', 'ssl-client-', 'x-amzn-oidc-', 'x-goog-authenticated-', 'x-ms-client-principal'];

/** The WebSocket handshake fields a proxied upgrade carries (RFC 6455 4.1); the gateway sets Connection/Upgrade. */
const WEBSOCKET_FIELDS = new Set(['sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol', 'sec-websocket-extensions']);

/**
 * Fields Node's parser keeps only the first of (it drops later duplicates from `req.headers`): what
 * admission saw (the first Authorization, say) must be all the upstream sees, never a second value.
 */
const SINGLETONS = new Set([
  'age', 'authorization', 'content-type', 'etag', 'expires', 'from', 'if-modified-since', 'if-unmodified-since',
  'last-modified', 'location', 'max-forwards', 'referer', 'retry-after', 'server', 'user-agent',
]);

function isIdentityClaim(name: string): boolean {
  return IDENTITY_CLAIMS.has(name) || IDENTITY_CLAIM_PREFIXES.some((p) => name.startsWith(p));
}

/** Field names listed in every Connection field of a message, lower case. */
function connectionOptions(rawHeaders: readonly string[]): Set<string> {
  const named = new Set<string>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if ((rawHeaders[i] as string).toLowerCase() !== 'connection') continue;
    for (const token of (rawHeaders[i + 1] as string).split(',')) {
      const name = token.trim().toLowerCase();
      if (name) named.add(name);
    }
  }
  return named;
}

/** Header values must be visible ASCII; anything else (UTF-8 in a DN, CR/LF) is percent-encoded. */
export function headerSafe(value: string): string {
  // Per code point (`u`): a character outside the BMP is one unit, not two halves that cannot be
  // encoded; a lone surrogate (no valid UTF-8 exists for it) becomes U+FFFD's encoding.
  return value.replace(/[^\x20-\x7e]|%/gu, (c) => (/^[\uD800-\uDFFF]$/.test(c) ? '%EF%BF%BD' : encodeURIComponent(c)));
}

/** CR, LF and NUL end or corrupt a field: such a value is never forwarded (the parser refuses most already). */
const UNSAFE_VALUE = /[\r\n\0]/;

function append(out: Record<string, string | string[]>, name: string, value: string): void {
  const had = out[name];
  if (had === undefined) out[name] = value;
  else if (Array.isArray(had)) had.push(value);
  else out[name] = [had, value];
}

/**
 * The body framing of a request as the gateway's parser read it. Node's parser has already refused
 * CL+TE together, differing lengths and a final coding other than chunked; any other coding before
 * `chunked` (gzip, say) is not something the gateway can pass on faithfully, so it is refused (501).
 */
export function requestFraming(headers: IncomingHttpHeaders): BodyFraming | { unsupported: string } {
  const te = headers['transfer-encoding'];
  if (te !== undefined) {
    const codings = te.split(',').map((c) => c.trim().toLowerCase()).filter(Boolean);
    return codings.length === 1 && codings[0] === 'chunked' ? { kind: 'chunked' } : { unsupported: `transfer coding ${JSON.stringify(te.slice(0, 60))}` };
  }
  const cl = headers['content-length'];
  if (cl !== undefined) return { kind: 'length', length: Number(cl) };
  return { kind: 'none' };
}

/**
 * Headers for the upstream request. Starts from the client's fields, drops every hop-by-hop field,
 * every field the client named in Connection, every identity claim and every name with `_` (CGI maps
 * `_` and `-` alike), then states the framing and the verified identity in the gateway's own words.
 */
export function upstreamRequestHeaders(
  rawHeaders: readonly string[],
  options: { caller: ForwardedCaller; keepToken: boolean; framing: BodyFraming; upgrade?: 'websocket' },
): Record<string, string | string[]> {
  const named = connectionOptions(rawHeaders);
  const out: Record<string, string | string[]> = {};
  let host: string | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    let value = rawHeaders[i + 1] as string;
    if (HOP_BY_HOP.has(name) || FRAMING.has(name) || named.has(name) || isIdentityClaim(name) || name.includes('_')) continue;
    if (UNSAFE_VALUE.test(value)) continue;
    if (name === 'authorization' && !options.keepToken) continue;
    // The gateway's session cookie is the user's credential: the application never sees it (its own cookies pass).
    if (name === 'cookie') {
      const kept = withoutGatewayCookies(value);
      if (kept === undefined) continue;
      value = kept;
    }
    if (name.startsWith('sec-websocket-') && !(options.upgrade && WEBSOCKET_FIELDS.has(name))) continue;
    if (name === 'host') {
      host ??= value;
      continue;
    }
    if (SINGLETONS.has(name) && out[name] !== undefined) continue;
    append(out, name, value);
  }
  const headers: Record<string, string | string[]> = host === undefined ? {} : { host };
  Object.assign(headers, out);
  if (options.upgrade) {
    headers.connection = 'upgrade';
    headers.upgrade = options.upgrade;
  } else if (options.framing.kind === 'length') {
    headers['content-length'] = String(options.framing.length);
  } else if (options.framing.kind === 'chunked') {
    headers['transfer-encoding'] = 'chunked';
  }
  const { caller } = options;
  headers['x-forwarded-for'] = caller.sourceIp;
  headers['x-forwarded-proto'] = 'https';
  if (host !== undefined) headers['x-forwarded-host'] = headerSafe(host);
  headers[`${IDENTITY_PREFIX}user`] = headerSafe(caller.user);
  if (caller.groups.length > 0) headers[`${IDENTITY_PREFIX}groups`] = caller.groups.map(headerSafe).join(',');
  headers[`${IDENTITY_PREFIX}client-subject`] = headerSafe(caller.identity.subject);
  headers[`${IDENTITY_PREFIX}client-issuer`] = headerSafe(caller.identity.issuer);
  headers[`${IDENTITY_PREFIX}client-fingerprint`] = caller.identity.fingerprint;
  headers[`${IDENTITY_PREFIX}route`] = headerSafe(caller.route);
  return headers;
}

/**
 * A Set-Cookie from an upstream without its Domain attributes (RFC 6265 5.2: names case-insensitive,
 * whitespace trimmed), so the cookie stays with the host that served it: one user's service must not set
 * cookies for every other service under the same parent domain (cookie tossing).
 */
export function hostOnlyCookie(setCookie: string): string {
  if (!/domain/i.test(setCookie)) return setCookie;
  const [pair = '', ...attributes] = setCookie.split(';');
  const kept = attributes.filter((a) => (a.split('=', 1)[0] as string).trim().toLowerCase() !== 'domain');
  return [pair, ...kept].join(';');
}

/**
 * Headers of the upstream's response that go back to the client: everything but hop-by-hop fields and
 * what the upstream's Connection names; cookies only for the host that served them and never the
 * gateway's own. Framing towards the client is Node's (it re-chunks when no Content-Length remains);
 * the client's own Connection value is never echoed.
 */
export function downstreamResponseHeaders(rawHeaders: readonly string[], options: { upgrade?: boolean; prefix?: PrefixRewrite } = {}): Record<string, string | string[]> {
  const named = connectionOptions(rawHeaders);
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    let value = rawHeaders[i + 1] as string;
    if (HOP_BY_HOP.has(name) || named.has(name) || name === 'transfer-encoding' || UNSAFE_VALUE.test(value)) continue;
    if (options.upgrade && name === 'content-length') continue;
    // Only the gateway sets or clears its cookies (an application must not plant a session of its choosing).
    if (name === 'set-cookie') {
      if (setsGatewayCookie(value)) continue;
      value = hostOnlyCookie(value);
    }
    if (options.prefix && name === 'location') value = rewriteLocation(value, options.prefix);
    if (options.prefix && name === 'set-cookie') value = rewriteCookiePath(value, options.prefix);
    append(out, name, value);
  }
  return out;
}
