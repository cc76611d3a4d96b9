// Hostile bearer tokens against a real `gatehouse serve`: the Biscuit specification samples that must
// not authorize, damaged, oversize and misplaced tokens, revoked and expired ones, Datalog that explodes.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inOneHour, mintRaw, startHarness, type Harness } from '../support/gatewayHarness.ts';
import type { TestClientCertificate } from '../support/pki.ts';
import { auditMark, recordAfter } from './support/caseChecks.ts';
import type { AuditEntry } from './support/hostileGateway.ts';
import { rawExchange, type RawClientTarget } from './support/rawClient.ts';
import { startUpstreamRecorder, type UpstreamRecorder } from './support/upstreamRecorder.ts';

const samplesDir = resolve(import.meta.dirname, '..', 'fixtures', 'biscuit-samples');
interface Sample {
  filename: string;
  validations: Record<string, { authorizer_code: string; result: { Ok: number } | { Err: Record<string, unknown> } }>;
}
const samples = JSON.parse(readFileSync(join(samplesDir, 'samples.json'), 'utf8')) as { root_private_key: string; root_public_key: string; testcases: Sample[] };

interface SampleCase {
  route: string;
  title: string;
  file: string;
  policy: string;
  /** Format errors (signature, encoding) are token errors (401); the rest are authorization failures (403). */
  status: 401 | 403;
}

const sampleCases: SampleCase[] = samples.testcases.flatMap((t) =>
  Object.entries(t.validations)
    .filter(([, v]) => 'Err' in v.result)
    .map(([name, v], i) => {
      const err = (v.result as { Err: Record<string, unknown> }).Err;
      return {
        route: `s${t.filename.slice(4, 7)}${i}`,
        title: `${t.filename}${name ? ` (${name})` : ''}: ${Object.keys(err)[0]}`,
        file: t.filename,
        // An empty authorizer would be refused by the config check; the token alone must fail.
        policy: v.authorizer_code.trim() === '' ? 'allow if true;' : v.authorizer_code,
        status: 'Format' in err ? 401 : 403,
      } satisfies SampleCase;
    }),
);

const MAX_TOKEN_BYTES = 8192;
const routes =
  [
    ['web', 'allow if user($u);'],
    ['other', 'allow if user($u);'],
    ['bound', 'allow if user($u);'],
    ...sampleCases.map((c) => [c.route, c.policy]),
  ]
    .map(([name, policy]) => `  - name: ${name}\n    path: /${name}/\n    upstream: unix:run/recorder.sock\n    policy: |\n${(policy as string).split('\n').map((l) => `      ${l}`).join('\n')}\n`)
    .join('');

let h: Harness;
let recorder: UpstreamRecorder;
let alice: TestClientCertificate;
let bob: TestClientCertificate;
/** Tokens signed with the samples' root key, which the gateway trusts (see beforeAll). */
const mint = (code: string) => mintRaw(`ed25519-private/${samples.root_private_key}`, code);
const rootKey = () => biscuit.PublicKey.fromString(samples.root_public_key, biscuit.SignatureAlgorithm.Ed25519);
const aliceToken = () => mint(`user("alice"); check if time($t), $t <= ${inOneHour()};`);
let good: string;
/** Tokens whose revocation ids the gateway was told about before the first request. */
let revokedAuthority: string;
let revokedAttenuation: string;

function attenuate(token: string, code: string): string {
  const block = biscuit.Biscuit.block_builder();
  block.addCode(code);
  return biscuit.Biscuit.fromBase64(token, rootKey()).appendBlock(block).toBase64();
}

const target = (c: TestClientCertificate): RawClientTarget => ({ port: h.port, ca: h.pki.caCert, cert: c.cert, key: c.key });
const request = (path: string, authLines: string, opts: { as?: TestClientCertificate; method?: string } = {}) =>
  rawExchange(target(opts.as ?? alice), `${opts.method ?? 'GET'} ${path} HTTP/1.1\r\nHost: localhost\r\n${authLines}Connection: close\r\n\r\n`, { expectResponses: 1, timeoutMs: 10_000 });
