// `gatehouse login`'s server side over the wire: the device flow's start and poll endpoints on the gateway's
// mTLS listener, the real OpenID provider approving (or refusing) in its own process, curl as the terminal.
import { describe, expect, it } from 'vitest';
import { curl } from './support/gatewayHarness.ts';
import { ISSUED_NOTEBOOK_ROUTE, deviceLogin, useIssuedNotebook, pollDeviceLogin, postLogin, startDeviceLogin, startIssuerGateway } from './support/issuerGateway.ts';
import { completeInteraction, testAccounts } from './support/oidcProvider.ts';
import type { TestAccount } from './support/oidcProviderAccounts.ts';

const site = useIssuedNotebook();

const account = (name: string): TestAccount => {
  const found = testAccounts.find((a) => a.username === name);
  if (found === undefined) throw new Error(`no account ${name}`);
  return found;
};
const alice = account('alice');
const bob = account('bob');


describe('device login endpoints', () => {
  it('alice logs in: the token is bound to her certificate, reaches her notebook, and its token.issue record names her IdP identity', async () => {
    const answer = await deviceLogin(site.gw, site.aliceCert, alice);
    expect(answer.status).toBe(200);
    expect(answer.headers['cache-control']).toEqual(['no-store']);
    const { token, user, expiresAt, refreshUntil, revocationId } = answer.json as Record<string, string>;
    expect(user).toBe('alice');
    expect(Date.parse(expiresAt ?? '')).toBeGreaterThan(Date.now() + 7 * 3600_000);
    expect(Date.parse(refreshUntil ?? '')).toBeGreaterThan(Date.parse(expiresAt ?? ''));
    expect((await curl(site.gw.h, '/~alice/notebook/', { client: site.aliceCert, token })).status).toBe(200);
    // Bound to the certificate presented at login: bob's certificate cannot use it.
    expect((await curl(site.gw.h, '/~alice/notebook/', { client: site.bobCert, token })).status).toBe(403);
    const record = await site.gw.h.waitForAudit((r) => r.event === 'token.issue' && r.decision === 'allow' && r.token?.revocationIds?.[0] === revocationId);
    expect(record).toMatchObject({ path: '/.well-known/gatehouse/login/device/token', status: 200, client: { cn: 'alice' }, detail: { flow: 'device', idp: { issuer: site.gw.idp.issuer, subject: alice.sub }, fingerprint: site.aliceCert.fingerprint, signer: 'idp' } });
    expect(JSON.stringify(site.gw.h.audit())).not.toContain(token);
    // Every request made with it names the issuer and alice's IdP login.
    const used = await site.gw.h.waitForAudit((r) => r.event === 'request' && r.decision === 'allow' && r.path === '/~alice/notebook/');
    expect(used.token).toMatchObject({ user: 'alice', revocationIds: [revocationId], signer: 'idp', idp: { issuer: site.gw.idp.issuer, subject: alice.sub } });
  }, 60_000);

  it('answers authorization_pending until the user approves, and another certificate polling the login gets 404', async () => {
    const started = await startDeviceLogin(site.gw.h, site.aliceCert);
    expect(started).toMatchObject({ interval: 1, verificationUri: `${site.gw.idp.issuer}/device` });
    expect(started.login).toMatch(/^[A-Za-z0-9_-]{43,}$/);
    const pending = await postLogin(site.gw.h, site.aliceCert, '/device/token', { login: started.login });
    expect(pending.status).toBe(202);
    expect(pending.json).toEqual({ error: 'authorization_pending', interval: 1 });
    const foreign = await postLogin(site.gw.h, site.bobCert, '/device/token', { login: started.login });
    expect(foreign.status).toBe(404);
    expect(foreign.json).toMatchObject({ error: 'invalid_grant', code: 'GH_LOGIN_UNKNOWN' });
    await completeInteraction(site.gw.idp, started.verificationUriComplete ?? '', alice);
    expect((await pollDeviceLogin(site.gw.h, site.aliceCert, started)).status).toBe(200);
    // The login is used up: its handle is unknown from now on.
    expect((await postLogin(site.gw.h, site.aliceCert, '/device/token', { login: started.login })).status).toBe(404);
  }, 60_000);

  it('a client polling faster than the interval gets 429 slow_down, Retry-After and an interval 5 s longer, with its record', async () => {
    const started = await startDeviceLogin(site.gw.h, site.aliceCert);
    expect((await postLogin(site.gw.h, site.aliceCert, '/device/token', { login: started.login })).status).toBe(202);
    const fast = await postLogin(site.gw.h, site.aliceCert, '/device/token', { login: started.login });
    expect(fast.status).toBe(429);
    expect(fast.json).toMatchObject({ error: 'slow_down', code: 'GH_LOGIN_SLOW_DOWN', interval: 6 });
    expect(fast.headers['retry-after']).toEqual(['6']);
    const record = await site.gw.h.waitForAudit((r) => r.event === 'request' && r.status === 429 && r.path === '/.well-known/gatehouse/login/device/token');
    expect(record).toMatchObject({ decision: 'deny', client: { cn: 'alice' }, detail: { code: 'GH_LOGIN_SLOW_DOWN' } });
    expect(record.reason).toMatch(/^device login polled \d+ ms after the previous poll, the interval is 1 s: now 6 s$/);
  }, 30_000);

  it("refuses IdP user bob logging in with alice's certificate: 403 with the code, a token.issue deny record", async () => {
    const answer = await deviceLogin(site.gw, site.aliceCert, bob);
    expect(answer.status).toBe(403);
    expect(answer.json).toEqual({ error: 'access_denied', code: 'GH_ISSUE_CERTIFICATE_MISMATCH', message: 'your login does not match your client certificate' });
    const record = await site.gw.h.waitForAudit((r) => r.event === 'token.issue' && r.decision === 'deny' && r.reason?.startsWith('certificate-mismatch') === true);
    expect(record).toMatchObject({ status: 403, client: { cn: 'alice' }, detail: { flow: 'device', idp: { subject: bob.sub } } });
    expect(record.reason).toContain('IdP preferred_username "bob" is not the holder of the client certificate (CN "alice"');
  }, 60_000);

  it('refuses a route the groups may not receive, and a group the rules do not list', async () => {
    const route = await deviceLogin(site.gw, site.bobCert, bob, { routes: ['admin'] });
    expect(route.status).toBe(403);
    expect(route.json).toEqual({ error: 'access_denied', code: 'GH_ISSUE_ROUTE_NOT_ALLOWED', message: 'your groups may not receive route admin' });
    const group = await deviceLogin(site.gw, site.bobCert, bob, { groups: ['students'] });
    expect(group.status).toBe(403);
    expect(group.json).toEqual({ error: 'access_denied', code: 'GH_ISSUE_GROUP_NOT_ALLOWED', message: 'group students may not receive tokens here' });
    await site.gw.h.waitForAudit((r) => r.event === 'token.issue' && r.decision === 'deny' && r.reason?.startsWith('route-not-allowed: requested route(s) admin') === true);
    await site.gw.h.waitForAudit((r) => r.event === 'token.issue' && r.decision === 'deny' && r.reason?.startsWith('group-not-allowed: requested group(s) students') === true);
  }, 60_000);

  it('refuses when the IdP session has ended (the provider says under a second is left)', async () => {
    await site.gw.idp.setSessionLeft(0.5);
    try {
      const answer = await deviceLogin(site.gw, site.aliceCert, alice);
      expect(answer.status).toBe(403);
      expect(answer.json).toMatchObject({ error: 'access_denied', code: 'GH_ISSUE_IDP_SESSION_EXPIRED' });
      await site.gw.h.waitForAudit((r) => r.event === 'token.issue' && r.decision === 'deny' && r.reason?.startsWith('idp-session-expired: IdP session ended at') === true);
    } finally {
      await site.gw.idp.setSessionLeft(undefined);
    }
  }, 60_000);

  it('refuses a malformed start (unknown field, bad ttl) and a poll without a handle, with request records', async () => {
    const unknown = await postLogin(site.gw.h, site.aliceCert, '/device', { scope: 'admin' });
    expect(unknown.status).toBe(400);
    expect(unknown.json).toMatchObject({ error: 'invalid_request', code: 'GH_LOGIN_BAD_REQUEST' });
    const ttl = await postLogin(site.gw.h, site.aliceCert, '/device', { ttl: 'forever' });
    expect(ttl.status).toBe(400);
    const poll = await postLogin(site.gw.h, site.aliceCert, '/device/token', {});
    expect(poll.status).toBe(400);
    const large = await postLogin(site.gw.h, site.aliceCert, '/device', { groups: ['x'.repeat(20_000)] });
    expect(large.status).toBe(413);
    expect(large.json).toMatchObject({ error: 'invalid_request', code: 'GH_FORM_TOO_LARGE' });
    await site.gw.h.waitForAudit((r) => r.event === 'request' && r.status === 400 && r.reason === 'unknown field "scope"');
  }, 30_000);
});

describe('device login under serve --processes 2', () => {
  it('is polled to its end whichever process each connection lands on (the handle is the sealed login)', async () => {
    const group = await startIssuerGateway({ routes: ISSUED_NOTEBOOK_ROUTE, serveArgs: ['--processes', '2'] });
    try {
      const cert = await group.h.pki.client('alice');
      const refs: Array<{ start?: number; token?: number }> = [];
      for (let i = 0; i < 3; i++) {
        const answer = await deviceLogin(group, cert, alice);
        expect(answer.status).toBe(200);
        const issued = await group.h.waitForAudit((r) => r.event === 'token.issue' && r.token?.revocationIds?.[0] === (answer.json as { revocationId: string }).revocationId);
        const ref = group.h.audit().filter((r) => (r.detail as { login?: string } | undefined)?.login === 'device.start').at(-1);
        refs.push({ ...(ref?.pid !== undefined && { start: ref.pid }), ...(issued.pid !== undefined && { token: issued.pid }) });
      }
      // Each curl is a connection of its own: some login was started in one process and finished in the other.
      expect(refs.some((r) => r.start !== undefined && r.token !== undefined && r.start !== r.token)).toBe(true);
    } finally {
      await group.stop();
    }
  }, 120_000);
});
