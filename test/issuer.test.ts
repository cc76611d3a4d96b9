// The issuer's core without the network: claim rules decide what a login may receive, the issuer's
// key signs the token (bound to the certificate, carrying the IdP identity), refusals say why, the
// token.issue record names everything; and the holder's `token attenuate` only ever narrows an issued token.
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { evaluateToken } from '../src/authz/policy/evaluateToken.ts';
import { trustedSigners, type TrustedSigners } from '../src/token/signers.ts';
import type { RequestFacts } from '../src/authz/types.ts';
import { issueRecord } from '../src/issuer/issueRecord.ts';
import { issueToken, type IssueInput, type IssuedToken } from '../src/issuer/issueToken.ts';
import { readIssuerKey, type IssuerKey } from '../src/issuer/issuerKey.ts';
import { identityFromPem, type PeerIdentity } from '../src/tls/peerIdentity.ts';
import { generateRootKey } from '../src/token/keyFiles.ts';
import { runGatehouse } from './support/gatewayHarness.ts';
import { claimsOf, IDP_ISSUER, testIssuerRules, writeIssuerKey } from './support/issuerFixtures.ts';
import { makeTestPki, type TestClientCertificate } from './support/pki.ts';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-issuer-'));
const root = generateRootKey();
let key: IssuerKey;
let signers: TrustedSigners;
let aliceCert: TestClientCertificate;
let bobCert: TestClientCertificate;
let alice: PeerIdentity;
let bob: PeerIdentity;
// Near the real time: `token attenuate --ttl` counts from the real clock.
const now = new Date(Math.floor(Date.now() / 1000) * 1000);
const later = (seconds: number) => new Date(now.getTime() + seconds * 1000);
const limits = { maxFacts: 1000, maxIterations: 100, maxTimeMicros: 100_000 };

beforeAll(async () => {
  const pki = await makeTestPki(join(dir, 'certs'));
  [aliceCert, bobCert] = await Promise.all([pki.client('alice'), pki.client('bob')]);
  alice = identityFromPem(aliceCert.cert);
  bob = identityFromPem(bobCert.cert);
  key = writeIssuerKey(dir, root.publicKey);
  writeFileSync(join(dir, 'issuer.pub'), `${key.publicKey}\n`);
  const trusted = trustedSigners({ root: root.publicKey, issuers: { idp: { keyId: 1, publicKey: key.publicKey } } });
  if (!trusted.ok) throw new Error(trusted.reason);
  signers = trusted.signers;
});

function issue(input: Partial<IssueInput> = {}): IssuedToken {
  const result = issueToken({ claims: claimsOf('alice', ['hpc']), certificate: alice, rules: testIssuerRules(), key, now, ...input });
  if (!result.ok) throw new Error(result.refusal.reason);
  return result.issued;
}

/** The gateway's own evaluation of `token` on a route named `route`, as `client`, at `time`. */
function decide(token: string, route: string, client: PeerIdentity, time = now, policy = 'allow if user($u);') {
  const signed = signers.verify(token);
  if (!signed.ok) throw new Error(signed.reason);
  const facts: RequestFacts = { time, route, protocol: 'http', method: 'GET', path: '/', params: {}, sourceIp: '127.0.0.1', client, signer: signed.signer };
  try {
    return evaluateToken(signed.token, { name: route, policy, limits }, facts);
  } finally {
    signed.token.free();
  }
}

describe('issuing after a login', () => {
  it('signs with the issuer key, binds the certificate, and carries user, groups and the IdP identity', () => {
    const issued = issue();
    const signed = signers.verify(issued.token);
    expect(signed.ok && signed.signer).toBe('idp');
    if (!signed.ok) return;
    const authority = signed.token.getBlockSource(0);
    signed.token.free();
    expect(authority).toContain('user("alice")');
    expect(authority).toContain('group("hpc")');
    expect(authority).toContain(`idp_issuer("${IDP_ISSUER}")`);
    expect(authority).toContain('idp_subject("subject-of-alice")');
    expect(authority).toContain(`check if client_fingerprint("${alice.fingerprint}")`);
    // hpc's maxTtl (8 h) cuts the default 12 h.
    expect(issued.grant.ttlSeconds).toBe(8 * 3600);
    expect(issued.expiresAt.toISOString()).toBe(later(8 * 3600).toISOString());
    expect(decide(issued.token, 'notebook', alice).allow).toBe(true);
    expect(decide(issued.token, 'admin', alice).allow).toBe(false);
    expect(decide(issued.token, 'notebook', bob).allow).toBe(false);
    expect(decide(issued.token, 'notebook', alice, later(8 * 3600 + 1)).allow).toBe(false);
    expect(decide(issued.token, 'notebook', alice, now, 'allow if signer("idp"), idp_subject("subject-of-alice");').allow).toBe(true);
  });

  it('gives a staff member any route and the default 12 h, cut by the IdP session', () => {
    const staff = issue({ claims: claimsOf('alice', ['staff', 'unlisted']) });
    expect(staff.grant.groups).toEqual(['staff']);
    expect(staff.grant.routes).toBeUndefined();
    expect(staff.grant.ttlSeconds).toBe(12 * 3600);
    expect(decide(staff.token, 'admin', alice).allow).toBe(true);
    const short = issue({ claims: claimsOf('alice', ['staff']), idpSessionEndsAt: new Date(now.getTime() + 3600_000) });
    expect(short.grant.ttlSeconds).toBe(3600);
    expect(short.grant.rules).toContain('ttl capped to 3600s by the IdP session');
  });

  it('a token limited to routes that may publish names the publish decision among them, so the right can be used', () => {
    const issued = issue();
    expect(issued.grant.routes).toEqual(['notebook', 'publish', 'self-service']);
    expect(decide(issued.token, 'publish', alice).allow).toBe(true);
    // Asking for fewer routes keeps it too; a group without publish gets neither the right nor the route.
    expect(issue({ request: { routes: ['notebook'] } }).grant.routes).toEqual(['notebook', 'publish']);
    const rules = testIssuerRules({ groups: { hpc: { routes: ['notebook'] } } });
    const plain = issue({ rules });
    expect(plain.grant.routes).toEqual(['notebook']);
    expect(decide(plain.token, 'publish', alice).allow).toBe(false);
  });

  it('never signs with the root key', () => {
    const file = join(dir, 'root.key');
    writeFileSync(file, `${root.privateKey}\n`, { mode: 0o600 });
    const refused = readIssuerKey(file, { name: 'idp', keyId: 1 }, root.publicKey);
    expect(refused.ok).toBe(false);
    expect(!refused.ok && refused.error.message).toMatch(/is the token root key/);
  });
});