const bearer = (token: string) => `Authorization: Bearer ${token}\r\n`;

async function expectStillServes(): Promise<void> {
  const res = await request('/web/still-serving', bearer(good));
  expect(res.finals[0]?.status, 'the gateway no longer serves a good request').toBe(200);
}

/** The request audit record written after `mark` for `path` (every case uses a path of its own). */
async function recordOf(path: string, mark: number) {
  return recordAfter({ h }, mark, (r) => r.event === 'request' && (r.path === path || r.target === path));
}

interface TokenCase {
  name: string;
  /** Path and Authorization lines (with CRLF) to send. */
  send: () => { path: string; auth: string; as?: TestClientCertificate; method?: string };
  status: number;
  /** What the client's `{"error": ...}` says. */
  error?: string;
  /** What the audit record's reason must say. */
  reason: RegExp;
  /** Must be denied within this many ms (run-limit blowers). */
  withinMs?: number;
  /** Refusals by the HTTP parser carry no path: find their record by this instead. */
  record?: (r: AuditEntry) => boolean;
}

function flipBit(token: string, at: number): string {
  const bytes = Buffer.from(token, 'base64url');
  const i = Math.min(bytes.length - 1, Math.max(0, Math.floor(at * bytes.length)));
  bytes[i] = (bytes[i] as number) ^ 0x10;
  return bytes.toString('base64url');
}

