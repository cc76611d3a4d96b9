// The test OpenID provider, run as its own process by oidcProvider.ts: the certified `oidc-provider`
// package over HTTPS on a loopback port, with users alice and bob (passwords, groups) and two clients.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import Provider from 'oidc-provider';
import { testAccounts, type OidcProviderSettings } from './oidcProviderAccounts.ts';

const settings = JSON.parse(process.argv[2] ?? '{}') as OidcProviderSettings;

const escape = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title: string, body: string) => `<!doctype html><html><head><meta charset="utf-8"><title>${escape(title)}</title></head><body><h1>${escape(title)}</h1>${body}</body></html>`;

function readBody(req: IncomingMessage): Promise<URLSearchParams> {
  return new Promise((ok, fail) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      text += chunk;
      if (text.length > 16_384) req.destroy(new Error('form too large'));
    });
    req.on('end', () => ok(new URLSearchParams(text)));
    req.on('error', fail);
  });
}

function send(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

/** Login (user name and password) and consent pages: what a site's IdP shows, reduced to its forms. */
async function interaction(provider: Provider, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  const details = await provider.interactionDetails(req, res);
  const uid = escape(details.uid);
  if (req.method === 'GET') {
    if (details.prompt.name === 'login') {
      return send(res, 200, page('Sign in to the test IdP', `<form method="post" action="/interaction/${uid}/login"><input name="username" autocomplete="username"><input name="password" type="password"><button type="submit">Sign in</button></form>`));
    }
    return send(res, 200, page(`Allow ${escape(String(details.params.client_id))}?`, `<form method="post" action="/interaction/${uid}/confirm"><button type="submit">Allow</button></form>`));
  }
  const form = await readBody(req);
  if (path.endsWith('/login')) {
    const account = testAccounts.find((a) => a.username === form.get('username') && a.password === form.get('password'));
    if (account === undefined) return send(res, 401, page('Sign in to the test IdP', `<p>wrong user name or password</p><form method="post" action="/interaction/${uid}/login"><input name="username"><input name="password" type="password"><button type="submit">Sign in</button></form>`));
    return provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
  }
  const accountId = details.session?.accountId;
  if (accountId === undefined) return send(res, 400, page('No session', ''));
  const grant = details.grantId ? ((await provider.Grant.find(details.grantId)) ?? new provider.Grant({ accountId, clientId: String(details.params.client_id) })) : new provider.Grant({ accountId, clientId: String(details.params.client_id) });
  const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[] };
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  return provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
}

let handle: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => send(res, 503, 'starting');
const server = createServer({ cert: readFileSync(settings.tlsCert), key: readFileSync(settings.tlsKey) }, (req, res) => handle(req, res));
server.listen(settings.port ?? 0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  const provider = new Provider(`https://localhost:${port}`, {
    clients: [
      // Terminals: a public client with the device authorization grant (RFC 8628).
      { client_id: settings.deviceClientId, token_endpoint_auth_method: 'none', grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'], response_types: [], redirect_uris: [] },
      // Browsers: a confidential client, authorization code with PKCE S256, exact redirect URIs.
      { client_id: settings.webClientId, client_secret: settings.webClientSecret, grant_types: ['authorization_code'], response_types: ['code'], redirect_uris: settings.redirectUris },
    ],
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false }, deviceFlow: { enabled: true }, revocation: { enabled: true } },
    interactions: { url: (_ctx: unknown, i: { uid: string }) => `/interaction/${i.uid}` },
    claims: { openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email', 'email_verified'], groups: ['groups'] },
    // The ID token carries the claims the issuer's rules read, also when an access token comes with it.
    conformIdTokenClaims: false,
    cookies: { keys: ['gatehouse-test-provider'] },
    ttl: { IdToken: settings.idTokenSeconds ?? 3600, DeviceCode: 600, Session: settings.sessionSeconds ?? 3600 },
    findAccount: (_ctx: unknown, sub: string) => {
      const account = testAccounts.find((a) => a.sub === sub);
      if (account === undefined) return undefined;
      return { accountId: sub, claims: () => ({ sub, preferred_username: account.username, name: account.name, email: account.email, email_verified: true, groups: account.groups }) };
    },
  });
  // What Keycloak adds to its token answers and this provider does not: how long the IdP session has left
  // (`refresh_expires_in`), set by the test at run time; and a device poll interval of the test's choosing.
  let sessionLeftSeconds: number | undefined;
  provider.use(async (ctx, next) => {
    await next();
    const body = ctx.body as Record<string, unknown> | undefined;
    if (ctx.status !== 200 || body === undefined || body === null || typeof body !== 'object') return;
    if (ctx.path === '/device/auth' && settings.deviceIntervalSeconds !== undefined) body.interval = settings.deviceIntervalSeconds;
    if (ctx.path === '/token' && sessionLeftSeconds !== undefined && typeof body.id_token === 'string') body.refresh_expires_in = sessionLeftSeconds;
  });
  const callback = provider.callback();
  handle = (req, res) => {
    const path = new URL(req.url ?? '/', 'https://localhost').pathname;
    if (path === '/test/session-left' && req.method === 'POST') {
      void readBody(req).then((form) => {
        const seconds = form.get('seconds');
        sessionLeftSeconds = seconds === null || seconds === '' ? undefined : Number(seconds);
        send(res, 204, '');
      });
      return;
    }
    if (!path.startsWith('/interaction/')) return callback(req, res);
    interaction(provider, req, res, path).catch((error: unknown) => {
      if (!res.headersSent) send(res, 400, page('Interaction failed', escape(error instanceof Error ? error.message : String(error))));
    });
  };
  process.stderr.write(`listening on https://127.0.0.1:${port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
