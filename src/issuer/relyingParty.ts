// The issuer as an OpenID relying party of the site's provider (openid-client): discovery, the device
// authorization grant (RFC 8628) for terminals, the code flow with PKCE S256, state and nonce for browsers.
// It hands back only the ID token's validated claims and when the IdP session ends: the IdP's tokens stop here.
import * as oidc from 'openid-client';

export interface ProviderConnection {
  /** The OpenID issuer URL (discovery at `<url>/.well-known/openid-configuration`). */
  url: string;
  clientId: string;
  /** Confidential clients only (the browser's code flow). */
  clientSecret?: string;
  /**
   * How long one request to the provider may take (openid-client's default is 30 s): a frozen IdP makes the
   * client's login request a 503 in this time, before the client's own request gives up.
   */
  timeoutSeconds?: number;
  /** A fetch with the trust the site needs (a private CA); default the global fetch. */
  fetch?: typeof fetch;
}

/** What a completed login gives the claim rules. */
export interface Login {
  claims: Record<string, unknown>;
  /** When the IdP session ends, if the provider says (`refresh_expires_in`, as Keycloak does). */
  sessionEndsAt?: Date;
}

export type LoginFailureCode = 'state-mismatch' | 'code-rejected' | 'denied' | 'expired' | 'provider-error';
export type LoginResult = { ok: true; login: Login } | { ok: false; code: LoginFailureCode; reason: string };
/** One poll of the provider's token endpoint for a device login: still waiting, asked to slow down, or done. */
export type DevicePoll = { ok: false; code: 'pending' | 'slow-down'; reason: string } | LoginResult;

export interface DeviceLogin {
  userCode: string;
  verificationUri: string;
  verificationUriComplete?: string;
  expiresIn: number;
  /** Kept by the issuer for polling; holds the device code, never shown to anyone but the provider. */
  response: oidc.DeviceAuthorizationResponse;
}

/** The browser's login in progress: kept server-side (or sealed) until the callback. */
export interface CodeLogin {
  url: string;
  redirectUri: string;
  state: string;
  nonce: string;
  verifier: string;
}

export interface RelyingParty {
  startDevice(scope?: string): Promise<DeviceLogin>;
  /** Polls until the user approves or denies, the code expires, or `signal` aborts. */
  finishDevice(device: DeviceLogin, signal?: AbortSignal): Promise<LoginResult>;
  /** Asks the provider once whether the user approved (the issuer polls on its client's poll, within the provider's interval). */
  pollDevice(deviceCode: string): Promise<DevicePoll>;
  startCode(redirectUri: string, scope?: string): Promise<CodeLogin>;
  /** `callback`: the URL the provider sent the browser back to (code and state in its query). */
  finishCode(callback: URL, login: CodeLogin): Promise<LoginResult>;
}

const defaultScope = 'openid profile email groups';

/** An openid-client error in the issuer's words: the provider's error code, or the check that failed. */
function failure(error: unknown): LoginResult {
  const e = error as { code?: string; cause?: { error?: string; error_description?: string } | Error; message?: string };
  const providerError = e.cause !== undefined && !(e.cause instanceof Error) ? e.cause.error : undefined;
  const detail = `${e.message ?? String(error)}${e.cause instanceof Error ? `: ${e.cause.message}` : providerError ? `: ${providerError}` : ''}`;
  if (providerError === 'invalid_grant') return { ok: false, code: 'code-rejected', reason: `the provider refused the code (used already, expired or not for this client): ${detail}` };
  if (providerError === 'access_denied') return { ok: false, code: 'denied', reason: `the user or the provider denied the login: ${detail}` };
  if (providerError === 'expired_token') return { ok: false, code: 'expired', reason: `the device code expired before the user approved it: ${detail}` };
  if (e.cause instanceof Error && /"state"/.test(e.cause.message)) return { ok: false, code: 'state-mismatch', reason: `the callback's state is not this login's: ${detail}` };
  return { ok: false, code: 'provider-error', reason: `login failed: ${detail}` };
}

function loginOf(tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers, now = Date.now()): Login {
  const claims = tokens.claims();
  if (claims === undefined) throw new Error('the provider returned no ID token');
  const refreshLeft = (tokens as { refresh_expires_in?: unknown }).refresh_expires_in;
  return { claims: { ...claims }, ...(typeof refreshLeft === 'number' && refreshLeft > 0 && { sessionEndsAt: new Date(now + refreshLeft * 1000) }) };
}

export async function connectProvider(connection: ProviderConnection): Promise<RelyingParty> {
  // The timeout given to discovery is kept by the configuration for every later request.
  const options = { timeout: connection.timeoutSeconds ?? 10, ...(connection.fetch && { [oidc.customFetch]: connection.fetch }) };
  const config = await oidc.discovery(new URL(connection.url), connection.clientId, connection.clientSecret, undefined, options);
  if (connection.fetch) config[oidc.customFetch] = connection.fetch;
  return {
    async startDevice(scope = defaultScope) {
      const response = await oidc.initiateDeviceAuthorization(config, { scope });
      return { userCode: response.user_code, verificationUri: response.verification_uri, ...(response.verification_uri_complete !== undefined && { verificationUriComplete: response.verification_uri_complete }), expiresIn: response.expires_in, response };
    },
    async finishDevice(device, signal) {
      try {
        return { ok: true, login: loginOf(await oidc.pollDeviceAuthorizationGrant(config, device.response, undefined, signal ? { signal } : undefined)) };
      } catch (error) {
        return failure(error);
      }
    },
    async pollDevice(deviceCode) {
      try {
        // The same token request and response checks as pollDeviceAuthorizationGrant, without its loop.
        return { ok: true, login: loginOf(await oidc.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:device_code', { device_code: deviceCode })) };
      } catch (error) {
        const word = error instanceof oidc.ResponseBodyError ? error.error : undefined;
        if (word === 'authorization_pending') return { ok: false, code: 'pending', reason: 'the user has not approved yet' };
        if (word === 'slow_down') return { ok: false, code: 'slow-down', reason: 'the provider asks to poll less often' };
        return failure(error);
      }
    },
    async startCode(redirectUri, scope = defaultScope) {
      const verifier = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const nonce = oidc.randomNonce();
      const url = oidc.buildAuthorizationUrl(config, { redirect_uri: redirectUri, scope, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state, nonce });
      return { url: url.toString(), redirectUri, state, nonce, verifier };
    },
    async finishCode(callback, login) {
      try {
        const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: login.verifier, expectedState: login.state, expectedNonce: login.nonce, idTokenExpected: true });
        return { ok: true, login: loginOf(tokens) };
      } catch (error) {
        return failure(error);
      }
    },
  };
}
