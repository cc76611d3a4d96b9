// Refresh and logout of issued tokens over the wire: a 15 s token renewed without the IdP and still usable
// after its predecessor ended; refresh refused for every token that is not this login's as issued on this
// certificate; logout revoking the login's every token at once (curl through a route).
import { describe, expect, it } from 'vitest';
import { attenuateToken } from '../src/token/attenuateToken.ts';
import { parsePublicKey } from '../src/token/keyFiles.ts';
import { mintToken } from '../src/token/mintToken.ts';
import { biscuit } from '../src/token/biscuitModule.ts';
import { curl } from './support/gatewayHarness.ts';
import { ISSUED_NOTEBOOK_ROUTE, deviceLogin, useIssuedNotebook, postLogin, startIssuerGateway } from './support/issuerGateway.ts';
import { testAccounts } from './support/oidcProvider.ts';

const site = useIssuedNotebook();

const [alice] = testAccounts;
if (alice === undefined) throw new Error('no account alice');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type Issued = { token: string; user: string; expiresAt: string; refreshUntil: string; revocationId: string };

async function loginAlice(body: Record<string, unknown> = {}): Promise<Issued> {
  const answer = await deviceLogin(site.gw, site.aliceCert, alice as NonNullable<typeof alice>, body);
  if (answer.status !== 200) throw new Error(`login answered ${answer.status}: ${answer.body}`);
  return answer.json as unknown as Issued;
}

async function refresh(token: string, client = site.aliceCert) {
  return postLogin(site.gw.h, client, '/refresh', {}, token);
}


describe('refresh', () => {
  it('renews a 15 s token without the IdP (the 60 s one through the CLI is login.e2e\'s): the new one is accepted after the first has expired, the same login, a refresh record', async () => {
    const first = await loginAlice({ ttl: '15s' });
    const firstEnds = Date.parse(first.expiresAt);
    expect(firstEnds - Date.now()).toBeLessThanOrEqual(15_000);
    // Renewed two thirds into its life, as the client does.
    await sleep(Math.max(0, firstEnds - 5_000 - Date.now()));
    const renewed = await refresh(first.token);
    expect(renewed.status).toBe(200);
    const second = renewed.json as unknown as Issued;
    expect(second).toMatchObject({ user: 'alice', refreshUntil: first.refreshUntil });
    expect(second.revocationId).not.toBe(first.revocationId);
    expect(Date.parse(second.expiresAt)).toBeGreaterThan(firstEnds + 5_000);
    await sleep(Math.max(0, firstEnds + 1500 - Date.now()));
    expect((await curl(site.gw.h, '/~alice/notebook/', { client: site.aliceCert, token: first.token })).status).toBe(403);
    expect((await curl(site.gw.h, '/~alice/notebook/', { client: site.aliceCert, token: second.token })).status).toBe(200);
    // An expired token is not refreshed: the client logs in again.
    const late = await refresh(first.token);
    expect(late.status).toBe(403);
    expect(late.json).toMatchObject({ code: 'GH_TOKEN_EXPIRED' });
    const records = site.gw.h.audit().filter((r) => r.event === 'token.issue' && r.decision === 'allow');
    const login = records.find((r) => r.token?.revocationIds?.[0] === first.revocationId);
    const refreshed = records.find((r) => r.token?.revocationIds?.[0] === second.revocationId);
    expect(refreshed).toMatchObject({ path: '/.well-known/gatehouse/login/refresh', detail: { flow: 'refresh', refreshed: first.revocationId, idp: { subject: alice.sub }, login: (login?.detail as { login: unknown }).login } });
  }, 120_000);

  it('refuses a root-key token, a token of another issuer key, another certificate, an attenuated token and no token at all', async () => {
    const issued = await loginAlice();
    const rootKey = biscuit.PrivateKey.fromString(site.gw.h.rootKey.privateKey);
    const root = mintToken({ privateKey: rootKey, user: 'alice', clientFingerprint: site.aliceCert.fingerprint });
    if (!root.ok) throw new Error(root.error.message);
    expect((await refresh(root.value)).json).toMatchObject({ error: 'invalid_token', code: 'GH_REFRESH_NOT_ISSUED' });
    // Another key writing the issuer's key id: the signature check refuses it.
    const other = new biscuit.KeyPair(biscuit.SignatureAlgorithm.Ed25519);
    const forged = mintToken({ privateKey: other.getPrivateKey(), rootKeyId: 1, user: 'alice', clientFingerprint: site.aliceCert.fingerprint, idp: { issuer: site.gw.idp.issuer, subject: alice.sub }, login: { id: '0'.repeat(32), time: new Date(), lifetimeSeconds: 3600 } });
    if (!forged.ok) throw new Error(forged.error.message);
    const forgedAnswer = await refresh(forged.value);
    expect(forgedAnswer.status).toBe(401);
    expect(forgedAnswer.json).toMatchObject({ code: 'GH_REFRESH_NOT_ISSUED' });
    expect((await refresh(issued.token, site.bobCert)).json).toMatchObject({ code: 'GH_TOKEN_WRONG_CERTIFICATE' });
    const publicKey = parsePublicKey(site.gw.key.publicKey, 'issuer key');
    if (!publicKey.ok) throw new Error(publicKey.error.message);
    const narrowed = attenuateToken({ token: issued.token, publicKey: publicKey.value, ttlSeconds: 30 });
    if (!narrowed.ok) throw new Error(narrowed.error.message);
    const attenuated = await refresh(narrowed.value);
    expect(attenuated.status).toBe(403);
    expect(attenuated.json).toMatchObject({ code: 'GH_REFRESH_ATTENUATED', message: 'only a token as issued can be refreshed' });
    expect((await postLogin(site.gw.h, site.aliceCert, '/refresh', {})).status).toBe(401);
    const record = await site.gw.h.waitForAudit((r) => r.path === '/.well-known/gatehouse/login/refresh' && r.status === 403 && r.reason?.includes('an attenuated token or a loan is never refreshed') === true);
    expect(record).toMatchObject({ event: 'request', decision: 'deny', token: { user: 'alice' } });
  }, 60_000);

  it('caps the token and the refresh at the IdP session end when the IdP says it', async () => {
    await site.gw.idp.setSessionLeft(120);
    try {
      const issued = await loginAlice();
      const sessionEnds = Date.now() + 120_000;
      expect(Math.abs(Date.parse(issued.refreshUntil) - sessionEnds)).toBeLessThan(10_000);
      expect(Date.parse(issued.expiresAt)).toBeLessThanOrEqual(Date.parse(issued.refreshUntil));
    } finally {
      await site.gw.idp.setSessionLeft(undefined);
    }
  }, 60_000);
});

