// What the issuer's JSON endpoints share: the request body read as bounded JSON, the refusal answered in the
// wire contract's shape (an OAuth word, the GH_ code, a short message) with the full reason in its record.
import type { IncomingMessage } from 'node:http';
import { refuse, type Refusal, type RefusalCode } from '../errors/refusal.ts';
import type { IssueRefusalCode } from '../issuer/claimGrant.ts';
import { recordLogin, sendJson, type LoginCall } from './loginPages.ts';

/** The largest login request body: a few names, a lifetime, a delegation key and a CSR fit well within it. */
export const MAX_LOGIN_BODY_BYTES = 16 * 1024;

export type JsonBody = { ok: true; value: Record<string, unknown> } | { ok: false; refusal: Refusal };

/** The body's bytes up to `limit`; a larger body is cut off (the connection with it). */
async function bodyBytes(req: IncomingMessage, limit: number): Promise<Buffer | 'too-large' | 'broken'> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) {
        req.destroy();
        return 'too-large';
      }
      chunks.push(chunk);
    }
  } catch {
    return 'broken';
  }
  return Buffer.concat(chunks);
}

/** Reads a JSON object body up to `limit` bytes; an empty body is `{}` (refresh and logout need none). */
export async function readJsonBody(req: IncomingMessage, limit = MAX_LOGIN_BODY_BYTES): Promise<JsonBody> {
  const bad = (reason: string, clientReason?: string): JsonBody => ({ ok: false, refusal: refuse('GH_LOGIN_BAD_REQUEST', reason, clientReason !== undefined ? { clientReason } : {}) });
  const tooLarge: JsonBody = { ok: false, refusal: refuse('GH_FORM_TOO_LARGE', `login request body over ${limit} bytes`, { headers: { connection: 'close' } }) };
  // A declared length over the limit is answered without reading a byte of the body (the connection closes after).
  if (Number(req.headers['content-length'] ?? 0) > limit) return tooLarge;
  const bytes = await bodyBytes(req, limit);
  if (bytes === 'too-large') return tooLarge;
  if (bytes === 'broken') return bad('request body broken off');
  const text = bytes.toString('utf8').trim();
  if (text === '') return { ok: true, value: {} };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return bad(`request body is not JSON: ${(error as Error).message}`, 'request body is not JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return bad('request body is not a JSON object', 'request body must be a JSON object');
  return { ok: true, value: value as Record<string, unknown> };
}

/** The OAuth (RFC 6749 / RFC 8628) word a refusal is answered with, by its code. */
export function oauthWord(code: RefusalCode): string {
  switch (code) {
    case 'GH_LOGIN_BAD_REQUEST':
    case 'GH_FORM_TOO_LARGE':
    case 'GH_ISSUE_TTL_INVALID':
      return 'invalid_request';
    case 'GH_LOGIN_SLOW_DOWN':
      return 'slow_down';
    case 'GH_LOGIN_EXPIRED':
      return 'expired_token';
    case 'GH_LOGIN_UNKNOWN':
      return 'invalid_grant';
    case 'GH_ISSUE_PROVIDER_UNAVAILABLE':
    case 'GH_ISSUE_MINT_FAILED':
      return 'temporarily_unavailable';
    case 'GH_ISSUE_PROVIDER_ERROR':
      return 'server_error';
    default:
      return code.startsWith('GH_ISSUE_') ? 'access_denied' : 'invalid_token';
  }
}

const ISSUE_CODES: Record<IssueRefusalCode, RefusalCode> = {
  'claims-incomplete': 'GH_ISSUE_CLAIMS_INCOMPLETE',
  'certificate-mismatch': 'GH_ISSUE_CERTIFICATE_MISMATCH',
  'no-group-allowed': 'GH_ISSUE_NO_GROUP_ALLOWED',
  'group-not-allowed': 'GH_ISSUE_GROUP_NOT_ALLOWED',
  'route-not-allowed': 'GH_ISSUE_ROUTE_NOT_ALLOWED',
  'idp-session-expired': 'GH_ISSUE_IDP_SESSION_EXPIRED',
  'ttl-invalid': 'GH_ISSUE_TTL_INVALID',
  'mint-failed': 'GH_ISSUE_MINT_FAILED',
};

/** The GH_ code of a claim rules' refusal (its status and default message come from the table). */
export function issueRefusalCode(code: IssueRefusalCode): RefusalCode {
  return ISSUE_CODES[code];
}

/** Answers a refusal in the contract's shape; `extra` joins the body (the interval of slow_down). */
export function sendRefusal(call: LoginCall, refusal: Refusal, extra: Record<string, unknown> = {}): void {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(refusal.headers ?? {})) headers[name] = String(value);
  sendJson(call.res, refusal.status, { error: oauthWord(refusal.code), code: refusal.code, message: refusal.clientReason, ...extra }, headers);
}

/** Refuses with the exchange's `request` record (protocol errors: a bad body, an unknown login, polling too fast). */
export function refuseLogin(call: LoginCall, refusal: Refusal, extra: Record<string, unknown> = {}, detail: Record<string, unknown> = {}): void {
  recordLogin(call.exchange, { event: 'request', method: call.req.method ?? 'POST', path: call.path, decision: 'deny', status: refusal.status, reason: refusal.reason, detail: { code: refusal.code, ...detail } });
  sendRefusal(call, refusal, extra);
}
