// A real OpenID provider for tests: starts oidcProviderMain.ts (the certified `oidc-provider`) as its own
// process over HTTPS on a free loopback port, and completes its pages (login, consent, device code) over HTTP.
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:https';
import { join } from 'node:path';
import { providerFetch } from '../../src/issuer/providerFetch.ts';
import type { OidcProviderSettings } from './oidcProviderAccounts.ts';
import type { TestPki } from './pki.ts';

export { testAccounts } from './oidcProviderAccounts.ts';

export interface TestOidcProvider {
  /** The issuer URL, `https://localhost:<port>`. */
  issuer: string;
  port: number;
  /** PEM of the CA that signed the provider's certificate. */
  ca: string;
  deviceClientId: string;
  web: { clientId: string; clientSecret: string; redirectUri: string };
  /** A fetch that trusts `ca`, for openid-client's customFetch. */
  fetch: typeof fetch;
  proc: ChildProcess;
  /** From now on, token answers say the IdP session has `seconds` left (`refresh_expires_in`, as Keycloak does); undefined: say nothing. */
  setSessionLeft(seconds: number | undefined): Promise<void>;
  stderr(): string;
  stop(): Promise<void>;
}

export interface OidcProviderOptions {
  /** Exact redirect URIs of the browser client (default one on https://localhost/callback). */
  redirectUris?: string[];
  idTokenSeconds?: number;
  sessionSeconds?: number;
  /** The device flow's poll interval the provider announces (default: none, i.e. 5 s). */
  deviceIntervalSeconds?: number;
}

/** Starts the provider with the test PKI's server certificate (names localhost and the loopback addresses). */
export function startOidcProvider(pki: TestPki, options: OidcProviderOptions = {}): Promise<TestOidcProvider> {
  const redirectUris = options.redirectUris ?? ['https://localhost/.well-known/gatehouse/login/callback'];
  const settings: OidcProviderSettings = {
    tlsCert: pki.serverCertPath,
    tlsKey: pki.serverKeyPath,
    deviceClientId: 'gatehouse-cli',
    webClientId: 'gatehouse-web',
    webClientSecret: 'test-web-client-secret',
    redirectUris,
    ...(options.idTokenSeconds !== undefined && { idTokenSeconds: options.idTokenSeconds }),
    ...(options.sessionSeconds !== undefined && { sessionSeconds: options.sessionSeconds }),
    ...(options.deviceIntervalSeconds !== undefined && { deviceIntervalSeconds: options.deviceIntervalSeconds }),
  };
  const proc = spawn(process.execPath, [join(import.meta.dirname, 'oidcProviderMain.ts'), JSON.stringify(settings)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const trusting = providerFetch(pki.caCert);
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`OpenID provider did not start:\n${err}`)), 20_000);
    proc.stderr?.on('data', () => {
      const m = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(err);
      if (!m) return;
      clearTimeout(timer);
      const port = Number(m[1]);
      ok({
        issuer: `https://localhost:${port}`,
        port,
        ca: pki.caCert,
        deviceClientId: settings.deviceClientId,
        web: { clientId: settings.webClientId, clientSecret: settings.webClientSecret, redirectUri: redirectUris[0] ?? '' },
        fetch: trusting.fetch,
        proc,
        async setSessionLeft(seconds) {
          const reply = await send(new URL('/test/session-left', `https://localhost:${port}`), pki.caCert, 'POST', new Map(), new URLSearchParams({ seconds: seconds === undefined ? '' : String(seconds) }));
          if (reply.status !== 204) throw new Error(`the provider did not take the session setting: ${reply.status}`);
        },
        stderr: () => err,
        stop: () =>
          new Promise<void>((done) => {
            void trusting.close();
            if (proc.exitCode !== null || proc.signalCode !== null) return done();
            proc.once('exit', () => done());
            proc.kill('SIGTERM');
          }),
      });
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`OpenID provider exited with ${code}:\n${err}`));
    });
  });
}

interface Reply {
  status: number;
  location?: string;
  setCookies: string[];
  body: string;
}

function send(url: URL, ca: string, method: 'GET' | 'POST', cookies: Map<string, string>, form?: URLSearchParams): Promise<Reply> {
  const body = form?.toString();
  const headers: Record<string, string> = {};
  if (cookies.size > 0) headers.cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  if (body !== undefined) Object.assign(headers, { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(Buffer.byteLength(body)) });
  return new Promise((ok, fail) => {
    const req = request(url, { method, headers, ca }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => ok({ status: res.statusCode ?? 0, ...(res.headers.location !== undefined && { location: res.headers.location }), setCookies: res.headers['set-cookie'] ?? [], body: text }));
    });
    req.on('error', fail);
    req.end(body);
  });
}

/** The first form of a page: its action, method and the named inputs with their values. */
function firstForm(html: string): { action: string; method: string; fields: URLSearchParams } | undefined {
  const form = /<form\b([^>]*)>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) return undefined;
  const attribute = (tag: string, name: string) => new RegExp(`\\b${name}="([^"]*)"`, 'i').exec(tag)?.[1];
  const fields = new URLSearchParams();
  for (const input of (form[2] ?? '').match(/<input\b[^>]*>/gi) ?? []) {
    const name = attribute(input, 'name');
    if (name !== undefined) fields.set(name, (attribute(input, 'value') ?? '').replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n))).replace(/&amp;/g, '&'));
  }
  return { action: attribute(form[1] ?? '', 'action') ?? '', method: (attribute(form[1] ?? '', 'method') ?? 'get').toUpperCase(), fields };
}

export interface InteractionOutcome {
  /** Where the provider sent the browser off its own origin (the code flow's redirect URI with code and state). */
  redirectedTo?: string;
  /** The last page the provider showed (the device flow's "you may close this window"). */
  finalPage: string;
  status: number;
}

/**
 * Does in plain HTTP what a user does in the browser from `start` (an authorization URL or the device
 * flow's verification_uri_complete): confirms the code, signs in as `user`, consents. Follows redirects
 * on the provider's origin with its cookies; stops at the first redirect elsewhere or a page without a form.
 */
export async function completeInteraction(provider: TestOidcProvider, start: string, user: { username: string; password: string }): Promise<InteractionOutcome> {
  const cookies = new Map<string, string>();
  const origin = new URL(provider.issuer).origin;
  let url = new URL(start);
  let method: 'GET' | 'POST' = 'GET';
  let form: URLSearchParams | undefined;
  for (let step = 0; step < 20; step++) {
    const reply = await send(url, provider.ca, method, cookies, form);
    for (const line of reply.setCookies) {
      const [pair = ''] = line.split(';');
      const eq = pair.indexOf('=');
      const value = pair.slice(eq + 1);
      if (/expires=Thu, 01 Jan 1970/i.test(line) || value === '') cookies.delete(pair.slice(0, eq));
      else cookies.set(pair.slice(0, eq), value);
    }
    if (reply.status >= 300 && reply.status < 400 && reply.location !== undefined) {
      const next = new URL(reply.location, url);
      if (next.origin !== origin) return { redirectedTo: next.toString(), finalPage: reply.body, status: reply.status };
      [url, method, form] = [next, 'GET', undefined];
      continue;
    }
    const page = firstForm(reply.body);
    if (!page || reply.status >= 400) return { finalPage: reply.body, status: reply.status };
    if (page.fields.has('username')) {
      page.fields.set('username', user.username);
      page.fields.set('password', user.password);
    }
    [url, method, form] = [new URL(page.action || url.pathname, url), page.method === 'POST' ? 'POST' : 'GET', page.fields];
  }
  throw new Error('the provider did not finish the interaction in 20 steps');
}
