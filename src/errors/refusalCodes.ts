// The stable codes of every way gatehouse says no: each fixes the HTTP status, the short message the client
// is given, and the exit code `gatehouse tunnel`/`publish` end with when the gateway answers with its status.

/** Exit codes of `gatehouse tunnel` and `gatehouse publish`, stable for scripts and ssh ProxyCommand users. */
export const EXIT = {
  ok: 0,
  /** A tunnel was open and broke (reset, upstream error). */
  broken: 1,
  /** Invalid options, config or files. */
  usage: 2,
  /** The gateway could not be reached or TLS failed. */
  unreachable: 3,
  /** The gateway refused: no/invalid token (401), denied (403), unknown route (404). */
  refused: 4,
  /** The gateway could not reach the service behind the route (502) or failed otherwise. */
  upstream: 5,
} as const;

/** What one code means: `message` is the client's short reason; `says` is how the client explains the status, for the status's own code. */
export interface CodeEntry {
  readonly status: number;
  readonly message: string;
  readonly exit: number;
  readonly says?: string;
}

/** A refusal the client may fix by other credentials or another name; anything else is the gateway's or the service's. */
const exitFor = (status: number): number => (status === 401 || status === 403 || status === 404 ? EXIT.refused : EXIT.upstream);

function entry(status: number, message: string, says?: string): CodeEntry {
  return { status, message, exit: exitFor(status), ...(says !== undefined && { says }) };
}

