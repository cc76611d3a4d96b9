// The device authorization grant (RFC 8628) for terminals (`gatehouse login`): the client starts a login and
// polls it by its handle; the issuer asks the IdP on those polls (never faster than the IdP's interval) and mints.
import type { AuditRecord } from '../audit/auditRecord.ts';
import { refuse, type Refusal } from '../errors/refusal.ts';
import type { IssuerKey } from '../issuer/issuerKey.ts';
import { LOGIN_PATH } from '../routing/reservedPaths.ts';
import { issuedAnswer } from './issuedAnswer.ts';
import { issueRefusalCode, readJsonBody, refuseLogin, sendRefusal } from './loginAnswers.ts';
import type { LoginDeps } from './loginEndpoints.ts';
import { recordLogin, sendJson, type LoginCall, type LoginEndpoint } from './loginPages.ts';
import { readLoginAsk } from './loginRequest.ts';
import { pendingDevices, type PendingDevice } from './pendingDevices.ts';
import { loginSealKey, openLogin, sealLogin, type SealedLogin } from './sealedLogin.ts';

export const DEVICE_PATH = `${LOGIN_PATH}/device`;
export const DEVICE_TOKEN_PATH = `${LOGIN_PATH}/device/token`;

/** RFC 8628 §3.2: the poll interval when the provider names none. */
const DEFAULT_INTERVAL_SECONDS = 5;
/** RFC 8628 §3.5: each slow_down adds 5 seconds to the interval. */
const SLOW_DOWN_SECONDS = 5;
/** A poll up to a fifth of the interval early still counts as on time: one poll delayed on the way must not turn the next into slow_down. */
const POLL_SLACK = 0.2;