describe('refusals', () => {
  const refusal = (input: Partial<IssueInput>) => {
    const result = issueToken({ claims: claimsOf('alice', ['hpc']), certificate: alice, rules: testIssuerRules(), key, now, ...input });
    if (result.ok) throw new Error('issued');
    return result;
  };

  it('refuses IdP user bob with alice\'s certificate', () => {
    const result = refusal({ claims: claimsOf('bob', ['hpc', 'staff']) });
    expect(result.refusal.code).toBe('certificate-mismatch');
    expect(result.refusal.clientReason).toBe('your login does not match your client certificate');
    expect(result.refusal.reason).toContain('IdP preferred_username "bob" is not the holder of the client certificate (CN "alice"');
  });

  it('can match the certificate by email instead, and refuses a mismatch there too', () => {
    const rules = testIssuerRules({ certificate: { field: 'email', claim: 'email' } });
    expect(refusal({ rules }).refusal.code).toBe('certificate-mismatch');
  });

  it('refuses a group not allowed, a route not allowed, and a user with no allowed group', () => {
    expect(refusal({ claims: claimsOf('alice', ['hpc', 'admins']), request: { groups: ['admins'] } }).refusal.code).toBe('group-not-allowed');
    expect(refusal({ request: { groups: ['staff'] } }).refusal.clientReason).toBe('you are not in group staff');
    const route = refusal({ request: { routes: ['admin'] } });
    expect(route.refusal.code).toBe('route-not-allowed');
    expect(route.refusal.reason).toContain('groups hpc grant notebook, publish, self-service');
    expect(refusal({ claims: claimsOf('alice', ['students']) }).refusal.code).toBe('no-group-allowed');
  });

  it('refuses after the IdP session ended, and claims without a usable user', () => {
    expect(refusal({ idpSessionEndsAt: new Date(now.getTime() - 1000) }).refusal.code).toBe('idp-session-expired');
    expect(refusal({ claims: claimsOf('alice', ['hpc'], { preferred_username: 'alice"); user("root' }) }).refusal.code).toBe('claims-incomplete');
    expect(refusal({ claims: claimsOf('alice', ['hpc'], { sub: undefined }) }).refusal.code).toBe('claims-incomplete');
  });
});

describe('the token.issue record', () => {
  it('names the IdP identity, the claims and rules used, the revocation id, the certificate and the lifetime', () => {
    const result = issueToken({ claims: claimsOf('alice', ['hpc'], { secret_claim: 'x' }), certificate: alice, rules: testIssuerRules(), key, now });
    const record = issueRecord({ result, certificate: alice, flow: 'device' });
    if (!result.ok) throw new Error('refused');
    expect(record).toMatchObject({ event: 'token.issue', decision: 'allow', client: { cn: 'alice', fingerprint: alice.fingerprint }, token: { user: 'alice', groups: ['hpc'], revocationIds: [result.issued.revocationId] } });
    expect(record.detail).toMatchObject({ idp: { issuer: IDP_ISSUER, subject: 'subject-of-alice' }, signer: 'idp', fingerprint: alice.fingerprint, ttlSeconds: 28_800, routes: ['notebook', 'publish', 'self-service'], flow: 'device' });
    // Only the claims the rules read.
    expect(Object.keys(record.detail?.claims as object).sort()).toEqual(['groups', 'iss', 'preferred_username', 'sub']);
    expect((record.detail?.rules as string[]).join('; ')).toMatch(/user from claim preferred_username; certificate: claim preferred_username = certificate cn; group hpc: .*ttl capped to 28800s by group hpc/);
    const refused = issueRecord({ result: issueToken({ claims: claimsOf('bob', ['hpc']), certificate: alice, rules: testIssuerRules(), key, now }), certificate: alice });
    expect(refused).toMatchObject({ event: 'token.issue', decision: 'deny', detail: { idp: { subject: 'subject-of-bob' } } });
    expect(refused.reason).toMatch(/^certificate-mismatch: /);
  });
});

