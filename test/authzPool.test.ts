// The production authorizer: engine workers with a hard deadline and memory-bounded replacement,
// token and decision caches, third-party keys, and what biscuit-wasm really enforces of the run limits.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Biscuit, BiscuitBuilder, KeyPair, SignatureAlgorithm } from '@biscuit-auth/biscuit-wasm';
import { createRequestAuthorizer, type ReloadableRequestAuthorizer, type RequestAuthorizerOptions } from '../src/authz/requestAuthorizer.ts';
import type { DecisionPath } from '../src/authz/authzObserver.ts';
import type { ReplaceReason } from '../src/authz/engine/enginePool.ts';
import type { Decision, RequestFacts, RoutePolicy } from '../src/authz/types.ts';

const root = new KeyPair(SignatureAlgorithm.Ed25519);
let dir: string;
let rootKeyFile: string;
const opened: ReloadableRequestAuthorizer[] = [];

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-pool-'));
  rootKeyFile = path.join(dir, 'root.pub');
  fs.writeFileSync(rootKeyFile, root.getPublicKey().toString() + '\n');
});

afterAll(async () => {
  for (const a of opened) await a.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function mint(code: string): string {
  const builder = new BiscuitBuilder();
  builder.addCode(code);
  return builder.build(root.getPrivateKey()).toBase64();
}

function attenuate(token: string, code: string): string {
  const block = Biscuit.block_builder();
  block.addCode(code);
  return Biscuit.fromBase64(token, root.getPublicKey()).appendBlock(block).toBase64();
}

function facts(overrides: Partial<RequestFacts> = {}): RequestFacts {
  return {
    time: new Date(),
    route: 'r1',
    protocol: 'http',
    method: 'GET',
    path: '/x',
    params: {},
    sourceIp: '192.0.2.10',
    client: { cn: 'alice', subject: 'CN=alice', issuer: 'CN=CA', serial: '01', fingerprint: 'sha256:' + 'ab'.repeat(32), sans: [], notAfter: '2030-01-01T00:00:00.000Z' },
    ...overrides,
  };
}

const route = (policy = 'allow if user($u);', limits: Partial<RoutePolicy['limits']> = {}): RoutePolicy => ({
  name: 'r1',
  policy,
  limits: { maxFacts: 1000, maxIterations: 100, maxTimeMicros: 10_000, ...limits },
});

interface Recorder {
  paths: DecisionPath[];
  replaced: ReplaceReason[];
}

async function authorizer(options: Partial<RequestAuthorizerOptions> = {}): Promise<ReloadableRequestAuthorizer & Recorder> {
  const paths: DecisionPath[] = [];
  const replaced: ReplaceReason[] = [];
  const a = await createRequestAuthorizer({
    rootKeyFile,
    observer: { decided: (_d, p) => paths.push(p), workerReplaced: (r) => replaced.push(r) },
    ...options,
  });
  opened.push(a);
  return Object.assign(a, { paths, replaced });
}

const alice = mint('user("alice");');
/** A six-way join over 20 facts in an attenuation block: biscuit-wasm would grind on it for minutes. */
const nums = Array.from({ length: 20 }, (_, i) => `n(${i});`).join(' ');
const heavy = attenuate(alice, `${nums} q($a,$b,$c,$d,$e,$f) <- n($a), n($b), n($c), n($d), n($e), n($f), $a + $b + $c + $d + $e + $f == 1000;`);

function denied(decision: Decision): Extract<Decision, { allow: false }> {
  if (decision.allow) throw new Error(`expected a denial, got ${JSON.stringify(decision)}`);
  return decision;
}

describe('hard deadline', () => {
  it('stops a token whose block runs past the deadline, replaces the worker and keeps serving everyone else', async () => {
    const a = await authorizer({ cache: { decisions: 0 } });
    const started = performance.now();
    const [slow, ...others] = await Promise.all([
      a.authorize(heavy, route(), facts()),
      ...Array.from({ length: 20 }, (_, i) => a.authorize(mint(`user("u${i}");`), route(), facts({ path: `/${i}` }))),
    ]);
    // Left alone, this call would run for minutes.
    expect(performance.now() - started).toBeLessThan(20_000);
    const d = denied(slow!);
    expect(d).toMatchObject({ status: 403, clientReason: 'run limit exceeded', revocationIds: expect.any(Array) });
    expect(d.reason).toMatch(/no decision within the hard deadline of 100 ms/);
    expect(others.every((o) => o.allow)).toBe(true);
    expect(a.replaced).toContain('deadline');
    for (let i = 0; i < 100 && a.stats().workers.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(a.stats().workers).toHaveLength(2);

    // The token family (same authority block) is now refused without running again.
    const again = denied(await a.authorize(alice, route(), facts({ path: '/again' })));
    expect(again.reason).toMatch(/ran past the hard deadline less than 10 s ago/);
    expect(a.replaced.filter((r) => r === 'deadline')).toHaveLength(1);
  });

  it('uses the route deadline when it sets one', async () => {
    const a = await authorizer();
    const d = denied(await a.authorize(heavy, route('allow if user($u);', { deadlineMs: 250 }), facts()));
    expect(d.reason).toMatch(/hard deadline of 250 ms/);
  });
});

describe('bounded memory', () => {
  it('replaces workers past the memory threshold without failing a call in flight', async () => {
    const a = await authorizer({ workers: { recycleAfterMB: 8 }, cache: { tokens: 0, decisions: 0 } });
    const tokens = Array.from({ length: 8 }, (_, i) => mint(`user("user${i}"); group("g${i}"); check if time($t), $t <= 2100-01-01T00:00:00Z;`));
    let failed = 0;
    let done = 0;
    const worker = async (w: number) => {
      for (let i = w; i < 4000; i += 16) {
        const d = await a.authorize(tokens[i % tokens.length], route('allow if user($u), group($g);'), facts({ path: `/${i}` }));
        if (d.allow) done++;
        else failed++;
      }
    };
    await Promise.all(Array.from({ length: 16 }, (_, w) => worker(w)));
    expect({ failed, done }).toEqual({ failed: 0, done: 4000 });
    expect(a.replaced.filter((r) => r === 'memory').length).toBeGreaterThanOrEqual(1);
    for (const w of a.stats().workers) expect(w.wasmBytes).toBeLessThan(12 * 1024 * 1024);
  });

  it('replaces a worker that grew under a burst once the pool has been idle, so a quiet gateway settles back', async () => {
    const a = await authorizer({ workers: { count: 1, recycleAfterMB: 24 }, cache: { tokens: 0, decisions: 0 } });
    const fresh = a.stats().workers[0]?.wasmBytes ?? 0;
    const tokens = Array.from({ length: 8 }, (_, i) => mint(`user("user${i}"); group("g${i}"); check if time($t), $t <= 2100-01-01T00:00:00Z;`));
    // A burst that grows the worker by more than a quarter of the threshold, but not past it.
    for (let i = 0; i < 3000 && (a.stats().workers[0]?.wasmBytes ?? 0) - fresh < 8 << 20; i++) {
      expect((await a.authorize(tokens[i % tokens.length], route('allow if user($u), group($g);'), facts({ path: `/${i}` }))).allow).toBe(true);
    }
    expect((a.stats().workers[0]?.wasmBytes ?? 0) - fresh).toBeGreaterThanOrEqual(8 << 20);
    expect(a.replaced).toEqual([]);
    const until = Date.now() + 15_000;
    while (!a.replaced.includes('idle') && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
    expect(a.replaced).toEqual(['idle']);
    expect(a.stats().workers[0]?.wasmBytes).toBeLessThan(fresh + (4 << 20));
    expect((await a.authorize(alice, route(), facts({ path: '/after' }))).allow).toBe(true);
  }, 60_000);

  it('also replaces workers after a number of authorizations when configured', async () => {
    const a = await authorizer({ workers: { count: 1, recycleAfterAuthorizations: 50 }, cache: { decisions: 0 } });
    // The old worker keeps serving while its successor warms up, so count calls until three replacements.
    let calls = 0;
    while (a.replaced.length < 3 && calls < 20_000) {
      expect((await a.authorize(alice, route(), facts({ path: `/${calls}` }))).allow).toBe(true);
      calls++;
    }
    expect(a.replaced).toEqual(['count', 'count', 'count']);
  });

  it('drains the calls it was given when closed, then refuses new ones', async () => {
    const a = await authorizer({ cache: { decisions: 0 } });
    const calls = Array.from({ length: 40 }, (_, i) => a.authorize(alice, route(), facts({ path: `/${i}` })));
    await a.close();
    expect((await Promise.all(calls)).every((d) => d.allow)).toBe(true);
    expect(denied(await a.authorize(alice, route(), facts())).status).toBe(503);
  });
});

describe('caches', () => {
  it('answers from the token cache, then the decision cache, and refuses a revoked token at once', async () => {
    const list = path.join(dir, 'cache.revoked');
    fs.writeFileSync(list, '');
    const a = await authorizer({ revocationListFile: list });
    const token = mint('user("carol");');
    expect((await a.authorize(token, route(), facts({ path: '/a' }))).allow).toBe(true);
    expect((await a.authorize(token, route(), facts({ path: '/b' }))).allow).toBe(true);
    expect((await a.authorize(token, route(), facts({ path: '/b' }))).allow).toBe(true);
    expect(a.paths).toEqual(['cold', 'token-cached', 'decision-cached']);

    fs.writeFileSync(list, Biscuit.fromBase64(token, root.getPublicKey()).getRevocationIdentifiers()[0] + '\n');
    expect(await a.reloadRevocations()).toEqual({ ok: true, count: 1 });
    const d = denied(await a.authorize(token, route(), facts({ path: '/b' })));
    expect(d).toMatchObject({ status: 403, clientReason: 'token revoked', user: 'carol' });
  });

  it('keys decisions on every fact but the time', async () => {
    const a = await authorizer();
    const onlyGet = route('allow if user($u), method("GET");');
    expect((await a.authorize(alice, onlyGet, facts())).allow).toBe(true);
    expect((await a.authorize(alice, onlyGet, facts({ method: 'POST' }))).allow).toBe(false);
    const other = { ...facts().client, fingerprint: 'sha256:' + 'cd'.repeat(32) };
    const bound = mint(`user("alice"); check if client_fingerprint("sha256:${'ab'.repeat(32)}");`);
    expect((await a.authorize(bound, route(), facts())).allow).toBe(true);
    expect((await a.authorize(bound, route(), facts({ client: other }))).allow).toBe(false);
    expect((await a.authorize(alice, route('allow if user("nobody");'), facts())).allow).toBe(false);
  });

  it('never keeps a decision past the expiry the token states', async () => {
    const a = await authorizer({ cache: { decisionTtlMs: 60_000 } });
    const expiry = new Date(Math.ceil((Date.now() + 1500) / 1000) * 1000);
    const token = mint(`user("dave"); check if time($t), $t <= ${expiry.toISOString().replace(/\.\d+Z$/, 'Z')};`);
    expect((await a.authorize(token, route(), facts())).allow).toBe(true);
    expect((await a.authorize(token, route(), facts())).allow).toBe(true);
    expect(a.paths).toEqual(['cold', 'decision-cached']);
    await new Promise((resolve) => setTimeout(resolve, expiry.getTime() - Date.now() + 1100));
    expect(denied(await a.authorize(token, route(), facts())).clientReason).toBe('token expired');
  });

  it('has no decision cache with a TTL of 0 and refuses a known-bad token without a worker', async () => {
    const a = await authorizer({ cache: { decisionTtlMs: 0 } });
    for (let i = 0; i < 3; i++) expect((await a.authorize(alice, route(), facts())).allow).toBe(true);
    expect(a.paths).toEqual(['cold', 'token-cached', 'token-cached']);
    const forged = mint('user("eve");').slice(0, -8) + 'AAAAAAAA';
    const before = a.stats().workers.reduce((n, w) => n + w.authorizations, 0);
    expect(denied(await a.authorize(forged, route(), facts())).status).toBe(401);
    expect(denied(await a.authorize(forged, route(), facts())).status).toBe(401);
    expect(a.stats().workers.reduce((n, w) => n + w.authorizations, 0)).toBe(before + 1);
  });
});

describe('third-party blocks', () => {
  const facility = new KeyPair(SignatureAlgorithm.Ed25519);
  const stranger = new KeyPair(SignatureAlgorithm.Ed25519);

  function attest(token: string, signer: KeyPair, code: string): string {
    const parsed = Biscuit.fromBase64(token, root.getPublicKey());
    const block = Biscuit.block_builder();
    block.addCode(code);
    const signed = parsed.getThirdPartyRequest().createBlock(signer.getPrivateKey(), block);
    return parsed.appendThirdPartyBlock(signer.getPublicKey(), signed).toBase64();
  }

  it('honours a block signed by a configured external key and ignores one signed by an unknown key', async () => {
    const a = await authorizer({ externalKeys: { facility: facility.getPublicKey().toString() } });
    const policy = route('allow if user($u), member($u, "beamline") trusting authority, {facility};');
    const trusted = attest(alice, facility, 'member("alice", "beamline");');
    const unknown = attest(alice, stranger, 'member("alice", "beamline");');
    const firstParty = attenuate(alice, 'member("alice", "beamline");');
    expect(await a.authorize(trusted, policy, facts())).toMatchObject({ allow: true, user: 'alice' });
    expect(denied(await a.authorize(unknown, policy, facts())).clientReason).toBe('denied by policy');
    expect(denied(await a.authorize(firstParty, policy, facts())).clientReason).toBe('denied by policy');
  });

  it('refuses to start with an unusable external key', async () => {
    await expect(createRequestAuthorizer({ rootKeyFile, externalKeys: { facility: 'ed25519/zz' } })).rejects.toThrow(/external key facility/);
  });
});

describe('what biscuit-wasm 0.6.0 enforces of the run limits (documented in docs/admin/authorization.md)', () => {
  it('ignores maxFacts and maxIterations below its own caps', async () => {
    const a = await authorizer();
    const many = Array.from({ length: 50 }, (_, i) => `f(${i});`).join(' ');
    const chain = 'p0(1); p1($x) <- p0($x); p2($x) <- p1($x); p3($x) <- p2($x); p4($x) <- p3($x);';
    const d = await a.authorize(alice, route(`${many} ${chain} allow if user($u), p4(1);`, { maxFacts: 10, maxIterations: 2 }), facts());
    expect(d.allow).toBe(true);
  });

  it('enforces its own cap of 1000 derived facts whatever maxFacts says', async () => {
    const a = await authorizer();
    const numbers = Array.from({ length: 11 }, (_, i) => `n(${i});`).join(' ');
    const d = denied(await a.authorize(alice, route(`${numbers} t($x, $y, $z) <- n($x), n($y), n($z); allow if user($u);`, { maxFacts: 100_000 }), facts()));
    expect(d.clientReason).toBe('run limit exceeded');
    expect(d.reason).toContain('TooManyFacts');
  });
});

describe('workers', () => {
  it('load biscuit-wasm quietly: nothing on stdout, no ExperimentalWarning', async () => {
    const script = path.join(dir, 'quiet.mjs');
    const repo = path.resolve(import.meta.dirname, '..');
    const moduleUrl = pathToFileURL(path.join(repo, 'src', 'authz', 'requestAuthorizer.ts')).href;
    const biscuitUrl = pathToFileURL(path.join(repo, 'node_modules', '@biscuit-auth', 'biscuit-wasm', 'module', 'biscuit.js')).href;
    fs.writeFileSync(
      script,
      `const log = console.log; console.log = () => {};
       const emit = process.emitWarning; process.emitWarning = (w, ...r) => String(w).includes('WebAssembly module') ? undefined : emit.call(process, w, ...r);
       await import(${JSON.stringify(biscuitUrl)}); console.log = log;
       const { createRequestAuthorizer } = await import(${JSON.stringify(moduleUrl)});
       const a = await createRequestAuthorizer({ rootKeyFile: ${JSON.stringify(rootKeyFile)} });
       await a.close();
       process.stderr.write('closed\\n');`,
    );
    const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) =>
      execFile(process.execPath, [script], { cwd: repo }, (error, out, err) =>
        error ? reject(new Error(`${error.message}\n${err}`)) : resolve({ stdout: out, stderr: err }),
      ),
    );
    expect(stdout).toBe('');
    expect(stderr).toBe('closed\n');
  });
});

describe('fair share between client certificates', () => {
  const client = (name: string) => ({ ...facts().client, cn: name, subject: `CN=${name}`, fingerprint: `sha256:${name.padEnd(64, '0')}` });
  /** Nine facts and a 4-way join that never holds, in an appended block: tens of ms per decision, well under a 5 s deadline. */
  const costly = attenuate(mint('user("mallory");'), `${Array.from({ length: 9 }, (_, i) => `f(${i});`).join(' ')} check if f($a), f($b), f($c), f($d), $a + $b + $c + $d == 1000;`);
  const slowRoute = route('allow if user($u);', { deadlineMs: 5000 });

  it("queues each certificate's calls apart: one certificate's expensive calls do not wait in front of another's", async () => {
    const charged = new Map<string, number>();
    const a = await authorizer({ cache: { decisions: 0 }, engineBudget: { charge: (fp, ms) => charged.set(fp, (charged.get(fp) ?? 0) + ms), refusal: () => undefined } });
    const order: string[] = [];
    const flood = Array.from({ length: 30 }, (_, i) => a.authorize(costly, slowRoute, facts({ path: `/m${i}`, client: client('mallory') })).then((d) => (order.push('mallory'), d)));
    const bystander = a.authorize(alice, slowRoute, facts({ path: '/b', client: client('alice') })).then((d) => (order.push('alice'), d));
    expect((await bystander).allow).toBe(true);
    await Promise.all(flood);
    // Only the calls already running when it came (one per worker: their cost was not known yet) go first.
    expect(order.indexOf('alice')).toBeLessThanOrEqual(4);
    // The engine time is charged to the certificate that spent it.
    expect(charged.get(client('mallory').fingerprint) ?? 0).toBeGreaterThan(30 * 2);
    expect(charged.get(client('alice').fingerprint) ?? 0).toBeLessThan(charged.get(client('mallory').fingerprint) ?? 0);
  }, 60_000);

  it("bounds each certificate's queue: past it, 429 (answered after a hold), while another certificate is still served", async () => {
    const a = await authorizer({ cache: { decisions: 0 }, workers: { queuePerIdentity: 8 } });
    const flood = await Promise.all([
      ...Array.from({ length: 40 }, (_, i) => a.authorize(costly, slowRoute, facts({ path: `/q${i}`, client: client('mallory') }))),
      a.authorize(alice, slowRoute, facts({ path: '/b', client: client('alice') })),
    ]);
    const busy = flood.filter((d) => !d.allow && d.status === 429);
    expect(busy.length).toBeGreaterThan(0);
    expect(denied(busy[0]!).reason).toMatch(/already waiting \(authz\.workers\.queuePerIdentity\)/);
    expect(flood.at(-1)?.allow).toBe(true);
  }, 60_000);

  it('refuses (429) a certificate whose engine budget is spent, before queueing; a cached decision stays free', async () => {
    const spent = client('mallory').fingerprint;
    const a = await authorizer({ engineBudget: { charge: () => {}, refusal: (fp) => (fp === spent ? 'engine time over budget' : undefined) } });
    const refused = denied(await a.authorize(alice, slowRoute, facts({ path: '/spent', client: client('mallory') })));
    expect(refused).toMatchObject({ status: 429, reason: 'route r1: engine time over budget' });
    expect((await a.authorize(alice, slowRoute, facts({ path: '/free', client: client('alice') }))).allow).toBe(true);
  });

  it('verifies and mints session tokens in the workers', async () => {
    const a = await authorizer();
    const token = mint(`user("alice"); check if time($t), $t <= ${new Date(Date.now() + 3600_000).toISOString()};`);
    const check = await a.sessions.verify(token, client('alice'), '192.0.2.10');
    expect(check).toMatchObject({ ok: true, token: { user: 'alice' } });
    const minted = await a.sessions.mint(token, client('alice').fingerprint, new Date(Date.now() + 60_000));
    if (!minted.ok) throw new Error(minted.reason);
    // The session token is bound to the certificate: another one is refused.
    expect(await a.sessions.verify(minted.token, client('alice'), '192.0.2.10')).toMatchObject({ ok: true });
    expect(await a.sessions.verify(minted.token, client('bob'), '192.0.2.10')).toMatchObject({ ok: false, status: 403 });
    expect(await a.sessions.verify('not a token', client('alice'), '192.0.2.10')).toMatchObject({ ok: false, status: 401 });
  });
});
