// "Sign in with <IdP>" end to end: the real OpenID provider in its own process (its confidential web client,
// the secret in a file, exact redirect URIs), `gatehouse serve`, headless Chromium with alice's certificate
// (down to a Jupyter cell), and curl for the refusals: a replayed code, a wrong state, login CSRF, the rules.
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../src/audit/auditRecord.ts';
import { CHROMIUM, chromiumArgs, JUPYTER, runFirstCell, startJupyter } from './support/browserPeers.ts';
import { curlReply, startHarness, type CurlReply, type Harness } from './support/gatewayHarness.ts';
import { writeIssuerKey } from './support/issuerFixtures.ts';
import { freePort } from './support/localServices.ts';
import { completeInteraction, startOidcProvider, testAccounts, type TestOidcProvider } from './support/oidcProvider.ts';
import type { TestClientCertificate } from './support/pki.ts';

const LOGIN = '/.well-known/gatehouse/login';
const CALLBACK = `${LOGIN}/callback`;
const [alice, bob] = testAccounts;
if (alice === undefined || bob === undefined) throw new Error('the test provider has no alice and bob');

const routes = `  - name: jupyter
    path: /~{user}/jupyter/
    protocols: [http, websocket]
    stripPrefix: false
    upstream: unix:run/{user}-jupyter.sock
    policy: |
      allow if user($u), param("user", $u), signer("idp");
`;

let h: Harness;
/** The same gateway run as two processes (`serve --processes 2`): a callback may land in either. */
let group: Harness;
let idp: TestOidcProvider;
let aliceCert: TestClientCertificate;
let bobCert: TestClientCertificate;

/** The issuer: the provider's confidential web client, its secret in a file; alice (staff) may sign in, bob (hpc, students) may not. */
function issuerConfig(dir: string, idpPort: number): { authz: string; top: string } {
  const key = writeIssuerKey(dir);
  writeFileSync(join(dir, 'web-client.secret'), 'test-web-client-secret\n', { mode: 0o600 });
  return {
    authz: `  issuers:\n    idp:\n      keyId: 1\n      publicKey: ${key.publicKey}\n`,
    top: `issuer:
  name: idp
  keyId: 1
  signingKey: ${join(dir, 'issuer.key')}
  provider:
    url: https://localhost:${idpPort}
    clientId: gatehouse-web
    clientSecretFile: ${join(dir, 'web-client.secret')}
    ca: certs/ca.crt
    displayName: the Test IdP
  groups:
    staff: { routes: ["*"] }
    admins: { routes: ["*"] }
`,
  };
}

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-browser-login-'));
  // The gateway's config names the provider, and the provider registers the gateway's callback exactly.
  const idpPort = await freePort();
  const issuer = issuerConfig(dir, idpPort);
  h = await startHarness({ routes, authzExtra: issuer.authz, extraTop: issuer.top });
  group = await startHarness({ routes, authzExtra: issuer.authz, extraTop: issuer.top, pki: h.pki, serveArgs: ['--processes', '2'] });
  idp = await startOidcProvider(h.pki, { port: idpPort, redirectUris: [`${h.base}${CALLBACK}`, `${group.base}${CALLBACK}`] });
  aliceCert = await h.pki.client('alice');
  bobCert = await h.pki.client('bob');
}, 60_000);

afterAll(async () => {
  await idp?.stop();
  await group?.stop();
  await h?.stop();
});

const cookieOf = (reply: CurlReply) => (reply.headers['set-cookie'] ?? []).map((c) => c.split(';')[0] as string);

/** Starts a sign-in as `client` (with `cookie`, the browser's own): the IdP's authorization URL and the browser's login cookie. */
async function startLogin(client: TestClientCertificate, cookie?: string, gateway = h): Promise<{ authorize: string; cookie: string }> {
  const reply = await curlReply(gateway, client, `${LOGIN}/browser?next=/`, cookie ? ['-H', `Cookie: ${cookie}`] : []);
  expect(reply.status, reply.body).toBe(303);
  const set = cookieOf(reply).find((c) => c.startsWith('__Host-gatehouse-login='));
  return { authorize: reply.headers.location?.[0] ?? '', cookie: set ?? '' };
}

/** The user at the IdP: signs in as `account`, consents; the callback URL the IdP sends the browser to. */
async function atProvider(authorize: string, account: { username: string; password: string }, gateway = h): Promise<string> {
  const outcome = await completeInteraction(idp, authorize, account);
  if (outcome.redirectedTo === undefined) throw new Error(`the provider sent no callback:\n${outcome.finalPage}`);
  expect(outcome.redirectedTo.startsWith(`${gateway.base}${CALLBACK}?`)).toBe(true);
  return outcome.redirectedTo;
}

