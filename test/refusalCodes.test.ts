// The refusal table is a contract: every code's status, client message and client exit code, and how a
// client reads a gateway's status (its words and exit code) back from the same table.
import { describe, expect, it } from 'vitest';
import { CODES, EXIT, codeForStatus, GatehouseError, refuse, refusalOf, RefusalError } from '../src/errors/refusal.ts';
import { describeFailure, exitCodeFor } from '../src/client/tunnelFailure.ts';
import { PkiError } from '../src/pki/errors.ts';

/** code: [status, client message, exit code of `gatehouse tunnel` on that status]. */
const TABLE = {
  GH_BAD_REQUEST: [400, 'bad request', 5],
  GH_BAD_PATH: [400, 'invalid request path', 5],
  GH_BAD_TUNNEL_NAME: [400, 'invalid tunnel name', 5],
  GH_MISSING_HOST: [400, 'missing Host header', 5],
  GH_MANY_HOSTS: [400, 'more than one Host header', 5],
  GH_NO_SERVICES: [400, 'no services named', 5],
  GH_BAD_PUBLISH: [400, 'invalid publish registration', 5],
  GH_BAD_CONNECT_TARGET: [400, 'CONNECT target must be <route>:<port>', 5],
  GH_BAD_HANDSHAKE: [400, 'expected a WebSocket upgrade', 5],
  GH_BAD_SUBPROTOCOL: [400, 'expected subprotocol', 5],
  GH_UPGRADE_NOT_GET: [400, 'WebSocket upgrade must be GET', 5],
  GH_BAD_UPGRADE: [400, 'unsupported upgrade', 5],
  GH_BAD_NEXT: [400, 'the page to return to is not on this gateway', 5],
  GH_NO_TOKEN_GIVEN: [400, 'no token given', 5],
  GH_FOREIGN_PAGE: [400, 'That page is not served by this gateway.', 5],
  GH_CSR_INVALID: [400, 'invalid certificate request', 5],
  GH_CSR_REQUIRED: [400, 'without a client certificate, a login must send a csr', 5],
  GH_TOKEN_MISSING: [401, 'missing bearer token', 4],
  GH_TOKEN_INVALID: [401, 'invalid token', 4],
  GH_TOKEN_TOO_LARGE: [401, 'token too large', 4],
  GH_TOKEN_FOREIGN: [401, 'token not valid for this gateway', 4],
  GH_SESSION_INVALID: [401, 'invalid session; sign in again', 4],
  GH_SIGN_IN_FIRST: [401, 'Sign in first.', 4],
  GH_DENIED: [403, 'denied by policy', 4],
  GH_TOKEN_EXPIRED: [403, 'token expired', 4],
  GH_TOKEN_REVOKED: [403, 'token revoked', 4],
  GH_TOKEN_REJECTED: [403, 'token rejected', 4],
  GH_TOKEN_WRONG_CERTIFICATE: [403, 'token not valid with this certificate', 4],
  GH_TOKEN_NO_USER: [403, 'token names no user', 4],
  GH_TOKEN_MANY_USERS: [403, 'token names more than one user', 4],
  GH_NO_PUBLISH_RIGHT: [403, 'token carries no right to publish', 4],
  GH_PUBLISH_DISABLED: [403, 'publishing is not enabled on this gateway', 4],
  GH_RUN_LIMIT: [403, 'run limit exceeded', 4],
  GH_POLICY_ERROR: [403, 'policy evaluation failed', 4],
  GH_CROSS_ORIGIN: [403, 'cross-origin request refused', 4],
  GH_CROSS_SITE_FORM: [403, 'sign-in form posted from another site', 4],
  GH_CROSS_SITE_HANDOFF: [403, 'The request came from another site.', 4],
  GH_CERTIFICATE_REQUIRED: [403, 'a client certificate is required here', 4],
  GH_NO_ROUTE: [404, 'no route', 4],
  GH_NO_TUNNEL_ROUTE: [404, 'no such route', 4],
  GH_NO_PAGE: [404, 'no such gateway page', 4],
  GH_REQUEST_TIMEOUT: [408, 'request timeout', 5],
  GH_FORM_TOO_LARGE: [413, 'form too large or incomplete', 5],
  GH_FORM_TOKEN_TOO_LARGE: [413, 'token too large', 5],
  GH_EXPECTATION: [417, 'expectation not supported', 5],
  GH_UNAUTHENTICATED_CONNECTION: [421, 'connection not authenticated', 5],
  GH_UPGRADE_REQUIRED: [426, 'tunnel endpoint needs a WebSocket upgrade', 5],
  GH_RATE_LIMITED: [429, 'too many requests', 5],
  GH_TOO_MANY_PUBLISHERS: [429, 'too many publishers', 5],
  GH_TOO_MANY_SERVICES: [429, 'too many published services', 5],
  GH_HEADERS_TOO_LARGE: [431, 'request header fields too large', 5],
  GH_CLIENT_CLOSED: [499, 'client left', 5],
  GH_UNSUPPORTED_CODING: [501, 'unsupported transfer coding', 5],
  GH_UPSTREAM_UNAVAILABLE: [502, 'upstream unavailable', 5],
  GH_AUDIT_UNAVAILABLE: [503, 'gateway unavailable', 5],
  GH_KEY_UNAVAILABLE: [503, 'gateway unavailable', 5],
  GH_AUTHZ_UNAVAILABLE: [503, 'authorization unavailable', 5],
  GH_TOKEN_CHECK_UNAVAILABLE: [503, 'cannot check the token now', 5],
  GH_SESSION_UNAVAILABLE: [503, 'cannot start a session', 5],
  GH_HANDOFF_UNAVAILABLE: [503, 'Cannot hand the session over now.', 5],
  GH_DRAINING: [503, 'gateway shutting down', 5],
  GH_NOT_PUBLISHED: [503, 'service not published', 5],
  GH_SERVICE_BUSY: [503, 'service busy', 5],
  GH_ISSUE_CLAIMS_INCOMPLETE: [403, 'the identity provider did not name you', 4],
  GH_ISSUE_CERTIFICATE_MISMATCH: [403, 'your login does not match your client certificate', 4],
  GH_ISSUE_NO_GROUP_ALLOWED: [403, 'none of your groups may receive a token here', 4],
  GH_ISSUE_GROUP_NOT_ALLOWED: [403, 'a group you asked for may not receive tokens here', 4],
  GH_ISSUE_ROUTE_NOT_ALLOWED: [403, 'your groups may not receive a route you asked for', 4],
  GH_ISSUE_IDP_SESSION_EXPIRED: [403, 'your identity provider session has ended; log in again', 4],
  GH_ISSUE_TTL_INVALID: [400, 'invalid token lifetime', 5],
  GH_ISSUE_MINT_FAILED: [503, 'cannot issue a token now', 5],
  GH_ISSUE_DENIED: [403, 'the login was denied at the identity provider', 4],
  GH_ISSUE_PROVIDER_UNAVAILABLE: [503, 'the identity provider cannot be reached now', 5],
  GH_ISSUE_PROVIDER_ERROR: [502, 'the identity provider refused the login; log in again', 5],
  GH_LOGIN_BAD_REQUEST: [400, 'invalid login request', 5],
  GH_LOGIN_UNKNOWN: [404, 'no such login (finished, expired, or started with another certificate)', 4],
  GH_LOGIN_EXPIRED: [410, 'the login expired before it was approved; log in again', 5],
  GH_LOGIN_SLOW_DOWN: [429, 'polling too fast; slow down', 5],
  GH_REFRESH_NOT_ISSUED: [401, "this token was not issued by this gateway's login; log in again", 4],
  GH_REFRESH_ATTENUATED: [403, 'only a token as issued can be refreshed', 4],
  GH_REFRESH_LIMIT: [403, 'refresh limit reached; log in again', 4],
  GH_LOGIN_STATE_UNKNOWN: [400, 'This sign-in is not known (it was used already or took too long). Start again.', 5],
  GH_LOGIN_FOREIGN: [403, 'This sign-in was started in another browser or with another certificate. Start again here.', 4],
  GH_LOGIN_IDP_REFUSED: [403, 'The identity provider did not confirm this sign-in. Start again.', 4],
  GH_LOGIN_NOT_ISSUED: [403, 'Your identity provider account may not sign in here.', 4],
  GH_LOGIN_IDP_UNAVAILABLE: [503, 'The identity provider cannot be reached now.', 5],
  GH_REFUSED: [0, 'refused', 5],
} as const;

