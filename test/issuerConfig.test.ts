// The `issuer:` block and authz.issuers through `gatehouse check` (every error names file, line and key)
// and `gatehouse authz explain --claims` (what a login with these claims and this certificate would receive).
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { gatewayConfig, makeRootKey, runGatehouse } from './support/gatewayHarness.ts';
import { claimsOf, writeIssuerKey } from './support/issuerFixtures.ts';
import { makeTestPki, type TestClientCertificate } from './support/pki.ts';

let dir: string;
let alice: TestClientCertificate;
let issuerPublicKey: string;
const root = makeRootKey();

const routes = `  - name: notebook
    path: /~{user}/notebook/
    upstream: unix:run/x.sock
    policy: |
      allow if user($u), param("user", $u);
`;

function issuerBlock(groups = '    hpc:\n      routes: [notebook]\n      maxTtl: 8h\n    staff:\n      routes: ["*"]\n', signingKey = 'certs/issuer.key'): string {
  return `issuer:\n  name: idp\n  keyId: 1\n  signingKey: ${signingKey}\n  provider:\n    url: https://idp.test/realms/site\n    clientId: gatehouse\n  groups:\n${groups}`;
}

const trusted = () => `  issuers:\n    idp:\n      keyId: 1\n      publicKey: ${issuerPublicKey}\n`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-issuer-config-'));
  const pki = await makeTestPki(join(dir, 'certs'));
  alice = await pki.client('alice');
  writeFileSync(join(dir, 'certs', 'token-root.pub'), `${root.publicKey}\n`);
  writeFileSync(join(dir, 'certs', 'token-root.key'), `${root.privateKey}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'certs', 'revoked.txt'), '');
  mkdirSync(join(dir, 'run'), { recursive: true });
  issuerPublicKey = writeIssuerKey(join(dir, 'certs')).publicKey;
  writeFileSync(join(dir, 'alice.claims.json'), JSON.stringify(claimsOf('alice', ['hpc'])));
  writeFileSync(join(dir, 'bob.claims.json'), JSON.stringify(claimsOf('bob', ['hpc', 'staff'])));
});

async function check(top: string, authz = '') {
  const file = `c${Math.random().toString(36).slice(2)}.yaml`;
  writeFileSync(join(dir, file), gatewayConfig({ routes, extraTop: top, authzExtra: authz }));
  const run = await runGatehouse(['check', '--config', file], { cwd: dir });
  return { ...run, file, lines: run.stderr.split('\n').filter((l) => l.startsWith(`${file}:`)) };
}

describe('gatehouse check', () => {
  it('accepts an issuer this gateway trusts', async () => {
    const run = await check(issuerBlock(), trusted());
    expect(run.lines).toEqual([]);
    expect(run.code).toBe(0);
  });

  it('names file, line and key of a group granting a route that does not exist, and of a bad duration', async () => {
    const run = await check(issuerBlock('    hpc:\n      routes: [notebok]\n      maxTtl: 8 hours\n'), trusted());
    expect(run.code).not.toBe(0);
    expect(run.lines.find((l) => l.includes('issuer.groups.hpc.routes[0]'))).toMatch(/:\d+:\d+: issuer\.groups\.hpc\.routes\[0\]: no route named "notebok"/);
    expect(run.lines.find((l) => l.includes('issuer.groups.hpc.maxTtl'))).toMatch(/a duration such as 30m, 8h or 1d/);
  });

  it('refuses the root key as the issuer key, a trusted key that is not the issuer\'s, and warns when this gateway does not trust its issuer', async () => {
    const rootAsIssuer = await check(issuerBlock(undefined, 'certs/token-root.key'));
    expect(rootAsIssuer.lines.find((l) => l.includes('issuer.signingKey'))).toMatch(/is the token root key/);
    const wrongKey = await check(issuerBlock(), `  issuers:\n    idp:\n      keyId: 2\n      publicKey: ${root.publicKey}\n`);
    expect(wrongKey.lines.some((l) => /authz\.issuers\.idp\.keyId: issuer idp signs with key id 1, not 2/.test(l))).toBe(true);
    expect(wrongKey.lines.some((l) => /authz\.issuers\.idp\.publicKey: this is the root key/.test(l))).toBe(true);
    const missingCa = await check(issuerBlock().replace('    clientId: gatehouse\n', '    clientId: gatehouse\n    ca: certs/idp-ca.pem\n'), trusted());
    expect(missingCa.lines.find((l) => l.includes('issuer.provider.ca'))).toMatch(/cannot read .*idp-ca\.pem/);
    const untrusted = await check(issuerBlock());
    expect(untrusted.lines.find((l) => l.includes('issuer.name'))).toMatch(/warning: this gateway refuses the tokens its own issuer signs: add authz\.issuers\.idp with keyId 1 and publicKey ed25519\//);
  });

  it('checks issuer.certificates: a usable issuing CA passes; a leaf as the CA, a key others can read, and a key of another CA are named', async () => {
    const certificates = (ca: string, caKey: string) => `  certificates:\n    ca: ${ca}\n    caKey: ${caKey}\n    ttl: 8h\n`;
    const good = await check(issuerBlock() + certificates('certs/ca.crt', 'certs/ca.key'), trusted());
    expect(good.lines).toEqual([]);
    expect(good.code).toBe(0);
    const leaf = await check(issuerBlock() + certificates(alice.certPath, 'certs/ca.key'), trusted());
    expect(leaf.lines.find((l) => l.includes('issuer.certificates.ca'))).toMatch(/is not a CA certificate/);
    const other = await makeTestPki(join(dir, 'other-ca'));
    const foreignKey = await check(issuerBlock() + certificates('certs/ca.crt', join(other.dir, 'ca.key')), trusted());
    expect(foreignKey.lines.find((l) => l.includes('issuer.certificates.caKey'))).toMatch(/is not the key of/);
    chmodSync(join(other.dir, 'ca.key'), 0o640);
    const loose = await check(issuerBlock() + certificates(other.caCertPath, join(other.dir, 'ca.key')), trusted());
    expect(loose.code).not.toBe(0);
    expect(loose.lines.find((l) => l.includes('issuer.certificates.caKey'))).toMatch(/readable by others \(mode 0640\).*refuses to sign with it/);
  });

  it('refuses two issuers with one key id and an issuer named root', async () => {
    const run = await check('', `  issuers:\n    root:\n      keyId: 1\n      publicKey: ${issuerPublicKey}\n    other:\n      keyId: 1\n      publicKey: ${issuerPublicKey}\n`);
    expect(run.lines.some((l) => /:\d+:\d+: authz\.issuers\.root: "root" names the root key/.test(l))).toBe(true);
    expect(run.lines.some((l) => /:\d+:\d+: authz\.issuers\.other\.keyId: issuer root has key id 1 already/.test(l))).toBe(true);
  });
});

describe('gatehouse authz explain --claims', () => {
  const explain = async (claims: string, ...args: string[]) => {
    const file = `e${Math.random().toString(36).slice(2)}.yaml`;
    writeFileSync(join(dir, file), gatewayConfig({ routes, extraTop: issuerBlock(), authzExtra: trusted() }));
    return runGatehouse(['authz', 'explain', '--config', file, '--claims', claims, '--cert', alice.certPath, ...args], { cwd: dir });
  };

  it('shows what alice\'s login would receive', async () => {
    const run = await explain('alice.claims.json');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^decision: {2}ISSUE \(user alice, groups hpc\)$/m);
    expect(run.stdout).toMatch(/^routes: {4}notebook$/m);
    expect(run.stdout).toMatch(/^lifetime: {2}28800 s$/m);
    expect(run.stdout).toContain('ttl capped to 28800s by group hpc');
  });

  it('shows the refusal of bob\'s login with alice\'s certificate, and of a route no group of hers is given', async () => {
    const bob = await explain('bob.claims.json');
    expect(bob.code).toBe(2);
    expect(bob.stdout).toMatch(/^decision: {2}REFUSE certificate-mismatch \(your login does not match your client certificate\)$/m);
    const route = await explain('alice.claims.json', '--grant-route', 'admin');
    expect(route.code).toBe(2);
    expect(route.stdout).toMatch(/REFUSE route-not-allowed/);
  });
});