describe('the holder attenuates an issued token', () => {
  const attenuate = async (token: string, args: string[]) => {
    writeFileSync(join(dir, 'in.token'), token);
    const result = await runGatehouse(['token', 'attenuate', '--pubkey', join(dir, 'issuer.pub'), '--token-file', join(dir, 'in.token'), ...args], { cwd: dir });
    if (result.code !== 0) throw new Error(result.stderr);
    return result.stdout.trim();
  };

  it('only narrows: a route or a lifetime outside the issued ones stays refused', async () => {
    const issued = issue();
    const wider = await attenuate(issued.token, ['--route', 'admin', '--route', 'notebook', '--ttl', '30d']);
    expect(decide(wider, 'admin', alice).allow).toBe(false);
    expect(decide(wider, 'notebook', alice).allow).toBe(true);
    expect(decide(wider, 'notebook', alice, later(24 * 3600)).allow).toBe(false);
    const narrower = await attenuate(issued.token, ['--route', 'self-service']);
    expect(decide(narrower, 'notebook', alice).allow).toBe(false);
    const signed = signers.verify(wider);
    expect(signed.ok && signed.signer).toBe('idp');
    if (signed.ok) signed.token.free();
  });

  it('lends to bob with the delegation key the login named: bob is allowed, still as alice with her IdP identity', async () => {
    const delegation = generateRootKey();
    const delegationFile = join(dir, 'delegation.key');
    writeFileSync(delegationFile, `${delegation.privateKey}\n`, { mode: 0o600 });
    const issued = issue({ delegationKey: delegation.publicKey });
    expect(decide(issued.token, 'notebook', bob).allow).toBe(false);
    const loan = await attenuate(issued.token, ['--delegation-key', delegationFile, '--bind-cert', bobCert.certPath, '--ttl', '1h']);
    const decision = decide(loan, 'notebook', bob, now, 'allow if user($u), idp_subject("subject-of-alice");');
    expect(decision).toMatchObject({ allow: true, user: 'alice' });
    expect(decision.revocationIds?.[0]).toBe(issued.revocationId);
    const inspected = await runGatehouse(['token', 'inspect', '--pubkey', join(dir, 'issuer.pub'), '--token', loan], { cwd: dir });
    expect(inspected.stdout).toContain('idp_subject("subject-of-alice")');
    expect(readFileSync(join(dir, 'issuer.pub'), 'utf8')).toContain(key.publicKey);
  });
});

describe('issuer tooling', () => {
  it('token keygen --issuer writes a separate key pair for the issuer', async () => {
    const run = await runGatehouse(['token', 'keygen', '--issuer', '--out', join(dir, 'keys', 'issuer')], { cwd: dir });
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/issuer\.signingKey; the public key goes to authz\.issuers\.<name>\.publicKey/);
    expect(statSync(join(dir, 'keys', 'issuer.key')).mode & 0o777).toBe(0o600);
    const written = readIssuerKey(join(dir, 'keys', 'issuer.key'), { name: 'idp', keyId: 2 }, root.publicKey);
    expect(written.ok && written.value.publicKey).toBe(run.stdout.trim());
  });

  it('token revoke --user revokes every token issued to the user, from the token.issue records', async () => {
    const issuedTo = (user: string) => issueToken({ claims: claimsOf(user, ['staff']), certificate: identityFromPem(user === 'alice' ? aliceCert.cert : bobCert.cert), rules: testIssuerRules(), key, now });
    const results = [issuedTo('alice'), issuedTo('alice'), issuedTo('bob')];
    const refused = issueToken({ claims: claimsOf('alice', ['students']), certificate: alice, rules: testIssuerRules(), key, now });
    const lines = [...results, refused].map((result, i) => JSON.stringify({ seq: i + 1, time: now.toISOString(), ...issueRecord({ result, certificate: alice }) }));
    writeFileSync(join(dir, 'issuer-audit.log'), `${lines.join('\n')}\n`);
    writeFileSync(join(dir, 'revoked.txt'), '');
    const run = await runGatehouse(['token', 'revoke', '--user', 'alice', '--audit', join(dir, 'issuer-audit.log'), '--list', join(dir, 'revoked.txt')], { cwd: dir });
    expect(run.code).toBe(0);
    expect(run.stderr).toContain('2 token(s) issued to alice');
    const expected = results.slice(0, 2).map((r) => (r.ok ? r.issued.revocationId : ''));
    expect(run.stdout.trim().split('\n').sort()).toEqual(expected.sort());
    expect(readFileSync(join(dir, 'revoked.txt'), 'utf8')).not.toContain(results[2]?.ok ? results[2].issued.revocationId : 'x');
  });
});
