// Several signers end to end, with a real `gatehouse serve` and curl: tokens signed by a trusted
// issuer's key (authz.issuers, chosen by the token's root key id) are accepted, a route's policy tells
// them from root-key tokens by `signer(...)`, an issuer the gateway does not trust is refused as an invalid token,
// and a loan to bob from an issued token is still attributed to alice's login in his records.
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEchoService } from '../src/demo/echoService.ts';
import { issueToken } from '../src/issuer/issueToken.ts';
import type { IssuerKey } from '../src/issuer/issuerKey.ts';
import { identityFromPem } from '../src/tls/peerIdentity.ts';
import { generateRootKey } from '../src/token/keyFiles.ts';
import { mintToken, type MintOptions } from '../src/token/mintToken.ts';
import { curl, inOneHour, mintRaw, runGatehouseOk, startHarness, type Harness } from './support/gatewayHarness.ts';
import { IDP_ISSUER, claimsOf, testIssuerRules, writeIssuerKey } from './support/issuerFixtures.ts';
import type { TestClientCertificate } from './support/pki.ts';

let issuerKey: IssuerKey;
let idpKey: biscuit.KeyPair;
const strangerKey = new biscuit.KeyPair(biscuit.SignatureAlgorithm.Ed25519);

let h: Harness;
let echo: Server;
let alice: TestClientCertificate;
let bob: TestClientCertificate;

const routes = `  - name: notebook
    path: /~{user}/notebook/
    upstream: unix:run/demo.sock
    policy: |
      allow if user($u), param("user", $u);
  - name: admin
    path: /admin/
    upstream: unix:run/demo.sock
    policy: |
      allow if user($u), signer("root");
  - name: self-service
    path: /self/
    upstream: unix:run/demo.sock
    policy: |
      allow if user($u), signer("idp");
`;

function issued(key: biscuit.KeyPair, rootKeyId: number | undefined, extra: Partial<MintOptions> = {}): string {
  const minted = mintToken({ privateKey: key.getPrivateKey(), user: 'alice', clientFingerprint: alice.fingerprint, idp: { issuer: 'https://idp.test', subject: 'sub-alice' }, ...(rootKeyId !== undefined && { rootKeyId }), ...extra });
  if (!minted.ok) throw new Error(minted.error.message);
  return minted.value;
}

beforeAll(async () => {
  // The issuer's key as the issuer reads it (its own file), and the same key for tokens built by hand here.
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-issuer-key-'));
  issuerKey = writeIssuerKey(dir);
  idpKey = biscuit.KeyPair.fromPrivateKey(issuerKey.privateKey);
  h = await startHarness({ routes, authzExtra: `  issuers:\n    idp:\n      keyId: 1\n      publicKey: ${issuerKey.publicKey}\n` });
  echo = await startEchoService(join(h.dir, 'run', 'demo.sock'), 'demo');
  [alice, bob] = await Promise.all([h.pki.client('alice'), h.pki.client('bob')]);
});

afterAll(async () => {
  echo?.close();
  await h?.stop();
});

describe('tokens from several signers', () => {
  it('accepts a token signed by a trusted issuer key on a route', async () => {
    const reply = await curl(h, '/~alice/notebook/', { client: alice, token: issued(idpKey, 1) });
    expect(reply.status).toBe(200);
  });

  it('lets a route policy tell the root key from an issuer', async () => {
    const fromIssuer = issued(idpKey, 1);
    const fromRoot = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
    expect((await curl(h, '/admin/', { client: alice, token: fromRoot })).status).toBe(200);
    expect((await curl(h, '/admin/', { client: alice, token: fromIssuer })).status).toBe(403);
    expect((await curl(h, '/self/', { client: alice, token: fromIssuer })).status).toBe(200);
    expect((await curl(h, '/self/', { client: alice, token: fromRoot })).status).toBe(403);
  });

  it('refuses, as an invalid token, a token from an issuer that is not trusted', async () => {
    // An unknown key id, and a stranger's key under the trusted issuer's id.
    for (const token of [issued(strangerKey, 7), issued(strangerKey, 1), issued(idpKey, undefined)]) {
      const reply = await curl(h, '/~alice/notebook/', { client: alice, token });
      expect(reply.status).toBe(401);
      expect(reply.body).toMatch(/invalid token/);
    }
    const record = await h.waitForAudit((r) => r.event === 'request' && r.status === 401 && /unknown signer \(root key id 7\)/.test(r.reason ?? ''));
    expect(record.decision).toBe('deny');
    await h.waitForAudit((r) => r.event === 'request' && r.status === 401 && /key of issuer idp/.test(r.reason ?? ''));
  });

  it('refuses an issued token whose authority block claims a signer itself', async () => {
    const builder = new biscuit.BiscuitBuilder();
    builder.addCode(`user("alice"); signer("root"); check if time($t), $t <= ${inOneHour()};`);
    builder.setRootKeyId(1);
    const forged = builder.build(idpKey.getPrivateKey()).toBase64();
    const reply = await curl(h, '/admin/', { client: alice, token: forged });
    expect(reply.status).toBe(401);
    await h.waitForAudit((r) => r.event === 'request' && /states signer/.test(r.reason ?? ''));
  });

  it('does not let a holder\'s block claim the root signer either', async () => {
    const token = biscuit.Biscuit.fromBase64(issued(idpKey, 1), idpKey.getPublicKey());
    const block = biscuit.Biscuit.block_builder();
    block.addCode('signer("root");');
    const claimed = token.appendBlock(block).toBase64();
    expect((await curl(h, '/admin/', { client: alice, token: claimed })).status).toBe(403);
    expect((await curl(h, '/self/', { client: alice, token: claimed })).status).toBe(200);
  });
});