describe('refresh limit', () => {
  it('refuses to refresh past issuer.refreshLimit after the login, and never mints past it', async () => {
    const short = await startIssuerGateway({ routes: ISSUED_NOTEBOOK_ROUTE, issuerExtra: '  refreshLimit: 4s\n' });
    try {
      const aliceHere = await short.h.pki.client('alice');
      const answer = await deviceLogin(short, aliceHere, alice, { ttl: '60s' });
      expect(answer.status).toBe(200);
      const first = answer.json as unknown as Issued;
      const limit = Date.parse(first.refreshUntil);
      expect(limit).toBeLessThan(Date.parse(first.expiresAt));
      const renewed = await postLogin(short.h, aliceHere, '/refresh', {}, first.token);
      if (renewed.status === 200) expect(Date.parse((renewed.json as unknown as Issued).expiresAt)).toBeLessThanOrEqual(limit);
      await sleep(Math.max(0, limit + 500 - Date.now()));
      const late = await postLogin(short.h, aliceHere, '/refresh', {}, first.token);
      expect(late.status).toBe(403);
      expect(late.json).toEqual({ error: 'invalid_token', code: 'GH_REFRESH_LIMIT', message: 'refresh limit reached; log in again' });
      const record = await short.h.waitForAudit((r) => r.path === '/.well-known/gatehouse/login/refresh' && r.status === 403);
      expect(record.reason).toMatch(/^issuer\.refreshLimit \(4s\) after the login at .* has passed: refresh until /);
    } finally {
      await short.stop();
    }
  }, 60_000);
});

describe('logout', () => {
  it('revokes every token of the login at once: the latest and its predecessor are refused from the next request on', async () => {
    const first = await loginAlice();
    const second = (await refresh(first.token)).json as unknown as Issued;
    expect((await curl(site.gw.h, '/~alice/notebook/', { client: site.aliceCert, token: second.token })).status).toBe(200);
    const other = await loginAlice();
    const out = await postLogin(site.gw.h, site.aliceCert, '/logout', {}, second.token);
    expect(out.status).toBe(200);
    expect([...(out.json.revoked as string[])].sort()).toEqual([first.revocationId, second.revocationId].sort());
    for (const token of [first.token, second.token]) {
      const after = await curl(site.gw.h, '/~alice/notebook/', { client: site.aliceCert, token });
      expect(after.status).toBe(403);
      expect(after.body).toContain('token revoked');
    }
    // Another login of alice's is not this one: it stays valid.
    expect((await curl(site.gw.h, '/~alice/notebook/', { client: site.aliceCert, token: other.token })).status).toBe(200);
    expect((await refresh(second.token)).json).toMatchObject({ code: 'GH_TOKEN_REVOKED' });
    await site.gw.h.waitForAudit((r) => r.path === '/.well-known/gatehouse/login/logout' && r.decision === 'allow' && (r.detail as { revoked?: string[] } | undefined)?.revoked?.length === 2);
  }, 60_000);
});