const callback = (client: TestClientCertificate, url: string, cookie: string, gateway = h) => curlReply(gateway, client, url, cookie ? ['-H', `Cookie: ${cookie}`] : []);

/** The callback's own record, found by its refusal code. */
const callbackRecord = (code: string) => h.waitForAudit((r) => r.event === 'session.start' && r.path === CALLBACK && (r.reason ?? '').startsWith(`${code}:`));

/** A refusal is the portal's message page, under the portal's headers, with nothing signed in. */
async function expectRefusalPage(reply: CurlReply, status: number, words: string): Promise<void> {
  expect(reply.status).toBe(status);
  expect(reply.body).toContain('<title>Not signed in</title>');
  expect(reply.body).toContain(words);
  const portal = await curlReply(h, aliceCert, '/.well-known/gatehouse/');
  expect(reply.headers['content-security-policy']).toEqual(portal.headers['content-security-policy']);
  expect(cookieOf(reply).some((c) => c.startsWith('__Host-gatehouse-session='))).toBe(false);
}

describe('sign in with the IdP: refusals (curl)', () => {
  it('alice signs in: the callback sets the session cookie, the token.issue record names her IdP identity', async () => {
    const signInPage = await curlReply(h, aliceCert, `/.well-known/gatehouse/?next=${encodeURIComponent('/~alice/jupyter/tree')}`);
    expect(signInPage.body).toContain(`<a id="sign-in-provider" href="${LOGIN}/browser?next=%2F~alice%2Fjupyter%2Ftree">Sign in with the Test IdP</a>`);
    const start = await startLogin(aliceCert);
    const authorize = new URL(start.authorize);
    expect(authorize.origin).toBe(idp.issuer);
    expect(Object.fromEntries(authorize.searchParams)).toMatchObject({ client_id: 'gatehouse-web', response_type: 'code', code_challenge_method: 'S256', redirect_uri: `${h.base}${CALLBACK}` });
    for (const param of ['state', 'nonce', 'code_challenge']) expect(authorize.searchParams.get(param)?.length).toBeGreaterThanOrEqual(22);
    const back = await atProvider(start.authorize, alice);
    const reply = await callback(aliceCert, back, start.cookie);
    expect(reply.status).toBe(200);
    expect(reply.body).toContain('url=/');
    // The landing page's navigation does not hand the callback URL (code, state) to the next page as its Referer.
    expect(reply.headers['referrer-policy']).toEqual(['no-referrer']);
    const session = cookieOf(reply).find((c) => c.startsWith('__Host-gatehouse-session='));
    expect(session).toBeDefined();
    // The token is in the HttpOnly cookie only, never in a page or a URL.
    expect(reply.body).not.toContain((session ?? '').slice(25, 80));
    const issued = await h.waitForAudit((r) => r.event === 'token.issue' && r.decision === 'allow');
    expect(issued).toMatchObject({ token: { user: 'alice' }, detail: { flow: 'code', idp: { issuer: idp.issuer, subject: alice.sub }, fingerprint: aliceCert.fingerprint } });
    const started = await h.waitForAudit((r) => r.event === 'session.start' && r.path === CALLBACK && r.decision === 'allow');
    expect(started.token?.revocationIds).toContain(issued.token?.revocationIds?.[0]);
    const portal = await curlReply(h, aliceCert, '/.well-known/gatehouse/', ['-H', `Cookie: ${session}`]);
    expect(portal.body).toContain('<strong id="user">alice</strong>');
  });

  it('refuses the same callback twice (state is single-use) and a replayed code under a fresh state (the IdP refuses it)', async () => {
    const first = await startLogin(aliceCert);
    const back = await atProvider(first.authorize, alice);
    expect((await callback(aliceCert, back, first.cookie)).status).toBe(200);
    await expectRefusalPage(await callback(aliceCert, back, first.cookie), 400, 'This sign-in is not known');
    expect((await callbackRecord('GH_LOGIN_STATE_UNKNOWN')).reason).toContain('already used');
    // The captured code, sent back under a state this browser really has in progress.
    const second = await startLogin(aliceCert, first.cookie);
    const replay = new URL(back);
    replay.searchParams.set('state', new URL(second.authorize).searchParams.get('state') ?? '');
    await expectRefusalPage(await callback(aliceCert, replay.toString(), first.cookie), 403, 'The identity provider did not confirm this sign-in');
    expect((await callbackRecord('GH_LOGIN_IDP_REFUSED')).reason).toContain('invalid_grant');
  });

  it('refuses a wrong state', async () => {
    const start = await startLogin(aliceCert);
    const back = new URL(await atProvider(start.authorize, alice));
    back.searchParams.set('state', 'not-a-state-this-gateway-gave');
    await expectRefusalPage(await callback(aliceCert, back.toString(), start.cookie), 400, 'This sign-in is not known');
    expect((await callbackRecord('GH_LOGIN_STATE_UNKNOWN')).detail).toMatchObject({ flow: 'code' });
  });

  it("login CSRF: a callback opened with another certificate, or in another browser, is refused and spends the state", async () => {
    // bob's sign-in, its callback URL sent to alice: her browser and certificate did not start it.
    const bobs = await startLogin(bobCert);
    const bobsBack = await atProvider(bobs.authorize, bob);
    const alices = await startLogin(aliceCert);
    await expectRefusalPage(await callback(aliceCert, bobsBack, alices.cookie), 403, 'started in another browser or with another certificate');
    expect((await callbackRecord('GH_LOGIN_FOREIGN')).reason).toContain('issued to another certificate');
    // Spent: not even bob can use it now.
    expect((await callback(bobCert, bobsBack, bobs.cookie)).status).toBe(400);

    // The same certificate in another browser (its own login cookie, or none): the browser did not start it.
    for (const cookie of [(await startLogin(aliceCert)).cookie, '']) {
      const started = await startLogin(aliceCert);
      const back = await atProvider(started.authorize, alice);
      await expectRefusalPage(await callback(aliceCert, back, cookie), 403, 'started in another browser or with another certificate');
      expect((await callback(aliceCert, back, started.cookie)).status).toBe(400);
    }
    await h.waitForAudit((r) => r.event === 'session.start' && (r.reason ?? '').includes('did not start this sign-in (no login cookie)'));
    await h.waitForAudit((r) => r.event === 'session.start' && (r.reason ?? '').includes('did not start this sign-in (another login cookie)'));
    // Two login cookies (the right one among them) are not guessed between.
    const third = await startLogin(aliceCert);
    const thirdBack = await atProvider(third.authorize, alice);
    const other = (await startLogin(bobCert)).cookie;
    await expectRefusalPage(await callback(aliceCert, thirdBack, `${other}; ${third.cookie}`), 403, 'started in another browser or with another certificate');
    expect(h.audit().filter((r) => r.event === 'token.issue' && r.token?.user === 'bob' && r.decision === 'allow')).toEqual([]);
  });

  it("refuses IdP user bob with alice's certificate, and bob, whose groups the rules do not list", async () => {
    const start = await startLogin(aliceCert);
    const back = await atProvider(start.authorize, bob);
    await expectRefusalPage(await callback(aliceCert, back, start.cookie), 403, 'Your login does not match your client certificate.');
    const mismatch = await h.waitForAudit((r) => r.event === 'token.issue' && r.decision === 'deny' && (r.reason ?? '').startsWith('certificate-mismatch'));
    expect(mismatch).toMatchObject({ client: { cn: 'alice' }, detail: { flow: 'code', idp: { subject: bob.sub } } });
    expect((await callbackRecord('GH_LOGIN_NOT_ISSUED')).detail).toMatchObject({ issue: 'certificate-mismatch' });

    const own = await startLogin(bobCert);
    const ownBack = await atProvider(own.authorize, bob);
    await expectRefusalPage(await callback(bobCert, ownBack, own.cookie), 403, 'None of your groups may receive a token here.');
    const groups = await h.waitForAudit((r) => r.event === 'token.issue' && (r.reason ?? '').startsWith('no-group-allowed'));
    expect(groups.reason).toContain('hpc, students');
  });

  it('under serve --processes 2, every sign-in completes, whichever process each request lands in', async () => {
    // curl opens a connection per request: the start and the callback are spread over both processes.
    for (let i = 0; i < 6; i++) {
      const start = await startLogin(aliceCert, undefined, group);
      const back = await atProvider(start.authorize, alice, group);
      const reply = await callback(aliceCert, back, start.cookie, group);
      expect(reply.status, reply.body).toBe(200);
      expect((await callback(aliceCert, back, start.cookie, group)).status).toBe(400);
    }
  });

  it('a next that leaves the gateway is refused before anything reaches the IdP', async () => {
    const reply = await curlReply(h, aliceCert, `${LOGIN}/browser?next=${encodeURIComponent('//evil.example/')}`);
    expect(reply.status).toBe(400);
    expect(reply.headers.location).toBeUndefined();
  });
});