export function deviceEndpoints(deps: LoginDeps): LoginEndpoint[] {
  const pending = pendingDevices(() => {
    const device = deps.issuer.settings()?.device;
    return { maxPending: device?.maxPending ?? 10_000, maxPendingPerCertificate: device?.maxPendingPerCertificate ?? 4 };
  });

  /** The key handles are sealed with, derived once per issuer key (every process and instance of the issuer derives the same). */
  const sealKeys = new WeakMap<IssuerKey, Buffer>();
  const sealKey = (): Buffer | undefined => {
    const current = deps.issuer.key();
    if (!current.ok) return undefined;
    let key = sealKeys.get(current.key);
    if (key === undefined) {
      key = loginSealKey(current.key.privateKey.toString());
      sealKeys.set(current.key, key);
    }
    return key;
  };

  async function start(call: LoginCall): Promise<void> {
    const body = await readJsonBody(call.req);
    if (!body.ok) return refuseLogin(call, body.refusal);
    const asked = readLoginAsk(body.value);
    if (!asked.ok) return refuseLogin(call, asked.refusal);
    const key = sealKey();
    if (key === undefined) return refuseLogin(call, refuse('GH_ISSUE_MINT_FAILED', 'the issuer key cannot be read'));
    const party = await deps.issuer.relyingParty();
    if (!party.ok) return refuseLogin(call, refuse('GH_ISSUE_PROVIDER_UNAVAILABLE', party.reason));
    let device;
    try {
      device = await party.party.startDevice();
    } catch (error) {
      return refuseLogin(call, refuse('GH_ISSUE_PROVIDER_UNAVAILABLE', `device authorization at the provider failed: ${error instanceof Error ? error.message : String(error)}`));
    }
    const { ask } = asked;
    const now = Date.now();
    const sealed: SealedLogin = {
      deviceCode: device.response.device_code,
      fingerprint: call.exchange.conn.identity.fingerprint,
      request: ask.request,
      ...(ask.delegationKey !== undefined && { delegationKey: ask.delegationKey }),
      expiresAt: now + device.expiresIn * 1000,
      interval: device.response.interval ?? DEFAULT_INTERVAL_SECONDS,
    };
    const { pending: login, dropped } = pending.keep(sealLogin(key, sealed), sealed, now, true);
    recordLogin(call.exchange, { event: 'request', method: 'POST', path: call.path, decision: 'allow', status: 200, detail: { login: 'device.start', ref: login.ref, expiresIn: device.expiresIn, ...(dropped > 0 && { dropped }) } });
    sendJson(call.res, 200, {
      login: login.handle,
      userCode: device.userCode,
      verificationUri: device.verificationUri,
      ...(device.verificationUriComplete !== undefined && { verificationUriComplete: device.verificationUriComplete }),
      expiresIn: device.expiresIn,
      interval: login.clientInterval,
    });
  }

  const stillPending = (call: LoginCall, login: PendingDevice, state: string): void => {
    recordLogin(call.exchange, { event: 'request', method: 'POST', path: call.path, decision: 'allow', status: 202, detail: { login: 'device.poll', state, ref: login.ref } });
    sendJson(call.res, 202, { error: 'authorization_pending', interval: login.clientInterval });
  };

  /** The provider's answer is final: the handle is spent here, and the refusal answered with its record. */
  const ended = (call: LoginCall, login: PendingDevice, refusal: Refusal): void => {
    login.finished = true;
    refuseLogin(call, refusal);
  };

  /** A login another process (or instance) started, or one this process dropped: its sealed handle tells all. */
  const takeUp = (handle: string, fingerprint: string, now: number): PendingDevice | undefined => {
    const key = sealKey();
    const sealed = key === undefined ? undefined : openLogin(key, handle);
    if (sealed === undefined || sealed.fingerprint !== fingerprint) return undefined;
    return pending.keep(handle, sealed, now, false).pending;
  };

  async function poll(call: LoginCall): Promise<void> {
    const body = await readJsonBody(call.req);
    if (!body.ok) return refuseLogin(call, body.refusal);
    const handle = body.value.login;
    if (typeof handle !== 'string' || !/^[A-Za-z0-9_-]{1,4096}$/.test(handle)) return refuseLogin(call, refuse('GH_LOGIN_BAD_REQUEST', 'login: not a login handle', { clientReason: 'login: expected the handle the start answered with' }));
    const identity = call.exchange.conn.identity;
    const now = Date.now();
    const login = pending.get(handle, identity.fingerprint) ?? takeUp(handle, identity.fingerprint, now);
    // Another certificate's login is as unknown as a made-up one: a handle alone gives nothing away.
    if (login === undefined || login.finished) return refuseLogin(call, refuse('GH_LOGIN_UNKNOWN', `no pending device login by this handle for this certificate${login?.finished ? ' (answered already)' : ''}`));
    if (now >= login.login.expiresAt) return ended(call, login, refuse('GH_LOGIN_EXPIRED', `the device code expired at ${new Date(login.login.expiresAt).toISOString()} before the user approved it`));

    const last = login.lastClientPoll;
    login.lastClientPoll = now;
    if (last !== undefined && now - last < login.clientInterval * 1000 * (1 - POLL_SLACK)) {
      const was = login.clientInterval;
      login.clientInterval += SLOW_DOWN_SECONDS;
      const reason = `device login polled ${now - last} ms after the previous poll, the interval is ${was} s: now ${login.clientInterval} s`;
      return refuseLogin(call, refuse('GH_LOGIN_SLOW_DOWN', reason, { headers: { 'retry-after': login.clientInterval } }), { interval: login.clientInterval }, { ref: login.ref });
    }
    // The provider is asked at most once per its own interval, whatever the client does.
    if (login.asking || now < login.nextProviderPoll) return stillPending(call, login, 'pending');
    const party = await deps.issuer.relyingParty();
    if (!party.ok) return refuseLogin(call, refuse('GH_ISSUE_PROVIDER_UNAVAILABLE', party.reason));
    login.asking = true;
    login.nextProviderPoll = now + login.providerInterval * 1000;
    const answer = await party.party.pollDevice(login.login.deviceCode).finally(() => (login.asking = false));
    if (!answer.ok) {
      switch (answer.code) {
        case 'pending':
          return stillPending(call, login, 'pending');
        case 'slow-down':
          login.providerInterval += SLOW_DOWN_SECONDS;
          login.nextProviderPoll = Date.now() + login.providerInterval * 1000;
          return stillPending(call, login, 'provider slow_down');
        case 'denied':
          return ended(call, login, refuse('GH_ISSUE_DENIED', answer.reason));
        case 'expired':
          return ended(call, login, refuse('GH_LOGIN_EXPIRED', answer.reason));
        default:
          return ended(call, login, refuse('GH_ISSUE_PROVIDER_ERROR', `${answer.code}: ${answer.reason}`));
      }
    }
    login.finished = true;
    let record: AuditRecord | undefined;
    const result = deps.issuer.issue({
      login: answer.login,
      certificate: identity,
      flow: 'device',
      source: call.exchange.conn.source,
      request: login.login.request,
      ...(login.login.delegationKey !== undefined && { delegationKey: login.login.delegationKey }),
      writeRecord: (made) => (record = made),
    });
    const settings = deps.issuer.settings() ?? { refreshLimit: 0 as const };
    const refusal = result.ok ? undefined : refuse(issueRefusalCode(result.refusal.code), result.refusal.reason, { clientReason: result.refusal.clientReason });
    const status = refusal?.status ?? 200;
    // The token.issue record is the exchange's last record, in full even when it refuses: a refusal here
    // took a completed IdP login, so it cannot be sent faster than the IdP lets anyone log in.
    call.exchange.close({ ...record, method: 'POST', path: call.path, status }, 'completed');
    if (refusal !== undefined) return sendRefusal(call, refusal);
    if (result.ok) sendJson(call.res, 200, issuedAnswer(result.issued, settings));
  }

  return [
    { method: 'POST', path: DEVICE_PATH, handle: start },
    { method: 'POST', path: DEVICE_TOKEN_PATH, handle: poll },
  ];
}
