// The test OpenID provider is real: `oidc-provider` in its own process over HTTPS, driven by
// `openid-client` (the relying-party library the issuer uses) through discovery, the device
// authorization grant (RFC 8628) and the authorization code flow with PKCE S256 and exact redirect URIs.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { completeInteraction, startOidcProvider, testAccounts, type TestOidcProvider } from './support/oidcProvider.ts';
import { makeTestPki } from './support/pki.ts';

let idp: TestOidcProvider;
const [alice, bob] = testAccounts;

beforeAll(async () => {
  const pki = await makeTestPki(join(mkdtempSync(join(tmpdir(), 'gatehouse-oidc-')), 'certs'));
  idp = await startOidcProvider(pki);
});

afterAll(async () => {
  await idp?.stop();
});

const discover = async (clientId: string, secret?: string): Promise<client.Configuration> => {
  const config = await client.discovery(new URL(idp.issuer), clientId, secret, undefined, { [client.customFetch]: idp.fetch });
  config[client.customFetch] = idp.fetch;
  return config;
};

describe('the test OpenID provider', () => {
  it('publishes its discovery document with the device and token endpoints and S256', async () => {
    const config = await discover(idp.deviceClientId);
    const metadata = config.serverMetadata();
    expect(metadata.issuer).toBe(idp.issuer);
    expect(metadata.device_authorization_endpoint).toBe(`${idp.issuer}/device/auth`);
    expect(metadata.code_challenge_methods_supported).toEqual(['S256']);
    expect(metadata.grant_types_supported).toContain('urn:ietf:params:oauth:grant-type:device_code');
  });

  it('runs the device flow: the user approves the code in the provider\'s pages, the terminal gets an ID token with her claims', async () => {
    if (alice === undefined) throw new Error('no test account');
    const config = await discover(idp.deviceClientId);
    const device = await client.initiateDeviceAuthorization(config, { scope: 'openid profile email groups' });
    expect(device.user_code).toMatch(/^[A-Z]{4}-?[A-Z]{4}$/);
    const polled = client.pollDeviceAuthorizationGrant(config, device);
    const outcome = await completeInteraction(idp, device.verification_uri_complete ?? '', alice);
    expect(outcome.status).toBe(200);
    expect(outcome.finalPage).toMatch(/Sign-in Success|signed in|success/i);
    const tokens = await polled;
    const claims = tokens.claims();
    expect(claims).toMatchObject({ iss: idp.issuer, sub: alice.sub, preferred_username: 'alice', groups: ['hpc', 'staff'], email: 'alice@example.org' });
  });

  it('runs the code flow with PKCE S256, state and nonce, and refuses a replayed code', async () => {
    if (bob === undefined) throw new Error('no test account');
    const config = await discover(idp.web.clientId, idp.web.clientSecret);
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, { redirect_uri: idp.web.redirectUri, scope: 'openid profile groups', code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state, nonce });
    const outcome = await completeInteraction(idp, url.toString(), bob);
    expect(outcome.redirectedTo?.startsWith(`${idp.web.redirectUri}?code=`)).toBe(true);
    const back = new URL(outcome.redirectedTo ?? '');
    const tokens = await client.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
    expect(tokens.claims()).toMatchObject({ sub: bob.sub, preferred_username: 'bob', groups: ['hpc', 'students'] });
    const replay = await client.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce }).catch((e: unknown) => e);
    expect(replay).toMatchObject({ code: 'OAUTH_RESPONSE_BODY_ERROR', cause: { error: 'invalid_grant' } });
  });

  it('refuses a wrong password, a wrong state and a redirect URI not registered exactly', async () => {
    if (alice === undefined) throw new Error('no test account');
    const config = await discover(idp.web.clientId, idp.web.clientSecret);
    const verifier = client.randomPKCECodeVerifier();
    const params = { scope: 'openid', code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state: client.randomState() };
    const wrongPassword = await completeInteraction(idp, client.buildAuthorizationUrl(config, { ...params, redirect_uri: idp.web.redirectUri }).toString(), { username: 'alice', password: 'guess' });
    expect(wrongPassword.status).toBe(401);
    const other = await completeInteraction(idp, client.buildAuthorizationUrl(config, { ...params, redirect_uri: `${idp.web.redirectUri}/x` }).toString(), alice);
    expect(other.redirectedTo).toBeUndefined();
    expect(other.finalPage).toMatch(/redirect_uri/);
    const done = await completeInteraction(idp, client.buildAuthorizationUrl(config, { ...params, redirect_uri: idp.web.redirectUri }).toString(), alice);
    const wrong = await client.authorizationCodeGrant(config, new URL(done.redirectedTo ?? ''), { pkceCodeVerifier: verifier, expectedState: 'another-state' }).catch((e: unknown) => e);
    expect(wrong).toMatchObject({ code: 'OAUTH_INVALID_RESPONSE' });
    expect(String((wrong as Error).cause)).toMatch(/unexpected "state" response parameter value/);
  });
});