const missing = [existsSync(CHROMIUM) ? '' : 'chromium', existsSync(JUPYTER) ? '' : 'jupyter-notebook'].filter(Boolean);
const suite = missing.length === 0 ? describe : describe.skip;

suite(missing.length === 0 ? 'sign in with the IdP in headless Chromium' : `sign in with the IdP in headless Chromium (skipped: ${missing.join(' and ')} not installed)`, () => {
  let browser: Browser | undefined;
  let jupyter: ChildProcess | undefined;
  let shots: string;

  beforeAll(async () => {
    mkdirSync(join(h.dir, 'run'), { recursive: true });
    jupyter = await startJupyter(h.dir, join(h.dir, 'run', 'alice-jupyter.sock'));
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs });
    shots = join(h.dir, 'screenshots');
    mkdirSync(shots, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    jupyter?.kill('SIGTERM');
  });

  const newContext = () => {
    if (!browser) throw new Error('no browser');
    // The relay playwright-core presents the certificate from terminates the browser's TLS: hence ignoreHTTPSErrors.
    return browser.newContext({ clientCertificates: [{ origin: h.base, certPath: aliceCert.certPath, keyPath: aliceCert.keyPath }], ignoreHTTPSErrors: true });
  };

  it('alice: notebook -> sign-in page -> "Sign in with the Test IdP" -> the IdP\'s login and consent -> the notebook runs 1+1', async () => {
    const context = await newContext();
    const page = await context.newPage();
    const visited: string[] = [];
    const referers: string[] = [];
    page.on('request', (r) => {
      visited.push(r.url());
      const referer = r.headers()['referer'];
      if (referer !== undefined) referers.push(referer);
    });
    const notebook = `${h.base}/~alice/jupyter/notebooks/check.ipynb`;
    try {
      await page.goto(notebook);
      expect(new URL(page.url()).pathname).toBe('/.well-known/gatehouse/');
      const button = page.locator('#sign-in-provider');
      expect(await button.textContent()).toBe('Sign in with the Test IdP');
      await page.screenshot({ path: join(shots, 'idp-1-sign-in.png') });
      await Promise.all([page.waitForURL((u) => u.origin === idp.issuer), button.click()]);
      await page.fill('input[name="username"]', alice.username);
      await page.fill('input[name="password"]', alice.password);
      await page.screenshot({ path: join(shots, 'idp-2-provider.png') });
      await Promise.all([page.waitForURL((u) => u.origin === idp.issuer && u.pathname.startsWith('/interaction/')), page.click('button[type="submit"]')]);
      await Promise.all([page.waitForURL(notebook, { timeout: 30_000 }), page.click('button[type="submit"]')]);
      const cookies = await context.cookies(h.base);
      const session = cookies.find((c) => c.name === '__Host-gatehouse-session');
      expect(session).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict', path: '/' });
      expect(cookies.find((c) => c.name === '__Host-gatehouse-login')).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Lax', path: '/' });
      // No token in any URL the browser went to; the callback URL (code, state) is no page's Referer.
      expect(visited.filter((u) => u.includes((session?.value ?? '').slice(0, 60)))).toEqual([]);
      expect(visited.some((u) => u.startsWith(`${h.base}${CALLBACK}?`))).toBe(true);
      expect(referers.filter((r) => r.includes(CALLBACK))).toEqual([]);

      expect(await runFirstCell(page)).toBe('2');
      await page.screenshot({ path: join(shots, 'idp-3-notebook.png') });
    } finally {
      await context.close();
    }
    const isKernel = (r: AuditRecord) => r.event === 'tunnel.open' && r.route === 'jupyter';
    const kernel = await h.waitForAudit(isKernel);
    const issued = h.audit().filter((r) => r.event === 'token.issue' && r.decision === 'allow' && r.detail?.flow === 'code').at(-1);
    expect(kernel).toMatchObject({ protocol: 'websocket', auth: 'session', decision: 'allow', token: { user: 'alice' } });
    expect(kernel.token?.revocationIds).toContain(issued?.token?.revocationIds?.[0]);
    process.stderr.write(`screenshots: ${shots}\n`);
  }, 240_000);

  it("IdP user bob with alice's certificate: a clear page in the browser, no session", async () => {
    const context = await newContext();
    const page = await context.newPage();
    try {
      await page.goto(`${h.base}/.well-known/gatehouse/`);
      await Promise.all([page.waitForURL((u) => u.origin === idp.issuer), page.click('#sign-in-provider')]);
      await page.fill('input[name="username"]', bob.username);
      await page.fill('input[name="password"]', bob.password);
      await Promise.all([page.waitForURL((u) => u.origin === idp.issuer && u.pathname.startsWith('/interaction/')), page.click('button[type="submit"]')]);
      const [answer] = await Promise.all([page.waitForResponse((r) => r.url().startsWith(`${h.base}${CALLBACK}`)), page.click('button[type="submit"]')]);
      expect(answer.status()).toBe(403);
      await page.waitForSelector('#message');
      expect(await page.textContent('#message')).toBe('Your login does not match your client certificate.');
      await page.screenshot({ path: join(shots, 'idp-4-refused.png') });
      expect((await context.cookies(h.base)).find((c) => c.name === '__Host-gatehouse-session')).toBeUndefined();
    } finally {
      await context.close();
    }
  }, 120_000);
});
