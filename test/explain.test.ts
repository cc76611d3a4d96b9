// `gatehouse authz explain` as an operator runs it (real CLI, real config, PKI and tokens): facts,
// decision, matching policy or failing checks, exit status. Also `gatehouse check` on the authz keys
// this work added (external keys, `trusting {name}`, reserved delegation facts, deadlines).
import { mkdtempSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { runGatehouse, gatewayConfig, makeRootKey } from './support/gatewayHarness.ts';
import { makeTestPki, type TestClientCertificate } from './support/pki.ts';

let dir: string;
let alice: TestClientCertificate;
let bob: TestClientCertificate;
const root = makeRootKey();
const facility = new biscuit.KeyPair(biscuit.SignatureAlgorithm.Ed25519);

const gatehouse = (args: string[], input?: string) => runGatehouse(args, { cwd: dir, ...(input !== undefined && { input }) });

const config = (routes: string, authzExtra = ''): string => gatewayConfig({ routes, authzExtra });

const routes = `  - name: user-services
    path: /~{user}/{service}/
    upstream: unix:run/users/{user}/{service}.sock
    policy: |
      deny if client_cn("mallory");
      allow if user($u), param("user", $u);
  - name: demo
    path: /demo/
    upstream: unix:run/demo.sock
    policy: |
      allow if user($u);
`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-explain-'));
  const pki = await makeTestPki(join(dir, 'certs'));
  [alice, bob] = await Promise.all([pki.client('alice'), pki.client('bob')]);
  writeFileSync(join(dir, 'certs', 'token-root.pub'), `${root.publicKey}\n`);
  writeFileSync(join(dir, 'certs', 'token-root.key'), `${root.privateKey}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'certs', 'revoked.txt'), '');
  writeFileSync(join(dir, 'routes.yaml'), config(routes));
  const minted = await gatehouse(['token', 'mint', '--user', 'alice', '--group', 'hpc', '--bind-cert', alice.certPath, '--out', 'alice.token']);
  expect(minted.code).toBe(0);
  const narrowed = await gatehouse(['token', 'attenuate', '--token-file', 'alice.token', '--method', 'GET', '--path-prefix', '/~alice/notebook/', '--out', 'narrow.token']);
  expect(narrowed.code).toBe(0);
});

const explain = (...args: string[]) => gatehouse(['authz', 'explain', '--route', 'user-services', ...args]);

describe('gatehouse authz explain', () => {
  it('shows the facts, the token and the matching policy for an allow (exit 0)', async () => {
    const r = await explain('--token-file', 'narrow.token', '--cert', alice.certPath, '--path', '/~alice/notebook/tree?x=1');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('route:     user-services');
    expect(r.stdout).toContain('  route("user-services");');
    expect(r.stdout).toContain('  method("GET");');
    expect(r.stdout).toContain('  path("/~alice/notebook/tree");');
    expect(r.stdout).toContain('  param("user", "alice");');
    expect(r.stdout).toContain(`  client_fingerprint("${alice.fingerprint}");`);
    expect(r.stdout).toMatch(/^ {2}time\(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\);$/m);
    expect(r.stdout).toContain('token:     2 block(s), signatures verified');
    expect(r.stdout).toContain('decision:  ALLOW (user alice, groups hpc)');
    expect(r.stdout).toContain('matched:   allow if user($u), param("user", $u);');
    expect(r.stdout).toMatch(/evaluated: in [\d.]+ ms \(the gateway's hard deadline for this route: 100 ms\)/);
  });

  it('names the failing checks for a deny (exit 2)', async () => {
    const r = await explain('--token-file', 'narrow.token', '--cert', alice.certPath, '--path', '/~alice/notebook/x', '--method', 'POST');
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('  method("POST");');
    expect(r.stdout).toContain('decision:  DENY 403 (denied by policy) for user alice');
    expect(r.stdout).toContain('failing checks:\n  block 1 check 0: check if method($method), {"GET"}.contains($method)');

    const wrongCert = await explain('--token-file', 'alice.token', '--cert', bob.certPath, '--path', '/~alice/notebook/x');
    expect(wrongCert.code).toBe(2);
    expect(wrongCert.stdout).toContain(`block 0 check 1: check if client_fingerprint("${alice.fingerprint}")`);

    const otherUser = await explain('--token-file', 'alice.token', '--cert', alice.certPath, '--path', '/~bob/notebook/x');
    expect(otherUser.stdout).toMatch(/reason: {4}route user-services: no allow policy matched/);
  });

  it('evaluates at another time, and reports an expired token', async () => {
    const r = await explain('--token-file', 'alice.token', '--cert', alice.certPath, '--path', '/~alice/notebook/', '--time', '2100-01-01T00:00:00Z');
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('time(2100-01-01T00:00:00Z);');
    expect(r.stdout).toContain('DENY 403 (token expired)');
  });

  it('reports a revoked token before any Datalog', async () => {
    const ids = (await gatehouse(['token', 'inspect', '--pubkey', 'certs/token-root.pub', '--token-file', 'narrow.token', '--json'])).stdout;
    const id = (JSON.parse(ids) as { revocationIds: string[] }).revocationIds[1] ?? '';
    appendFileSync(join(dir, 'certs', 'revoked.txt'), `${id}\n`);
    const r = await explain('--token-file', 'narrow.token', '--cert', alice.certPath, '--path', '/~alice/notebook/');
    writeFileSync(join(dir, 'certs', 'revoked.txt'), '');
    expect(r.code).toBe(2);
    expect(r.stdout).toContain(`reason:    revocation id ${id} (block 1) is revoked`);
  });

  it('gives JSON, takes the token on standard input and refuses a path of another route', async () => {
    const json = await gatehouse(['authz', 'explain', '--route', 'demo', '--token-file', '-', '--cert', alice.certPath, '--path', '/demo/x', '--json'], (await gatehouse(['token', 'mint', '--user', 'carol', '--unbound'])).stdout);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as { decision: { allow: boolean; user: string }; facts: string[] };
    expect(parsed.decision).toMatchObject({ allow: true, user: 'carol' });
    expect(parsed.facts).toContain('route("demo");');
    const wrong = await gatehouse(['authz', 'explain', '--route', 'demo', '--token-file', 'alice.token', '--cert', alice.certPath, '--path', '/~alice/x/']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain('/~alice/x/ goes to route user-services, not demo');
  });
});

describe('gatehouse check on authz settings', () => {
  async function check(routeList: string, authzExtra = ''): Promise<{ code: number; stderr: string }> {
    const file = join(dir, `check-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, config(routeList, authzExtra));
    return gatehouse(['check', '--config', file]);
  }
  const route = (policy: string, extra = '') => `  - name: r
    path: /r/
    upstream: unix:run/r.sock
${extra}    policy: |
      ${policy}
`;
  const keys = `  externalKeys:\n    facility: ${facility.getPublicKey().toString()}\n`;

  it('accepts trusting {name} for a declared external key', async () => {
    expect(await check(route('allow if user($u), member($u, "beamline") trusting authority, {facility};'), keys)).toMatchObject({ code: 0 });
  });

  it('refuses undeclared keys, keys used as values, bad keys, delegation facts and short deadlines', async () => {
    const undeclared = await check(route('allow if member($u) trusting {lab};'), keys);
    expect(undeclared.stderr).toMatch(/routes\[0\]\.policy: policy uses \{lab\}, which is not filled in: declare it in authz\.externalKeys/);
    const asValue = await check(route('allow if key({facility});'), keys);
    expect(asValue.stderr).toMatch(/\{facility\} is an external key: it may only follow "trusting"/);
    const badKey = await check(route('allow if true;'), '  externalKeys:\n    facility: ed25519/00\n');
    expect(badKey.stderr).toMatch(/authz\.externalKeys\.facility: not a valid ed25519 public key/);
    const delegation = await check(route('delegated_fingerprint("sha256:00"); allow if true;'));
    expect(delegation.stderr).toMatch(/policy must not define delegated_fingerprint/);
    const deadline = await check(route('allow if true;', '    limits:\n      maxTimeMicros: 50000\n      deadlineMs: 20\n'));
    expect(deadline.stderr).toMatch(/routes\[0\]\.limits\.deadlineMs: the hard deadline \(20 ms\) is shorter than maxTimeMicros/);
    for (const r of [undeclared, asValue, badKey, delegation, deadline]) expect(r.code).toBe(1);
  });
});
