// From an IdP login to a request through the gateway, with every part real: the OpenID provider in
// its own process, the issuer's relying party (openid-client) running the device and code flows, the
// claim rules and the issuer key minting the token, and `gatehouse serve` + curl accepting it.
import { mkdtempSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEchoService } from '../src/demo/echoService.ts';
import { issueRecord } from '../src/issuer/issueRecord.ts';
import { issueToken } from '../src/issuer/issueToken.ts';
import type { IssuerKey } from '../src/issuer/issuerKey.ts';
import { connectProvider, type RelyingParty } from '../src/issuer/relyingParty.ts';
import { identityFromPem } from '../src/tls/peerIdentity.ts';
import { curl, startHarness, type Harness } from './support/gatewayHarness.ts';
import { testIssuerRules, writeIssuerKey } from './support/issuerFixtures.ts';
import { ISSUED_NOTEBOOK_ROUTE } from './support/issuerGateway.ts';
import { completeInteraction, startOidcProvider, testAccounts, type TestOidcProvider } from './support/oidcProvider.ts';
import type { TestClientCertificate } from './support/pki.ts';

let h: Harness;
let echo: Server;
let idp: TestOidcProvider;
let key: IssuerKey;
let terminal: RelyingParty;
let browser: RelyingParty;
let aliceCert: TestClientCertificate;
const [alice, bob] = testAccounts;

const routes = ISSUED_NOTEBOOK_ROUTE;

beforeAll(async () => {
  key = writeIssuerKey(mkdtempSync(join(tmpdir(), 'gatehouse-issuer-login-')));
  h = await startHarness({ routes, authzExtra: `  issuers:\n    idp:\n      keyId: 1\n      publicKey: ${key.publicKey}\n` });
  echo = await startEchoService(join(h.dir, 'run', 'demo.sock'), 'demo');
  aliceCert = await h.pki.client('alice');
  idp = await startOidcProvider(h.pki);
  terminal = await connectProvider({ url: idp.issuer, clientId: idp.deviceClientId, fetch: idp.fetch });
  browser = await connectProvider({ url: idp.issuer, clientId: idp.web.clientId, clientSecret: idp.web.clientSecret, fetch: idp.fetch });
});

afterAll(async () => {
  await idp?.stop();
  echo?.close();
  await h?.stop();
});

describe('login, issue, use', () => {
  it('alice logs in with the device flow; her issued token reaches her notebook with her certificate', async () => {
    if (alice === undefined) throw new Error('no account');
    const device = await terminal.startDevice();
    const done = terminal.finishDevice(device);
    await completeInteraction(idp, device.verificationUriComplete ?? '', alice);
    const login = await done;
    if (!login.ok) throw new Error(login.reason);
    const certificate = identityFromPem(aliceCert.cert);
    const result = issueToken({ claims: login.login.claims, certificate, rules: testIssuerRules(), key, now: new Date(), ...(login.login.sessionEndsAt && { idpSessionEndsAt: login.login.sessionEndsAt }) });
    if (!result.ok) throw new Error(result.refusal.reason);
    // alice is in hpc and staff: staff grants any route, hpc's 8 h cap applies to a token carrying both.
    expect(result.issued.grant).toMatchObject({ user: 'alice', groups: ['hpc', 'staff'], ttlSeconds: 8 * 3600, idp: { issuer: idp.issuer, subject: alice.sub } });
    expect((await curl(h, '/~alice/notebook/', { client: aliceCert, token: result.issued.token })).status).toBe(200);
    const record = issueRecord({ result, certificate, flow: 'device' });
    expect(record.detail).toMatchObject({ idp: { issuer: idp.issuer, subject: alice.sub }, fingerprint: aliceCert.fingerprint });
  });

  it("refuses IdP user bob presenting alice's certificate (code flow)", async () => {
    if (bob === undefined) throw new Error('no account');
    const started = await browser.startCode(idp.web.redirectUri);
    const back = await completeInteraction(idp, started.url, bob);
    const login = await browser.finishCode(new URL(back.redirectedTo ?? ''), started);
    if (!login.ok) throw new Error(login.reason);
    const result = issueToken({ claims: login.login.claims, certificate: identityFromPem(aliceCert.cert), rules: testIssuerRules(), key, now: new Date() });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.refusal.code).toBe('certificate-mismatch');
    const record = issueRecord({ result, certificate: identityFromPem(aliceCert.cert), flow: 'code' });
    expect(record).toMatchObject({ decision: 'deny', detail: { idp: { subject: bob.sub } } });
    expect(record.reason).toContain('IdP preferred_username "bob" is not the holder of the client certificate (CN "alice"');
  });

  it('refuses a replayed authorization code and a wrong state, in the issuer\'s words', async () => {
    if (alice === undefined) throw new Error('no account');
    const started = await browser.startCode(idp.web.redirectUri);
    const back = new URL((await completeInteraction(idp, started.url, alice)).redirectedTo ?? '');
    const wrongState = await browser.finishCode(back, { ...started, state: 'not-this-login' });
    expect(wrongState).toMatchObject({ ok: false, code: 'state-mismatch' });
    expect((await browser.finishCode(back, started)).ok).toBe(true);
    const replayed = await browser.finishCode(back, started);
    expect(replayed).toMatchObject({ ok: false, code: 'code-rejected' });
  });
});
