// Where the IdP sends a browser back after "Sign in with <IdP>": the configured redirect URI, or this
// gateway's callback on the host the browser is on; a Host header that names no host gives none.
import { describe, expect, it } from 'vitest';
import { issuerSettingsSchema } from '../src/config/issuerSettings.ts';
import { redirectUriFor } from '../src/login/browserLogin.ts';
import { testIssuerRules } from './support/issuerFixtures.ts';

const callback = '/.well-known/gatehouse/login/callback';

describe('the redirect URI of the browser sign-in', () => {
  it('is the configured one, whatever host the request came to', () => {
    expect(redirectUriFor(`https://gw.example.org${callback}`, 'other.example.org:8443')).toEqual({ ok: true, uri: `https://gw.example.org${callback}`, host: 'gw.example.org' });
    expect(redirectUriFor(`https://gw.example.org:8443${callback}`, undefined)).toMatchObject({ ok: true, host: 'gw.example.org:8443' });
  });

  it('is derived from the Host header otherwise, the default port dropped as a browser sends it', () => {
    expect(redirectUriFor(undefined, 'GW.example.org:443')).toEqual({ ok: true, uri: `https://gw.example.org${callback}`, host: 'gw.example.org' });
    expect(redirectUriFor(undefined, 'localhost:8443')).toMatchObject({ ok: true, uri: `https://localhost:8443${callback}` });
    expect(redirectUriFor(undefined, '[::1]:8443')).toMatchObject({ ok: true, host: '[::1]:8443' });
  });

  it('is none for a Host header that is not a host (userinfo, a path, spaces, nothing)', () => {
    for (const host of [undefined, '', 'evil.example@gw.example.org', 'gw.example.org/x', 'gw example', 'gw.example.org:443:1', 'gw.example.org:99999', '[zz]:1', '-gw']) {
      expect(redirectUriFor(undefined, host).ok, String(host)).toBe(false);
    }
  });

  it('config: only an https callback of the gateway, and a display name without control characters', () => {
    const provider = (extra: Record<string, unknown>) => issuerSettingsSchema.safeParse({ ...testIssuerRules(), provider: { url: 'https://idp.test', clientId: 'gatehouse', ...extra } }).success;
    expect(provider({ redirectUri: `https://gw.example.org:8443${callback}`, displayName: 'Example SSO' })).toBe(true);
    for (const redirectUri of [`http://gw.example.org${callback}`, 'https://gw.example.org/callback', `https://gw.example.org${callback}?x=1`, `https://a@gw.example.org${callback}`]) {
      expect(provider({ redirectUri }), redirectUri).toBe(false);
    }
    expect(provider({ displayName: 'Example\u001b[31m SSO' })).toBe(false);
  });
});