describe('a loan from an issued token', () => {
  it("is still attributed to alice's login in bob's records", async () => {
    const delegation = generateRootKey();
    writeFileSync(join(h.dir, 'delegation.key'), `${delegation.privateKey}\n`, { mode: 0o600 });
    writeFileSync(join(h.dir, 'issuer.pub'), `${issuerKey.publicKey}\n`);
    const result = issueToken({ claims: claimsOf('alice', ['hpc']), certificate: identityFromPem(alice.cert), rules: testIssuerRules(), key: issuerKey, now: new Date(), delegationKey: delegation.publicKey });
    if (!result.ok) throw new Error(result.refusal.reason);
    writeFileSync(join(h.dir, 'alice.token'), result.issued.token);
    const loan = (await runGatehouseOk(['token', 'attenuate', '--pubkey', 'issuer.pub', '--token-file', 'alice.token', '--delegation-key', 'delegation.key', '--bind-cert', bob.certPath, '--ttl', '1h'], { cwd: h.dir })).trim();
    expect((await curl(h, '/~alice/notebook/', { client: bob, token: result.issued.token })).status).toBe(403);
    expect((await curl(h, '/~alice/notebook/', { client: bob, token: loan })).status).toBe(200);
    const record = await h.waitForAudit((r) => r.event === 'request' && r.decision === 'allow' && r.client?.cn === 'bob');
    expect(record.token?.user).toBe('alice');
    // The authority block's revocation id is the one the token.issue record of alice's login names.
    expect(record.token?.revocationIds?.[0]).toBe(result.issued.revocationId);
    expect(record.token?.blocks?.[1]).toMatchObject({ role: 'third-party', delegation: true, boundTo: { fingerprint: bob.fingerprint } });
    // Bob's record names the issuer and alice's IdP login the loan comes from.
    expect(record.token).toMatchObject({ signer: 'idp', idp: { issuer: IDP_ISSUER, subject: 'subject-of-alice' } });
    // "Everything alice@idp did" is one query away, loans included: bob's request under her token is there.
    const found = (await runGatehouseOk(['audit', 'query', '--idp-subject', 'subject-of-alice', '--format', 'json', h.auditFile])).trim().split('\n').map((line) => JSON.parse(line) as { req?: string; client?: { cn?: string } });
    expect(found.some((r) => r.req === record.req && r.client?.cn === 'bob')).toBe(true);
    expect((await runGatehouseOk(['audit', 'query', '--idp-subject', 'subject-of-bob', '--format', 'json', h.auditFile])).trim()).toBe('');
  });
});

describe('revocation and reload', () => {
  it('revokes an issued token like any other', async () => {
    const token = issued(idpKey, 1);
    expect((await curl(h, '/~alice/notebook/', { client: alice, token })).status).toBe(200);
    const result = issueToken({ claims: claimsOf('alice', ['hpc']), certificate: identityFromPem(alice.cert), rules: testIssuerRules(), key: issuerKey, now: new Date() });
    if (!result.ok) throw new Error(result.refusal.reason);
    expect((await curl(h, '/~alice/notebook/', { client: alice, token: result.issued.token })).status).toBe(200);
    appendFileSync(h.revocationList, `${result.issued.revocationId}\n`);
    // The list is watched: the new id takes effect once the gateway has re-read it.
    await h.waitForAudit((r) => r.event === 'revocation.reload');
    for (let i = 0; i < 50 && (await curl(h, '/~alice/notebook/', { client: alice, token: result.issued.token })).status !== 403; i++) await new Promise((r) => setTimeout(r, 100));
    expect((await curl(h, '/~alice/notebook/', { client: alice, token: result.issued.token })).status).toBe(403);
  });

  it('stops accepting an issuer removed from authz.issuers by a reload', async () => {
    const token = issued(idpKey, 1);
    const config = join(h.dir, 'routes.yaml');
    writeFileSync(config, readFileSync(config, 'utf8').replace(/  issuers:\n    idp:\n.*\n.*\n/, ''));
    h.proc.kill('SIGHUP');
    await h.waitForAudit((r) => r.event === 'config.reload' && r.decision === 'allow');
    const reply = await curl(h, '/~alice/notebook/', { client: alice, token });
    expect(reply.status).toBe(401);
    await h.waitForAudit((r) => r.event === 'request' && /unknown signer \(root key id 1\)/.test(r.reason ?? ''));
  });
});