export const CODES = {
  // 400: the request itself is wrong.
  GH_BAD_REQUEST: entry(400, 'bad request', 'bad request'),
  GH_BAD_PATH: entry(400, 'invalid request path'),
  GH_BAD_TUNNEL_NAME: entry(400, 'invalid tunnel name'),
  GH_MISSING_HOST: entry(400, 'missing Host header'),
  GH_MANY_HOSTS: entry(400, 'more than one Host header'),
  GH_NO_SERVICES: entry(400, 'no services named'),
  GH_BAD_PUBLISH: entry(400, 'invalid publish registration'),
  GH_BAD_CONNECT_TARGET: entry(400, 'CONNECT target must be <route>:<port>'),
  GH_BAD_HANDSHAKE: entry(400, 'expected a WebSocket upgrade'),
  GH_BAD_SUBPROTOCOL: entry(400, 'expected subprotocol'),
  GH_UPGRADE_NOT_GET: entry(400, 'WebSocket upgrade must be GET'),
  GH_BAD_UPGRADE: entry(400, 'unsupported upgrade'),
  GH_BAD_NEXT: entry(400, 'the page to return to is not on this gateway'),
  GH_NO_TOKEN_GIVEN: entry(400, 'no token given'),
  GH_FOREIGN_PAGE: entry(400, 'That page is not served by this gateway.'),
  GH_CSR_INVALID: entry(400, 'invalid certificate request'),
  GH_CSR_REQUIRED: entry(400, 'without a client certificate, a login must send a csr'),
  // 401: no credential, or one that is not this gateway's.
  GH_TOKEN_MISSING: entry(401, 'missing bearer token'),
  GH_TOKEN_INVALID: entry(401, 'invalid token', 'not authenticated (token missing, malformed or not signed by the site)'),
  GH_TOKEN_TOO_LARGE: entry(401, 'token too large'),
  GH_TOKEN_FOREIGN: entry(401, 'token not valid for this gateway'),
  GH_SESSION_INVALID: entry(401, 'invalid session; sign in again'),
  GH_SIGN_IN_FIRST: entry(401, 'Sign in first.'),
  // 403: a credential that does not allow this.
  GH_DENIED: entry(403, 'denied by policy', 'access denied'),
  GH_TOKEN_EXPIRED: entry(403, 'token expired'),
  GH_TOKEN_REVOKED: entry(403, 'token revoked'),
  GH_TOKEN_REJECTED: entry(403, 'token rejected'),
  GH_TOKEN_WRONG_CERTIFICATE: entry(403, 'token not valid with this certificate'),
  GH_TOKEN_NO_USER: entry(403, 'token names no user'),
  GH_TOKEN_MANY_USERS: entry(403, 'token names more than one user'),
  GH_NO_PUBLISH_RIGHT: entry(403, 'token carries no right to publish'),
  GH_PUBLISH_DISABLED: entry(403, 'publishing is not enabled on this gateway'),
  GH_RUN_LIMIT: entry(403, 'run limit exceeded'),
  GH_POLICY_ERROR: entry(403, 'policy evaluation failed'),
  GH_CROSS_ORIGIN: entry(403, 'cross-origin request refused'),
  GH_CROSS_SITE_FORM: entry(403, 'sign-in form posted from another site'),
  GH_CROSS_SITE_HANDOFF: entry(403, 'The request came from another site.'),
  GH_CERTIFICATE_REQUIRED: entry(403, 'a client certificate is required here'),
  // 404: nothing by that name.
  GH_NO_ROUTE: entry(404, 'no route', 'no such route'),
  GH_NO_TUNNEL_ROUTE: entry(404, 'no such route'),
  GH_NO_PAGE: entry(404, 'no such gateway page'),
  // The request's framing or timing.
  GH_REQUEST_TIMEOUT: entry(408, 'request timeout'),
  GH_FORM_TOO_LARGE: entry(413, 'form too large or incomplete'),
  GH_FORM_TOKEN_TOO_LARGE: entry(413, 'token too large'),
  GH_EXPECTATION: entry(417, 'expectation not supported'),
  GH_UNAUTHENTICATED_CONNECTION: entry(421, 'connection not authenticated', 'connection not authenticated'),
  GH_UPGRADE_REQUIRED: entry(426, 'tunnel endpoint needs a WebSocket upgrade'),
  GH_RATE_LIMITED: entry(429, 'too many requests'),
  GH_TOO_MANY_PUBLISHERS: entry(429, 'too many publishers'),
  GH_TOO_MANY_SERVICES: entry(429, 'too many published services'),
  GH_HEADERS_TOO_LARGE: entry(431, 'request header fields too large'),
  /** The client left: recorded, never sent. */
  GH_CLIENT_CLOSED: entry(499, 'client left'),
  GH_UNSUPPORTED_CODING: entry(501, 'unsupported transfer coding'),
  // The gateway or what is behind it.
  GH_UPSTREAM_UNAVAILABLE: entry(502, 'upstream unavailable', 'the gateway could not reach the service'),
  GH_AUDIT_UNAVAILABLE: entry(503, 'gateway unavailable', 'gateway unavailable'),
  GH_KEY_UNAVAILABLE: entry(503, 'gateway unavailable'),
  GH_AUTHZ_UNAVAILABLE: entry(503, 'authorization unavailable'),
  GH_TOKEN_CHECK_UNAVAILABLE: entry(503, 'cannot check the token now'),
  GH_SESSION_UNAVAILABLE: entry(503, 'cannot start a session'),
  GH_HANDOFF_UNAVAILABLE: entry(503, 'Cannot hand the session over now.'),
  GH_DRAINING: entry(503, 'gateway shutting down'),
  GH_NOT_PUBLISHED: entry(503, 'service not published'),
  GH_SERVICE_BUSY: entry(503, 'service busy'),
  // The issuer's logins (`gatehouse login`, refresh, logout): the claim rules' refusals, then the device flow's.
  GH_ISSUE_CLAIMS_INCOMPLETE: entry(403, 'the identity provider did not name you'),
  GH_ISSUE_CERTIFICATE_MISMATCH: entry(403, 'your login does not match your client certificate'),
  GH_ISSUE_NO_GROUP_ALLOWED: entry(403, 'none of your groups may receive a token here'),
  GH_ISSUE_GROUP_NOT_ALLOWED: entry(403, 'a group you asked for may not receive tokens here'),
  GH_ISSUE_ROUTE_NOT_ALLOWED: entry(403, 'your groups may not receive a route you asked for'),
  GH_ISSUE_IDP_SESSION_EXPIRED: entry(403, 'your identity provider session has ended; log in again'),
  GH_ISSUE_TTL_INVALID: entry(400, 'invalid token lifetime'),
  GH_ISSUE_MINT_FAILED: entry(503, 'cannot issue a token now'),
  GH_ISSUE_DENIED: entry(403, 'the login was denied at the identity provider'),
  GH_ISSUE_PROVIDER_UNAVAILABLE: entry(503, 'the identity provider cannot be reached now'),
  GH_ISSUE_PROVIDER_ERROR: entry(502, 'the identity provider refused the login; log in again'),
  GH_LOGIN_BAD_REQUEST: entry(400, 'invalid login request'),
  GH_LOGIN_UNKNOWN: entry(404, 'no such login (finished, expired, or started with another certificate)'),
  GH_LOGIN_EXPIRED: entry(410, 'the login expired before it was approved; log in again'),
  GH_LOGIN_SLOW_DOWN: entry(429, 'polling too fast; slow down'),
  GH_REFRESH_NOT_ISSUED: entry(401, 'this token was not issued by this gateway\'s login; log in again'),
  GH_REFRESH_ATTENUATED: entry(403, 'only a token as issued can be refreshed'),
  GH_REFRESH_LIMIT: entry(403, 'refresh limit reached; log in again'),
  // The browser's sign-in with the site's identity provider (the code flow).
  GH_LOGIN_STATE_UNKNOWN: entry(400, 'This sign-in is not known (it was used already or took too long). Start again.'),
  GH_LOGIN_FOREIGN: entry(403, 'This sign-in was started in another browser or with another certificate. Start again here.'),
  GH_LOGIN_IDP_REFUSED: entry(403, 'The identity provider did not confirm this sign-in. Start again.'),
  GH_LOGIN_NOT_ISSUED: entry(403, 'Your identity provider account may not sign in here.'),
  GH_LOGIN_IDP_UNAVAILABLE: entry(503, 'The identity provider cannot be reached now.'),
  /** A status no other code has (a client reading an unexpected answer). */
  GH_REFUSED: entry(0, 'refused', 'refused'),
} as const satisfies Record<string, CodeEntry>;

export type RefusalCode = keyof typeof CODES;

/** The code a status is read as: the one with the client's words for it, else the first with that status. */
const byStatus = new Map<number, RefusalCode>();
for (const [code, e] of Object.entries(CODES) as [RefusalCode, CodeEntry][]) {
  if (e.says !== undefined || !byStatus.has(e.status)) byStatus.set(e.status, code);
}

/** The code a client reads a gateway's status as: its exit code and its words come from there. */
export function codeForStatus(status: number): RefusalCode {
  return byStatus.get(status) ?? 'GH_REFUSED';
}

