// The authorization stage end to end with real biscuit-wasm tokens and real key and revocation files:
// signatures, revocation (at start, on reload, via the file watcher), facts, policies and run limits.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Biscuit, BiscuitBuilder, KeyPair, SignatureAlgorithm } from '@biscuit-auth/biscuit-wasm';
import { createRequestAuthorizer, type ReloadableRequestAuthorizer } from '../src/authz/requestAuthorizer.ts';
import { policyStatements } from '../src/authz/policy/policyStatements.ts';
import type { Decision, RequestFacts, RoutePolicy } from '../src/authz/types.ts';
import type { PeerIdentity } from '../src/tls/peerIdentity.ts';

const root = new KeyPair(SignatureAlgorithm.Ed25519);
const other = new KeyPair(SignatureAlgorithm.Ed25519);
const aliceFingerprint = 'sha256:' + 'ab'.repeat(32);

let dir: string;
let rootKeyFile: string;
const opened: ReloadableRequestAuthorizer[] = [];

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-authz-'));
  rootKeyFile = path.join(dir, 'root.pub');
  fs.writeFileSync(rootKeyFile, root.getPublicKey().toString() + '\n');
});

afterAll(async () => {
  for (const a of opened) await a.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function mintWith(key: KeyPair, code: string): Biscuit {
  const builder = new BiscuitBuilder();
  builder.addCode(code);
  return builder.build(key.getPrivateKey());
}

function mint(code: string): string {
  return mintWith(root, code).toBase64();
}

function attenuate(token: string, code: string): string {
  const block = Biscuit.block_builder();
  block.addCode(code);
  return Biscuit.fromBase64(token, root.getPublicKey()).appendBlock(block).toBase64();
}

function revocationIds(token: string): string[] {
  return Biscuit.fromBase64(token, root.getPublicKey()).getRevocationIdentifiers().map(String);
}

function identity(overrides: Partial<PeerIdentity> = {}): PeerIdentity {
  return {
    cn: 'alice',
    subject: 'CN=alice,O=Site',
    issuer: 'CN=Site CA,O=Site',
    serial: '01ab',
    fingerprint: aliceFingerprint,
    sans: [{ kind: 'email', value: 'alice@example.org' }],
    notAfter: '2030-01-01T00:00:00.000Z',
    ...overrides,
  };
}

function facts(overrides: Partial<RequestFacts> = {}): RequestFacts {
  return {
    time: new Date(),
    route: 'r1',
    protocol: 'http',
    method: 'GET',
    host: 'gw.example.org',
    path: '/~alice/notebook/',
    params: { user: 'alice' },
    sourceIp: '192.0.2.10',
    client: identity(),
    ...overrides,
  };
}

function route(policy: string, limits: Partial<RoutePolicy['limits']> = {}, name = 'r1'): RoutePolicy {
  return { name, policy, limits: { maxFacts: 1000, maxIterations: 100, maxTimeMicros: 100_000, ...limits } };
}

async function authorizer(revocationListFile?: string): Promise<ReloadableRequestAuthorizer> {
  const a = await createRequestAuthorizer({ rootKeyFile, ...(revocationListFile !== undefined && { revocationListFile }) });
  opened.push(a);
  return a;
}

function denied(decision: Decision): Extract<Decision, { allow: false }> {
  if (decision.allow) throw new Error(`expected a denial, got ${JSON.stringify(decision)}`);
  return decision;
}

const alice = mint('user("alice"); group("ops"); group("admins");');
const userRoute = route('allow if user($u), route("r1");');

describe('tokens and signatures', () => {
  it('allows a valid token and reports user, groups, revocation ids and the matched policy', async () => {
    const a = await authorizer();
    const d = await a.authorize(alice, userRoute, facts());
    expect(d).toEqual({ allow: true, user: 'alice', groups: ['admins', 'ops'], revocationIds: revocationIds(alice), matched: 'allow if user($u), route("r1");' });
  });

  it('denies a request without a token with 401', async () => {
    const a = await authorizer();
    expect(await a.authorize(undefined, userRoute, facts())).toEqual({ allow: false, code: 'GH_TOKEN_MISSING', status: 401, clientReason: 'missing bearer token', reason: 'no Authorization: Bearer token' });
  });

  it('denies garbage with 401 and the library error, in words, as the reason', async () => {
    const a = await authorizer();
    const d = denied(await a.authorize('not a biscuit!', userRoute, facts()));
    expect(d.status).toBe(401);
    expect(d.clientReason).toBe('invalid token');
    expect(d.reason).toMatch(/not valid base64url text|do not decode as a Biscuit/);
  });

  it('denies a token signed by another root key with 401', async () => {
    const a = await authorizer();
    const d = denied(await a.authorize(mintWith(other, 'user("alice");').toBase64(), userRoute, facts()));
    expect(d.status).toBe(401);
    expect(d.reason).toContain('signature is invalid');
  });

  it('denies an oversized token before parsing it', async () => {
    const a = await authorizer();
    const d = denied(await a.authorize(alice + 'A'.repeat(17 * 1024), userRoute, facts()));
    expect(d.status).toBe(401);
    expect(d.reason).toMatch(/more than the 16384/);
  });

  it('denies a token that names no user, even when an attenuation block adds one', async () => {
    const a = await authorizer();
    const anonymous = mint('group("ops");');
    const d = denied(await a.authorize(anonymous, route('allow if true;'), facts()));
    expect(d).toMatchObject({ status: 403, clientReason: 'token names no user' });
    const smuggled = attenuate(anonymous, 'user("mallory");');
    expect(denied(await a.authorize(smuggled, route('allow if true;'), facts())).clientReason).toBe('token names no user');
  });

  it('denies a token that names more than one user', async () => {
    const a = await authorizer();
    const d = denied(await a.authorize(mint('user("alice"); user("bob");'), route('allow if true;'), facts()));
    expect(d).toMatchObject({ status: 403, clientReason: 'token names more than one user' });
    expect(d.reason).toContain('"alice", "bob"');
  });

  it('refuses to start without a usable root key', async () => {
    await expect(createRequestAuthorizer({ rootKeyFile: path.join(dir, 'absent.pub') })).rejects.toThrow(/absent\.pub.*ENOENT/);
    const priv = path.join(dir, 'private.key');
    fs.writeFileSync(priv, root.getPrivateKey().toString());
    await expect(createRequestAuthorizer({ rootKeyFile: priv })).rejects.toThrow(/private key/);
    const bare = path.join(dir, 'bare.pub');
    fs.writeFileSync(bare, root.getPublicKey().toString().replace('ed25519/', ''));
    await expect(createRequestAuthorizer({ rootKeyFile: bare })).rejects.toThrow(/expected "ed25519\/<hex>"/);
  });
});

describe('policies and facts', () => {
  it('denies an expired token with 403 and the failing check in the reason', async () => {
    const a = await authorizer();
    const expired = mint('user("alice"); check if time($t), $t < 2020-01-01T00:00:00Z;');
    const d = denied(await a.authorize(expired, userRoute, facts()));
    expect(d).toMatchObject({ status: 403, clientReason: 'token expired', user: 'alice', revocationIds: revocationIds(expired) });
    expect(d.reason).toContain('block 0 check 0: check if time($t), $t < 2020-01-01T00:00:00Z');
  });

  it('enforces a route restriction added by attenuation', async () => {
    const a = await authorizer();
    const onlyR1 = attenuate(alice, 'check if route("r1");');
    expect((await a.authorize(onlyR1, userRoute, facts())).allow).toBe(true);
    const r2 = route('allow if user($u);', {}, 'r2');
    const d = denied(await a.authorize(onlyR1, r2, facts({ route: 'r2' })));
    expect(d).toMatchObject({ status: 403, clientReason: 'denied by policy', user: 'alice' });
    expect(d.reason).toContain('block 1 check 0: check if route("r1")');
  });

  it('allows alice on her own path by param and denies bob', async () => {
    const a = await authorizer();
    const own = route('allow if user($u), param("user", $u);');
    expect(await a.authorize(alice, own, facts())).toMatchObject({ allow: true, user: 'alice' });
    const bob = mint('user("bob");');
    const d = denied(await a.authorize(bob, own, facts()));
    expect(d).toMatchObject({ status: 403, clientReason: 'denied by policy', user: 'bob' });
    expect(d.reason).toContain('no allow policy matched');
  });

  it('binds a token to a client certificate fingerprint', async () => {
    const a = await authorizer();
    const bound = mint(`user("alice"); check if client_fingerprint("${aliceFingerprint}");`);
    expect((await a.authorize(bound, userRoute, facts())).allow).toBe(true);
    const stolen = facts({ client: identity({ cn: 'mallory', fingerprint: 'sha256:' + 'cd'.repeat(32) }) });
    const d = denied(await a.authorize(bound, userRoute, stolen));
    expect(d.reason).toContain(`check if client_fingerprint("${aliceFingerprint}")`);
  });

  it('supplies every documented fact', async () => {
    const a = await authorizer();
    const all = route(`allow if time($t), $t > 2020-01-01T00:00:00Z, route("r1"), protocol("http"), method("GET"),
      host("gw.example.org"), path("/~alice/notebook/"), param("user", "alice"), param("service", "notebook"),
      source_ip("192.0.2.10"), client_cn("alice"), client_subject("CN=alice,O=Site"),
      client_san("email", "alice@example.org"), client_san("dns", "alice.example.org"), client_serial("01ab"),
      client_fingerprint("${aliceFingerprint}"), client_issuer("CN=Site CA,O=Site");`);
    const request = facts({
      params: { user: 'alice', service: 'notebook' },
      client: identity({ sans: [{ kind: 'email', value: 'alice@example.org' }, { kind: 'dns', value: 'alice.example.org' }] }),
    });
    expect((await a.authorize(alice, all, request)).allow).toBe(true);
    expect((await a.authorize(alice, all, facts({ method: 'POST' }))).allow).toBe(false);
  });

  it('keeps an injection attempt in request values a plain string', async () => {
    const a = await authorizer();
    const evil = '/a");allow if true;//';
    const onlyOk = route('allow if user($u), path("/ok");');
    const d = denied(await a.authorize(alice, onlyOk, facts({ path: evil, host: 'x"); allow if true; //', params: { user: 'a"); allow if true; //' } })));
    expect(d.clientReason).toBe('denied by policy');
    const exact = route(`allow if path($p), $p == ${JSON.stringify(evil)};`);
    expect((await a.authorize(alice, exact, facts({ path: evil }))).allow).toBe(true);
    const cn = denied(await a.authorize(alice, route('allow if client_cn("admin");'), facts({ client: identity({ cn: 'x"); client_cn("admin' }) })));
    expect(cn.status).toBe(403);
  });

  it('reports the allow policy that matched, in source order, past comments and strings', async () => {
    const a = await authorizer();
    const policy = `// a comment; with a semicolon and allow if true;
      deny if client_cn("mallory");
      /* block; comment */ allow if group("nobody"), path("x;y");
      allow if user($u),
               param("user", $u);`;
    expect(policyStatements(policy)).toHaveLength(3);
    const d = await a.authorize(alice, route(policy), facts());
    expect(d).toMatchObject({ allow: true, matched: 'allow if user($u), param("user", $u);' });
    const mallory = denied(await a.authorize(alice, route(policy), facts({ client: identity({ cn: 'mallory' }) })));
    expect(mallory.reason).toContain('deny policy matched: deny if client_cn("mallory");');
    expect(mallory.clientReason).toBe('denied by policy');
  });

  it('is deny-by-default when no allow policy exists', async () => {
    const a = await authorizer();
    const d = denied(await a.authorize(alice, route('check if user("alice");'), facts()));
    expect(d).toMatchObject({ status: 403, clientReason: 'denied by policy' });
  });

  it('stops a policy that generates too many facts', async () => {
    const a = await authorizer();
    // 11^3 = 1331 derived facts: over the 1000 that biscuit-wasm 0.6.0 enforces whatever maxFacts says.
    const numbers = Array.from({ length: 11 }, (_, i) => `n(${i});`).join(' ');
    const explode = route(`${numbers} triple($x, $y, $z) <- n($x), n($y), n($z); allow if user($u);`, { maxFacts: 100 });
    const d = denied(await a.authorize(alice, explode, facts()));
    expect(d).toMatchObject({ status: 403, clientReason: 'run limit exceeded', user: 'alice' });
    expect(d.reason).toContain('TooManyFacts');
  });

  it('stops an evaluation that runs past its time limit', async () => {
    const a = await authorizer();
    const d = denied(await a.authorize(alice, route('allow if user($u);', { maxTimeMicros: 1 }), facts()));
    expect(d).toMatchObject({ status: 403, clientReason: 'run limit exceeded' });
    expect(d.reason).toContain('Timeout');
  });

  it('denies a token whose Datalog fails to evaluate', async () => {
    const a = await authorizer();
    const overflow = mint('user("alice"); check if 9223372036854775807 + 1 > 0;');
    const d = denied(await a.authorize(overflow, userRoute, facts()));
    expect(d).toMatchObject({ status: 403, clientReason: 'policy evaluation failed', user: 'alice' });
    expect(d.reason).toContain('Overflow');
  });

  it('answers 503 instead of throwing when the route policy or the request is unusable', async () => {
    const a = await authorizer();
    const broken = denied(await a.authorize(alice, route('allow if user($u'), facts()));
    expect(broken).toMatchObject({ status: 503, clientReason: 'authorization unavailable' });
    expect(broken.reason).toContain('policy does not compile');
    const badTime = denied(await a.authorize(alice, userRoute, facts({ time: new Date(Number.NaN) })));
    expect(badTime.status).toBe(503);
  });
});

describe('revocation', () => {
  function listFile(name: string, ids: string[]): string {
    const file = path.join(dir, name);
    fs.writeFileSync(file, ['# revoked tokens', ...ids, ''].join('\n'));
    return file;
  }

  it('denies a token whose authority block id is revoked', async () => {
    const [id] = revocationIds(alice);
    const a = await authorizer(listFile('authority.revoked', [id!.toUpperCase()]));
    const d = denied(await a.authorize(alice, userRoute, facts()));
    expect(d).toMatchObject({ status: 403, clientReason: 'token revoked', user: 'alice' });
    expect(d.reason).toBe(`revocation id ${id} (block 0) is revoked`);
    expect((await a.authorize(mint('user("alice");'), userRoute, facts())).allow).toBe(true);
  });

  it('denies a token whose attenuation block id is revoked, and only that delegation', async () => {
    const delegated = attenuate(alice, 'check if route("r1");');
    const id = revocationIds(delegated)[1]!;
    const a = await authorizer(listFile('block.revoked', [id]));
    const d = denied(await a.authorize(delegated, userRoute, facts()));
    expect(d.reason).toContain('(block 1)');
    expect(d.revocationIds).toEqual(revocationIds(delegated));
    expect((await a.authorize(alice, userRoute, facts())).allow).toBe(true);
  });

  it('applies an edited list after reloadRevocations()', async () => {
    const file = listFile('reload.revoked', []);
    const a = await authorizer(file);
    expect((await a.authorize(alice, userRoute, facts())).allow).toBe(true);
    fs.appendFileSync(file, revocationIds(alice)[0] + '\n');
    expect(await a.reloadRevocations()).toEqual({ ok: true, count: 1 });
    expect(denied(await a.authorize(alice, userRoute, facts())).clientReason).toBe('token revoked');
  });

  it('follows the list file when an editor replaces it', async () => {
    const file = listFile('watched.revoked', []);
    const a = await authorizer(file);
    expect((await a.authorize(alice, userRoute, facts())).allow).toBe(true);
    const temp = path.join(dir, '.watched.revoked.swp');
    fs.writeFileSync(temp, revocationIds(alice)[0] + '\n');
    fs.renameSync(temp, file);
    let decision = await a.authorize(alice, userRoute, facts());
    for (let i = 0; i < 50 && decision.allow; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      decision = await a.authorize(alice, userRoute, facts());
    }
    expect(denied(decision).clientReason).toBe('token revoked');
  });

  it('fails closed for every request when the list is missing, unreadable or malformed', async () => {
    const missing = await authorizer(path.join(dir, 'no-such.revoked'));
    for (const token of [alice, undefined]) {
      const d = denied(await missing.authorize(token, userRoute, facts()));
      expect(d).toMatchObject({ status: 503, clientReason: 'authorization unavailable' });
      expect(d.reason).toContain('no-such.revoked does not exist');
    }

    const directory = path.join(dir, 'a-directory.revoked');
    fs.mkdirSync(directory);
    expect(denied(await (await authorizer(directory)).authorize(alice, userRoute, facts())).status).toBe(503);

    const file = listFile('malformed.revoked', ['not-hex']);
    const a = await authorizer(file);
    const d = denied(await a.authorize(alice, userRoute, facts()));
    expect(d.status).toBe(503);
    expect(d.reason).toContain('malformed.revoked:2');

    // Fixed, then broken again on a later reload: the last reload decides.
    fs.writeFileSync(file, '# nothing revoked\n');
    expect(await a.reloadRevocations()).toEqual({ ok: true, count: 0 });
    expect((await a.authorize(alice, userRoute, facts())).allow).toBe(true);
    fs.writeFileSync(file, 'zz\n');
    const again = await a.reloadRevocations();
    expect(again.ok).toBe(false);
    expect(denied(await a.authorize(alice, userRoute, facts())).status).toBe(503);
  });
});