describe('refusal codes', () => {
  it('every code has the status, client message and exit code the table fixes', () => {
    expect(Object.keys(CODES).sort()).toEqual(Object.keys(TABLE).sort());
    for (const [code, [status, message, exit]] of Object.entries(TABLE)) {
      const entry = CODES[code as keyof typeof CODES];
      expect({ code, status: entry.status, message: entry.message, exit: entry.exit }).toEqual({ code, status, message, exit });
    }
  });

  it('the exit codes of `gatehouse tunnel` and `publish` stay as documented', () => {
    expect(EXIT).toEqual({ ok: 0, broken: 1, usage: 2, unreachable: 3, refused: 4, upstream: 5 });
  });

  it('a client reads each status as one code, with the words and exit code it has always used', () => {
    const words: Record<number, [string, number]> = {
      400: ['bad request', 5],
      401: ['not authenticated (token missing, malformed or not signed by the site)', 4],
      403: ['access denied', 4],
      404: ['no such route', 4],
      421: ['connection not authenticated', 5],
      429: ['refused', 5],
      502: ['the gateway could not reach the service', 5],
      503: ['gateway unavailable', 5],
      418: ['refused', 5],
    };
    for (const [status, [said, exit]] of Object.entries(words)) {
      const failure = { kind: 'refused' as const, status: Number(status), reason: 'why' };
      expect(describeFailure(failure, 'gw', 'r')).toMatch(new RegExp(`^gw refused route r: ${status} ${said.replace(/[()]/g, "\\$&")}: "why"( — .*)?$`));
      expect(exitCodeFor(failure)).toBe(exit);
      expect(CODES[codeForStatus(Number(status))].exit).toBe(exit);
    }
  });

  it('refuse() takes the status and message from the code; a client message may name the client input', () => {
    expect(refuse('GH_NO_ROUTE', 'no http route for host "x"')).toEqual({ code: 'GH_NO_ROUTE', reason: 'no http route for host "x"', status: 404, clientReason: 'no route' });
    expect(refuse('GH_RATE_LIMITED', 'over', { headers: { 'retry-after': 3 } }).headers).toEqual({ 'retry-after': 3 });
    expect(refuse('GH_BAD_PUBLISH', 'long reason', { clientReason: 'short' }).clientReason).toBe('short');
  });

  it('the refusal part of a value that carries one keeps its code and leaves the rest behind', () => {
    const denial = { allow: false, user: 'alice', revocationIds: ['ab'], ...refuse('GH_TOKEN_EXPIRED', 'route r: expired') };
    expect(refusalOf(denial)).toEqual({ code: 'GH_TOKEN_EXPIRED', reason: 'route r: expired', status: 403, clientReason: 'token expired' });
    expect(refusalOf(refuse('GH_RATE_LIMITED', 'over'), { 'retry-after': 2 }).headers).toEqual({ 'retry-after': 2 });
  });

  it('thrown errors carry a code', () => {
    const refused = new RefusalError(refuse('GH_SERVICE_BUSY', 'publisher p has 8 streams open'));
    expect(refused).toBeInstanceOf(GatehouseError);
    expect([refused.code, refused.message, refused.refusal.status]).toEqual(['GH_SERVICE_BUSY', 'publisher p has 8 streams open', 503]);
    const pki = new PkiError('ca-missing', 'no CA');
    expect(pki).toBeInstanceOf(GatehouseError);
    expect([pki.name, pki.code, pki.message]).toEqual(['PkiError', 'ca-missing', 'no CA']);
  });
});
