// Signing in without server state: verifies a token for THIS certificate (signature, revocation,
// expiry, certificate binding) and turns it into the session token, attenuated by the gateway.
import { refuse, type Refusal } from '../errors/refusal.ts';
import { classifyFailure } from '../token/biscuitErrors.ts';
import { addRequestFacts } from '../authz/policy/requestFacts.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import { biscuit, biscuitErrorText, datalogParameters, toolLimits } from '../token/biscuitModule.ts';
import { inspectToken, type InspectedBlock } from '../token/inspectToken.ts';
import { parseToken, type VerifyingKeys } from '../token/parseToken.ts';

export interface VerifiedToken {
  user: string;
  groups: string[];
  revocationIds: string[];
  blocks: InspectedBlock[];
  /** Earliest expiry the token states, if any. */
  expiresAt?: Date;
}

export type TokenCheck =
  | { ok: true; token: VerifiedToken }
  | ({ ok: false; user?: string; revocationIds?: string[] } & Refusal);

/**
 * Checks of a token that name request facts (route, method, path, ...) cannot be judged at sign-in:
 * every request is authorized on its own later. The others depend only on the time and the client
 * certificate, which are known now: one of those failing means the token is of no use here.
 */
const REQUEST_SHAPED = /\b(route|protocol|method|host|path|param)\s*\(/;

/** The placeholder route name of the sign-in facts; no route may be named like this (names start with a letter or digit). */
const SIGN_IN_ROUTE = '.sign-in';

/**
 * Verifies `text` for the certificate `identity` now. Signature and revocation first (no Datalog for a
 * revoked token), then the token's own checks against the time and the certificate.
 */
export function verifyForCertificate(text: string, publicKey: VerifyingKeys, identity: PeerIdentity, sourceIp: string, isRevoked: (ids: readonly string[]) => boolean, now = new Date()): TokenCheck {
  const inspected = inspectToken(text, publicKey);
  if (!inspected.ok) return { ok: false, ...refuse('GH_TOKEN_FOREIGN', inspected.error.message) };
  const { user, groups, revocationIds, blocks, expiresAt } = inspected.value;
  const known = { ...(user !== undefined && { user }), revocationIds };
  if (isRevoked(revocationIds)) return { ok: false, ...refuse('GH_TOKEN_REVOKED', 'a revocation id of the token is on the revocation list'), ...known };
  if (user === undefined) return { ok: false, ...refuse('GH_TOKEN_NO_USER', 'the authority block has no user("name") fact'), revocationIds };
  const expiry = expiresAt === undefined ? undefined : new Date(expiresAt);
  if (expiry !== undefined && expiry.getTime() <= now.getTime()) return { ok: false, ...refuse('GH_TOKEN_EXPIRED', `the token expired at ${expiresAt}`), ...known };

  const parsed = parseToken(text, publicKey);
  if (!parsed.ok) return { ok: false, ...refuse('GH_TOKEN_FOREIGN', parsed.error.message), ...known };
  const builder = new biscuit.AuthorizerBuilder();
  let authorizer;
  try {
    addRequestFacts(builder, { time: now, route: SIGN_IN_ROUTE, protocol: 'http', params: {}, sourceIp, client: identity });
    builder.addCode('allow if true;');
    // Consumes the builder, whether it succeeds or not.
    authorizer = builder.buildAuthenticated(parsed.value);
  } catch (error) {
    parsed.value.free();
    return { ok: false, ...refuse('GH_TOKEN_REJECTED', `the token cannot be loaded: ${biscuitErrorText(error)}`), ...known };
  }
  try {
    authorizer.authorizeWithLimits(toolLimits);
  } catch (error) {
    const failure = classifyFailure(error);
    if (failure.kind !== 'no-matching-policy' && failure.kind !== 'unauthorized') {
      return { ok: false, ...refuse('GH_TOKEN_CHECK_UNAVAILABLE', `sign-in check: ${failure.kind}: ${'detail' in failure ? failure.detail : ''}`), ...known };
    }
    const fatal = failure.checks.filter((c) => !REQUEST_SHAPED.test(c.rule.replace(/"(?:[^"\\]|\\.)*"/g, '""')));
    if (fatal.length > 0) {
      const expired = fatal.some((c) => /\btime\s*\(/.test(c.rule));
      return { ok: false, ...refuse(expired ? 'GH_TOKEN_EXPIRED' : 'GH_TOKEN_WRONG_CERTIFICATE', `failing checks at sign-in: ${fatal.map((c) => `${c.origin}: ${c.rule}`).join('; ')}`), ...known };
    }
  } finally {
    authorizer.free();
    parsed.value.free();
  }
  return { ok: true, token: { user, groups, revocationIds, blocks, ...(expiry !== undefined && { expiresAt: expiry }) } };
}

/**
 * The session token: `text` with one more block, written by the gateway, that binds it to the
 * certificate and the session's end and keeps it to HTTP and WebSocket (no raw tunnels from a cookie).
 * Attenuation needs no private key; the token's revocation ids carry over, so revoking it ends the session.
 */
export function mintSessionToken(text: string, publicKey: VerifyingKeys, fingerprint: string, expiresAt: Date, host?: string): { ok: true; token: string } | { ok: false; reason: string } {
  const parsed = parseToken(text, publicKey);
  if (!parsed.ok) return { ok: false, reason: parsed.error.message };
  try {
    const block = biscuit.Biscuit.block_builder();
    // A session handed to a service's own origin is bound to that host too: its cookie cannot be replayed elsewhere.
    const hostCheck = host === undefined ? '' : '\ncheck if host({host});';
    block.addCodeWithParameters(
      `check if client_fingerprint({fingerprint});\ncheck if time($time), $time <= {expires};\ncheck if protocol($p), {protocols}.contains($p);${hostCheck}`,
      datalogParameters({ fingerprint, expires: expiresAt, protocols: new Set(['http', 'websocket']), ...(host !== undefined && { host }) }),
      {},
    );
    const session = parsed.value.appendBlock(block);
    try {
      return { ok: true, token: session.toBase64() };
    } finally {
      session.free();
    }
  } catch (error) {
    return { ok: false, reason: `cannot attenuate the token: ${biscuitErrorText(error)}` };
  } finally {
    parsed.value.free();
  }
}