const tokenCases: TokenCase[] = [
  ...[0, 0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999].map((at) => ({
    name: `valid token with one bit flipped at ${Math.round(at * 100)}% of its bytes -> 401`,
    send: () => ({ path: '/web/flip', auth: bearer(flipBit(good, at)) }),
    status: 401,
    error: 'invalid token',
    reason: /signature|deserializ|format|decode|invalid|protobuf|error/i,
  })),
  ...[1, 10, 0.5, -1].map((len) => ({
    name: `valid token truncated to ${len === 0.5 ? 'half its length' : len === -1 ? 'all but its last character' : `${len} character(s)`} -> 401`,
    send: () => ({ path: '/web/truncated', auth: bearer(good.slice(0, len === 0.5 ? good.length >> 1 : len === -1 ? good.length - 1 : len)) }),
    status: 401,
    error: 'invalid token',
    reason: /deserializ|format|decode|invalid|base64|error/i,
  })),
  { name: 'base64 of random bytes -> 401', send: () => ({ path: '/web/random', auth: bearer(randomBytes(300).toString('base64url')) }), status: 401, error: 'invalid token', reason: /deserializ|format|decode|invalid|error/i },
  { name: 'characters outside base64 ("!!!!") -> 401 missing token', send: () => ({ path: '/web/bang', auth: 'Authorization: Bearer !!!!\r\n' }), status: 401, error: 'missing bearer token', reason: /no Authorization|bearer/i },
  { name: 'empty token ("Bearer ") -> 401', send: () => ({ path: '/web/empty', auth: 'Authorization: Bearer \r\n' }), status: 401, error: 'missing bearer token', reason: /no Authorization|bearer/i },
  { name: '"Bearer" with no token -> 401', send: () => ({ path: '/web/bare', auth: 'Authorization: Bearer\r\n' }), status: 401, error: 'missing bearer token', reason: /no Authorization|bearer/i },
  { name: 'no Authorization header -> 401', send: () => ({ path: '/web/none', auth: '' }), status: 401, error: 'missing bearer token', reason: /no Authorization|bearer/i },
  { name: 'Basic scheme carrying the token -> 401', send: () => ({ path: '/web/basic', auth: `Authorization: Basic ${good}\r\n` }), status: 401, error: 'missing bearer token', reason: /no Authorization|bearer/i },
  { name: 'token in Proxy-Authorization on a plain request -> 401 (only CONNECT reads it)', send: () => ({ path: '/web/proxy-auth', auth: `Proxy-Authorization: Bearer ${good}\r\n` }), status: 401, error: 'missing bearer token', reason: /no Authorization|bearer/i },
  { name: 'two Authorization headers (garbage first, valid second) -> 400 or 401, never the second', send: () => ({ path: '/web/two-headers', auth: `Authorization: Bearer AAAA\r\n${bearer(good)}` }), status: 401, reason: /invalid|deserializ|format|two|Authorization/i },
  { name: 'token with an embedded space -> 401', send: () => ({ path: '/web/space', auth: bearer(`${good.slice(0, 40)} ${good.slice(40)}`) }), status: 401, error: 'missing bearer token', reason: /no Authorization|bearer/i },
  { name: 'token with a percent-encoded newline (%0A) -> 401', send: () => ({ path: '/web/pct', auth: bearer(`${good.slice(0, 40)}%0A${good.slice(40)}`) }), status: 401, error: 'missing bearer token', reason: /no Authorization|bearer/i },
  { name: 'token continued on an obs-fold line -> 400 malformed HTTP', send: () => ({ path: '/web/fold', auth: `Authorization: Bearer ${good.slice(0, 40)}\r\n ${good.slice(40)}\r\n` }), status: 400, reason: /^malformed HTTP/, record: (r) => r.status === 400 && /^malformed HTTP/.test(r.reason ?? '') },
  { name: `validly signed token larger than limits.maxTokenBytes (${MAX_TOKEN_BYTES}) -> 401 token too large`, send: () => ({ path: '/web/huge', auth: bearer(mint(`user("alice"); blob("${'x'.repeat(MAX_TOKEN_BYTES)}");`)) }), status: 401, error: 'token too large', reason: /too large|more than/i },
  { name: 'token signed by another root key -> 401', send: () => ({ path: '/web/foreign', auth: bearer(mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`)) }), status: 401, error: 'invalid token', reason: /signature|root|key/i },
  { name: 'revoked token (authority block id) -> 403 token revoked', send: () => ({ path: '/web/revoked', auth: bearer(revokedAuthority) }), status: 403, error: 'token revoked', reason: /revocation id [0-9a-f]+ \(block 0\) is revoked/ },
  { name: 'revoked attenuation (block 1 id) -> 403 token revoked', send: () => ({ path: '/web/revoked-block', auth: bearer(revokedAttenuation) }), status: 403, error: 'token revoked', reason: /revocation id [0-9a-f]+ \(block 1\) is revoked/ },
  { name: 'expired token -> 403 token expired', send: () => ({ path: '/web/expired', auth: bearer(mint('user("alice"); check if time($t), $t <= 2020-01-01T00:00:00Z;')) }), status: 403, error: 'token expired', reason: /2020-01-01T00:00:00Z/ },
  { name: 'token not valid before 2100 -> 403', send: () => ({ path: '/web/not-yet', auth: bearer(mint('user("alice"); check if time($t), $t >= 2100-01-01T00:00:00Z;')) }), status: 403, reason: /2100-01-01T00:00:00Z/ },
  { name: 'token naming no user -> 403 (the route policy needs one)', send: () => ({ path: '/web/no-user', auth: bearer(mint('group("staff");')) }), status: 403, error: 'denied by policy', reason: /no allow policy matched/ },
  { name: 'token naming two users -> 403', send: () => ({ path: '/web/two-users', auth: bearer(mint('user("alice"); user("admin");')) }), status: 403, error: 'token names more than one user', reason: /user/i },
  { name: 'user claimed in an attenuation block only -> 403', send: () => ({ path: '/web/user-in-block', auth: bearer(attenuate(mint('group("x");'), 'user("admin");')) }), status: 403, reason: /user|policy/i },
  { name: 'token for another route (check if route("other")) -> 403', send: () => ({ path: '/web/wrong-route', auth: bearer(mint('user("alice"); check if route("other");')) }), status: 403, error: 'denied by policy', reason: /route\("other"\)/ },
  { name: "token bound to bob's certificate presented with alice's -> 403", send: () => ({ path: '/bound/x', auth: bearer(mint(`user("alice"); check if client_fingerprint("${bob.fingerprint}");`)) }), status: 403, error: 'denied by policy', reason: /client_fingerprint/ },
  { name: 'attenuated to /web/public/ and used on /web/private -> 403', send: () => ({ path: '/web/private/x', auth: bearer(attenuate(good, 'check if path($p), $p.starts_with("/web/public/");')) }), status: 403, error: 'denied by policy', reason: /starts_with\("\/web\/public\/"\)/ },
  { name: 'attenuated to GET and used with POST -> 403', send: () => ({ path: '/web/post', method: 'POST', auth: bearer(attenuate(good, 'check if method("GET");')) }), status: 403, error: 'denied by policy', reason: /method\("GET"\)/ },
  { name: 'attenuated with a TTL that has passed -> 403 token expired', send: () => ({ path: '/web/ttl', auth: bearer(attenuate(good, 'check if time($t), $t <= 2021-06-01T00:00:00Z;')) }), status: 403, error: 'token expired', reason: /2021-06-01T00:00:00Z/ },
  { name: 'attenuated to route "other" and used on web -> 403', send: () => ({ path: '/web/att-route', auth: bearer(attenuate(good, 'check if route("other");')) }), status: 403, error: 'denied by policy', reason: /route\("other"\)/ },
  {
    name: 'run-limit blower: a rule deriving 1600 facts from 40 -> 403 run limit exceeded',
    send: () => ({ path: '/web/facts', auth: bearer(mint(`user("alice"); ${Array.from({ length: 40 }, (_, i) => `f(${i});`).join(' ')} pair($a, $b) <- f($a), f($b);`)) }),
    status: 403,
    error: 'run limit exceeded',
    reason: /run limit exceeded/,
    withinMs: 3000,
  },
  {
    name: 'run-limit blower: transitive closure over a 70-edge chain -> 403 run limit exceeded',
    send: () => ({ path: '/web/closure', auth: bearer(mint(`user("alice"); ${Array.from({ length: 70 }, (_, i) => `edge(${i}, ${i + 1});`).join(' ')} path($a, $b) <- edge($a, $b); path($a, $c) <- path($a, $b), edge($b, $c);`)) }),
    status: 403,
    error: 'run limit exceeded',
    reason: /run limit exceeded/,
    withinMs: 3000,
  },
  {
    name: 'run-limit blower: recursion 200 steps deep -> 403 run limit exceeded',
    send: () => ({ path: '/web/deep', auth: bearer(mint(`user("alice"); reach(0); ${Array.from({ length: 200 }, (_, i) => `edge(${i}, ${i + 1});`).join(' ')} reach($b) <- reach($a), edge($a, $b);`)) }),
    status: 403,
    error: 'run limit exceeded',
    reason: /run limit exceeded/,
    withinMs: 3000,
  },
  {
    name: 'run-limit blower: 6-way join in a check over 30 facts -> 403 within the hard deadline',
    send: () => ({ path: '/web/join', auth: bearer(mint(`user("alice"); ${Array.from({ length: 30 }, (_, i) => `n(${i});`).join(' ')} check if n($a), n($b), n($c), n($d), n($e), n($f), $a + $b + $c + $d + $e + $f == -1;`)) }),
    status: 403,
    error: 'run limit exceeded',
    reason: /run limit exceeded/,
    withinMs: 3000,
  },
  {
    name: 'run-limit blower: rule joining 4 ways into new facts -> 403 run limit exceeded',
    send: () => ({ path: '/web/join-rule', auth: bearer(mint(`user("alice"); ${Array.from({ length: 20 }, (_, i) => `m(${i});`).join(' ')} q($a, $b, $c, $d) <- m($a), m($b), m($c), m($d);`)) }),
    status: 403,
    error: 'run limit exceeded',
    reason: /run limit exceeded/,
    withinMs: 3000,
  },
];

beforeAll(async () => {
  h = await startHarness({ routes, extraTop: `limits:\n  maxTokenBytes: ${MAX_TOKEN_BYTES}\n` });
  recorder = await startUpstreamRecorder(join(h.dir, 'run', 'recorder.sock'));
  alice = await h.pki.client('alice');
  bob = await h.pki.client('bob');
  good = aliceToken();
  revokedAuthority = aliceToken();
  const base = aliceToken();
  revokedAttenuation = attenuate(base, 'check if method("GET");');
  const idsOf = (t: string) => biscuit.Biscuit.fromBase64(t, rootKey()).getRevocationIdentifiers().map(String);
  writeFileSync(h.revocationList, `# revoked in this test\n${idsOf(revokedAuthority)[0]}\n${idsOf(revokedAttenuation)[1]}\n`);
  // The gateway starts with a key of its own; switch it to the samples' root key by a reload.
  const mark = h.audit().length;
  writeFileSync(join(h.dir, 'certs', 'token-root.pub'), `ed25519/${samples.root_public_key}\n`);
  h.proc.kill('SIGHUP');
  const until = Date.now() + 10_000;
  while (!h.audit().slice(mark).some((r) => r.event === 'config.reload' && r.decision === 'allow')) {
    if (Date.now() > until) throw new Error(`reload with the samples' root key failed:\n${JSON.stringify(h.audit().slice(mark))}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  expect((await request('/web/ready', bearer(good))).finals[0]?.status).toBe(200);
});

afterAll(async () => {
  await recorder?.close();
  await h?.stop();
});

describe('tokens: the Biscuit specification samples that must not authorize', () => {
  for (const c of sampleCases) {
    it(`${c.title} -> ${c.status}, upstream untouched`, async () => {
      recorder.reset();
      const mark = auditMark({ h });
      const token = readFileSync(join(samplesDir, c.file)).toString('base64url');
      const res = await request(`/${c.route}/x`, bearer(token));
      expect(res.finals[0]?.status).toBe(c.status);
      expect(JSON.parse(res.finals[0]?.text ?? '{}')).toHaveProperty('error');
      const r = await recordOf(`/${c.route}/x`, mark);
      expect(r).toMatchObject({ decision: 'deny', status: c.status, route: c.route });
      expect(r?.reason).toBeTruthy();
      expect(recorder.connections).toBe(0);
      await expectStillServes();
    });
  }
});

describe('tokens: damaged, misplaced, revoked, expired and exploding', () => {
  for (const c of tokenCases) {
    it(c.name, async () => {
      const mark = auditMark({ h });
      const { path, auth, as, method } = c.send();
      recorder.reset();
      const started = performance.now();
      const res = await request(path, auth, { ...(as && { as }), ...(method && { method }) });
      const elapsed = performance.now() - started;
      expect(res.finals[0]?.status).toBe(c.status);
      if (c.error !== undefined) expect(JSON.parse(res.finals[0]?.text ?? '{}')).toEqual({ error: c.error });
      if (c.withinMs !== undefined) expect(elapsed).toBeLessThan(c.withinMs);
      const r = c.record ? await recordAfter({ h }, mark, (x) => x.event === 'request' && (c.record as (r: AuditEntry) => boolean)(x)) : await recordOf(path, mark);
      expect(r).toMatchObject({ event: 'request', decision: 'deny', status: c.status });
      expect(r?.reason).toMatch(c.reason);
      expect(recorder.connections, 'the upstream must not be contacted').toBe(0);
      await expectStillServes();
    });
  }

  it('lowercase "bearer" is the same scheme (RFC 9110: case-insensitive) -> 200', async () => {
    const res = await request('/web/lowercase', `authorization: bearer ${good}\r\n`);
    expect(res.finals[0]?.status).toBe(200);
  });
});
