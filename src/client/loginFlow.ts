// The device flow (RFC 8628) as `gatehouse login` runs it against the gateway, and refresh and logout:
// start, poll at the interval the gateway gives (slowing down when told), read the issued token.
import type { GatewayEndpoint } from './gatewayEndpoint.ts';
import { postLogin, refusalWords, secondsField, stringField, type JsonAnswer } from './loginClient.ts';
import { describeFailure, type TunnelFailure } from './tunnelFailure.ts';
import { tokenProblem, type LoginFacts, type StoredToken } from './tokenFile.ts';

/** What the user asks the issuer for (each narrows what the rules allow). */
export interface LoginAsk {
  groups?: string[];
  routes?: string[];
  ttl?: string;
}

export interface DeviceStart {
  login: string;
  userCode: string;
  verificationUri: string;
  verificationUriComplete?: string;
  expiresInSeconds: number;
  intervalSeconds: number;
}

/**
 * A step that did not give a token: `refused` when the gateway answered no (the same request will not do
 * better; the exit code follows its status), else the gateway could not be asked or answered oddly.
 */
export type LoginFailure = { ok: false; refused: boolean; status?: number; reason: string; failure?: TunnelFailure };

const failed = (endpoint: GatewayEndpoint, failure: TunnelFailure): LoginFailure => ({ ok: false, refused: false, reason: describeFailure(failure, endpoint.label, 'login'), failure });
const refusedBy = (answer: JsonAnswer): LoginFailure => ({ ok: false, refused: true, status: answer.status, reason: refusalWords(answer) });

/** RFC 8628 3.5: without an interval the client waits 5 s; slow_down adds 5 s. */
const DEFAULT_INTERVAL_S = 5;
const SLOW_DOWN_STEP_S = 5;

export async function startDeviceLogin(endpoint: GatewayEndpoint, ask: LoginAsk & { delegationKey?: string; csr?: string }): Promise<{ ok: true; start: DeviceStart } | LoginFailure> {
  const posted = await postLogin(endpoint, '/device', ask);
  if (!posted.ok) return failed(endpoint, posted.failure);
  const { answer } = posted;
  if (answer.status !== 200) return refusedBy(answer);
  const b = answer.body;
  const start: DeviceStart = {
    login: stringField(b, 'login'),
    userCode: stringField(b, 'userCode'),
    verificationUri: stringField(b, 'verificationUri'),
    ...(stringField(b, 'verificationUriComplete') && { verificationUriComplete: stringField(b, 'verificationUriComplete') }),
    expiresInSeconds: secondsField(b, 'expiresIn', 600),
    intervalSeconds: secondsField(b, 'interval', DEFAULT_INTERVAL_S),
  };
  if (!start.login || !start.userCode || !/^https:\/\//.test(start.verificationUri)) return { ok: false, refused: false, reason: `unexpected answer from ${endpoint.label}: no login handle, user code or https verification URL` };
  return { ok: true, start };
}

/** The token answer (device poll and refresh share it) as what the token file stores. */
function issuedOf(endpoint: GatewayEndpoint, answer: JsonAnswer): { ok: true; stored: StoredToken & { login: LoginFacts }; certificate?: string } | LoginFailure {
  const b = answer.body;
  const token = stringField(b, 'token');
  const login: LoginFacts = {
    gateway: endpoint.label,
    user: stringField(b, 'user'),
    obtainedAt: new Date().toISOString(),
    expiresAt: stringField(b, 'expiresAt'),
    refreshUntil: stringField(b, 'refreshUntil'),
    revocationId: stringField(b, 'revocationId'),
  };
  if (tokenProblem(token, 'the token') !== undefined || Number.isNaN(Date.parse(login.expiresAt))) return { ok: false, refused: false, reason: `unexpected answer from ${endpoint.label}: no usable token or expiry` };
  const certificate = stringField(b, 'certificate');
  return { ok: true, stored: { token, login }, ...(certificate && { certificate }) };
}

export interface PollEvents {
  /** Told to slow down: the new interval in seconds. */
  slowedDown?: (intervalSeconds: number) => void;
  /** Waits `ms` (tests and the command pass timers; an abort ends the wait early). */
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Polls until the user confirmed (the token), refused, or the code expired. The interval is the gateway's,
 * raised on every slow_down to its new one (or by 5 s, RFC 8628 3.5) and to any Retry-After it sends.
 * A network failure is retried at the interval until the code expires (a gateway restart is not a refusal).
 */
export async function pollDeviceLogin(endpoint: GatewayEndpoint, start: DeviceStart, events: PollEvents = {}): Promise<{ ok: true; stored: StoredToken & { login: LoginFacts }; certificate?: string } | LoginFailure> {
  const sleep = events.sleep ?? defaultSleep;
  const deadline = Date.now() + start.expiresInSeconds * 1000;
  let interval = start.intervalSeconds;
  let lastFailure: LoginFailure | undefined;
  while (Date.now() < deadline) {
    await sleep(interval * 1000);
    const posted = await postLogin(endpoint, '/device/token', { login: start.login });
    if (!posted.ok) {
      lastFailure = failed(endpoint, posted.failure);
      continue;
    }
    const { answer } = posted;
    const word = stringField(answer.body, 'error');
    if (answer.status === 200) return issuedOf(endpoint, answer);
    if (answer.status === 202 || word === 'authorization_pending') {
      interval = Math.max(interval, secondsField(answer.body, 'interval', interval));
      continue;
    }
    if (answer.status === 429 || word === 'slow_down') {
      interval = Math.max(secondsField(answer.body, 'interval', interval + SLOW_DOWN_STEP_S), answer.retryAfterSeconds ?? 0, interval + 1);
      events.slowedDown?.(interval);
      continue;
    }
    if (answer.status === 410 || word === 'expired_token') return { ok: false, refused: true, status: 410, reason: 'the code expired before the sign-in was confirmed; run gatehouse login again' };
    return refusedBy(answer);
  }
  return lastFailure ?? { ok: false, refused: true, status: 410, reason: 'the code expired before the sign-in was confirmed; run gatehouse login again' };
}

/** A new token for `token` (same login, new expiry) from the gateway's refresh endpoint. */
export async function refreshLogin(endpoint: GatewayEndpoint, token: string): Promise<{ ok: true; stored: StoredToken & { login: LoginFacts } } | LoginFailure> {
  const posted = await postLogin(endpoint, '/refresh', {}, token);
  if (!posted.ok) return failed(endpoint, posted.failure);
  return posted.answer.status === 200 ? issuedOf(endpoint, posted.answer) : refusedBy(posted.answer);
}

/** Revokes every token of `token`'s login on the gateway; the revocation ids it reports. */
export async function logoutLogin(endpoint: GatewayEndpoint, token: string): Promise<{ ok: true; revoked: string[] } | LoginFailure> {
  const posted = await postLogin(endpoint, '/logout', {}, token);
  if (!posted.ok) return failed(endpoint, posted.failure);
  if (posted.answer.status !== 200) return refusedBy(posted.answer);
  const revoked = posted.answer.body.revoked;
  return { ok: true, revoked: Array.isArray(revoked) ? revoked.filter((r): r is string => typeof r === 'string') : [] };
}
