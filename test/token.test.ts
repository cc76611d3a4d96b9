// Token tooling: minted and attenuated tokens run through a real biscuit authorizer with gateway
// facts; key and revocation files on disk; and the `gatehouse token` CLI as a child process.
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PrivateKey, PublicKey } from '@biscuit-auth/biscuit-wasm';
import { attenuateToken } from '../src/token/attenuateToken.ts';
import { biscuit, datalogParameters } from '../src/token/biscuitModule.ts';
import { parseTtl } from '../src/token/duration.ts';
import { inspectToken } from '../src/token/inspectToken.ts';
import { generateRootKey, parsePublicKey, readPrivateKey, readPublicKey, writeKeyPair } from '../src/token/keyFiles.ts';
import { mintToken, type MintOptions } from '../src/token/mintToken.ts';
import { appendRevokedIds, readRevocationList } from '../src/token/revocationFile.ts';
import type { TokenResult } from '../src/token/tokenErrors.ts';
import { identityFromPem } from '../src/tls/peerIdentity.ts';

const repoRoot = path.resolve(import.meta.dirname, '..');
const cli = path.join(repoRoot, 'bin', 'gatehouse.js');
const execFileAsync = promisify(execFile);

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-token-'));
}

function value<T>(result: TokenResult<T>): T {
  if (!result.ok) throw new Error(`unexpected failure: ${result.error.message}`);
  return result.value;
}

/** The facts the gateway supplies for one request (a subset, enough for token checks). */
interface RequestFacts {
  time: Date;
  route: string;
  method?: string;
  path?: string;
  fingerprint?: string;
  cn?: string;
}

type Outcome = { allowed: true } | { allowed: false; failedChecks: string[]; error: string };

function authorize(token: string, rootKey: PublicKey, facts: RequestFacts, policy = 'allow if user($u);'): Outcome {
  const lines = ['time({time});', 'route({route});', 'protocol("http");'];
  const parameters: Record<string, string | Date> = { time: facts.time, route: facts.route };
  const optional: Array<[keyof RequestFacts, string]> = [
    ['method', 'method'],
    ['path', 'path'],
    ['fingerprint', 'client_fingerprint'],
    ['cn', 'client_cn'],
  ];
  for (const [key, predicate] of optional) {
    const fact = facts[key];
    if (typeof fact !== 'string') continue;
    lines.push(`${predicate}({${key}});`);
    parameters[key] = fact;
  }
  const builder = new biscuit.AuthorizerBuilder();
  builder.addCodeWithParameters([...lines, policy].join('\n'), datalogParameters(parameters), {});
  const parsed = biscuit.Biscuit.fromBase64(token, rootKey);
  const authorizer = builder.buildAuthenticated(parsed);
  try {
    authorizer.authorizeWithLimits({ max_facts: 1000, max_iterations: 100, max_time_micro: 1_000_000 });
    return { allowed: true };
  } catch (error) {
    const text = JSON.stringify(error);
    const failedChecks = [...text.matchAll(/"rule":"((?:[^"\\]|\\.)*)"/g)].map((m) => JSON.parse(`"${m[1]}"`) as string);
    return { allowed: false, failedChecks, error: text };
  } finally {
    authorizer.free();
    parsed.free();
  }
}

/** A self-signed certificate made by openssl, and its fingerprint as the gateway computes it. */
function makeCertificate(dir: string, cn: string): { pemPath: string; fingerprint: string } {
  const pemPath = path.join(dir, `${cn}.crt`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', path.join(dir, `${cn}.key`), '-out', pemPath, '-days', '1', '-subj', `/CN=${cn}`,
  ], { stdio: 'ignore' });
  return { pemPath, fingerprint: identityFromPem(fs.readFileSync(pemPath)).fingerprint };
}

const hour = 3600_000;

describe('minted tokens under a gateway-style authorizer', () => {
  const keys = generateRootKey();
  let privateKey: PrivateKey;
  let publicKey: PublicKey;
  const now = new Date();
  beforeAll(() => {
    privateKey = biscuit.PrivateKey.fromString(keys.privateKey);
    publicKey = value(parsePublicKey(keys.publicKey));
  });
  const mint = (options: Omit<MintOptions, 'privateKey'>): string => value(mintToken({ privateKey, ...options }));

  it('allows the right request and carries user and groups in the authority block', () => {
    const token = mint({ user: 'alice', groups: ['hpc', 'ops'], routes: ['jupyter', 'api'], ttlSeconds: 3600 });
    expect(authorize(token, publicKey, { time: now, route: 'jupyter' })).toEqual({ allowed: true });
    expect(authorize(token, publicKey, { time: now, route: 'api' }, 'allow if group("ops");')).toEqual({ allowed: true });
    expect(authorize(token, publicKey, { time: now, route: 'api' }, 'allow if group("admins");').allowed).toBe(false);
    const inspection = value(inspectToken(token, publicKey));
    expect(inspection).toMatchObject({ user: 'alice', groups: ['hpc', 'ops'], verified: true });
    expect(inspection.blocks).toHaveLength(1);
  });

  it('denies an expired token and names the time check', () => {
    const token = mint({ user: 'alice', ttlSeconds: 3600, now: new Date(Date.now() - 2 * hour) });
    const outcome = authorize(token, publicKey, { time: now, route: 'jupyter' });
    expect(outcome.allowed).toBe(false);
    if (outcome.allowed) return;
    expect(outcome.failedChecks).toHaveLength(1);
    expect(outcome.failedChecks[0]).toMatch(/^check if time\(\$time\), \$time <= \d{4}-/);
    // Still valid an hour and a half earlier, and the expiry reported is the one enforced.
    expect(authorize(token, publicKey, { time: new Date(Date.now() - 1.5 * hour), route: 'x' }).allowed).toBe(true);
    const expiresAt = value(inspectToken(token, publicKey)).expiresAt;
    expect(Math.abs(Date.parse(expiresAt ?? '') - (Date.now() - hour))).toBeLessThan(5000);
  });

  it('expires after 12 hours when no lifetime is given', () => {
    const token = mint({ user: 'alice', now });
    expect(authorize(token, publicKey, { time: new Date(now.getTime() + 11.9 * hour), route: 'r' }).allowed).toBe(true);
    expect(authorize(token, publicKey, { time: new Date(now.getTime() + 12.1 * hour), route: 'r' }).allowed).toBe(false);
  });

  it('restricts routes', () => {
    const token = mint({ user: 'alice', routes: ['jupyter'] });
    const outcome = authorize(token, publicKey, { time: now, route: 'database' });
    expect(outcome.allowed).toBe(false);
    if (!outcome.allowed) expect(outcome.failedChecks).toEqual(['check if route($route), {"jupyter"}.contains($route)']);
  });

  it('binds to a certificate fingerprint or common name', () => {
    const dir = tempDir();
    const mine = makeCertificate(dir, 'alice');
    const other = makeCertificate(dir, 'mallory');
    const bound = mint({ user: 'alice', clientFingerprint: mine.fingerprint });
    expect(authorize(bound, publicKey, { time: now, route: 'r', fingerprint: mine.fingerprint }).allowed).toBe(true);
    expect(authorize(bound, publicKey, { time: now, route: 'r', fingerprint: other.fingerprint }).allowed).toBe(false);
    expect(authorize(bound, publicKey, { time: now, route: 'r' }).allowed).toBe(false);
    // The colon-separated upper-case form openssl prints names the same certificate.
    const opensslForm = mine.fingerprint.slice(7).toUpperCase().match(/../g)?.join(':') ?? '';
    const bound2 = mint({ user: 'alice', clientFingerprint: opensslForm });
    expect(authorize(bound2, publicKey, { time: now, route: 'r', fingerprint: mine.fingerprint }).allowed).toBe(true);
    const byCn = mint({ user: 'alice', clientCn: 'alice' });
    expect(authorize(byCn, publicKey, { time: now, route: 'r', cn: 'alice' }).allowed).toBe(true);
    expect(authorize(byCn, publicKey, { time: now, route: 'r', cn: 'mallory' }).allowed).toBe(false);
  });

  it('attenuation narrows method, path and route, and cannot widen', () => {
    const parent = mint({ user: 'alice', routes: ['jupyter'], ttlSeconds: 3600 });
    const child = value(
      attenuateToken({ token: parent, publicKey, methods: ['get', 'HEAD'], pathPrefix: '/lab/', routes: ['jupyter', 'database'], ttlSeconds: 7 * 86_400 }),
    );
    const ok = { time: now, route: 'jupyter', method: 'GET', path: '/lab/tree' };
    expect(authorize(child, publicKey, ok).allowed).toBe(true);
    expect(authorize(child, publicKey, { ...ok, method: 'POST' }).allowed).toBe(false);
    expect(authorize(child, publicKey, { ...ok, path: '/api/kernels' }).allowed).toBe(false);
    // The child names another route and a longer life; the parent's checks still hold.
    const widened = authorize(child, publicKey, { ...ok, route: 'database' });
    expect(widened.allowed).toBe(false);
    if (!widened.allowed) expect(widened.failedChecks).toEqual(['check if route($route), {"jupyter"}.contains($route)']);
    expect(authorize(child, publicKey, { ...ok, time: new Date(now.getTime() + 2 * hour) }).allowed).toBe(false);
    // A block can be bound to one client after the fact.
    const boundChild = value(attenuateToken({ token: parent, publicKey, clientCn: 'bob' }));
    expect(authorize(boundChild, publicKey, { ...ok, cn: 'bob' }).allowed).toBe(true);
    expect(authorize(boundChild, publicKey, { ...ok, cn: 'eve' }).allowed).toBe(false);
  });

  it('revocation ids of an attenuated token start with the parent ones', () => {
    const parent = mint({ user: 'alice' });
    const child = value(attenuateToken({ token: parent, publicKey, methods: ['GET'] }));
    const grandchild = value(attenuateToken({ token: child, publicKey, pathPrefix: '/x/' }));
    const ids = (t: string): string[] => value(inspectToken(t, publicKey)).revocationIds;
    expect(ids(child)).toHaveLength(2);
    expect(ids(child).slice(0, 1)).toEqual(ids(parent));
    expect(ids(grandchild).slice(0, 2)).toEqual(ids(child));
    // Read without the root key, the envelope gives the same ids, marked unverified.
    const unverified = value(inspectToken(grandchild));
    expect(unverified.revocationIds).toEqual(ids(grandchild));
    expect(unverified.verified).toBe(false);
    expect(unverified.blocks.every((b) => b.source === undefined)).toBe(true);
  });

  it('rejects Datalog injection in names and keeps hostile strings inert', () => {
    for (const user of ['alice"); allow if true; user("x', 'alice\n', '', 'a b', '../x']) {
      const result = mintToken({ privateKey, user });
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.error.kind).toBe('invalid-input');
    }
    expect(mintToken({ privateKey, user: 'alice', groups: ['x") or true; group("y'] }).ok).toBe(false);
    expect(mintToken({ privateKey, user: 'alice', routes: ['a"].contains($r) or true; ["'] }).ok).toBe(false);
    expect(mintToken({ privateKey, user: 'alice', routes: [] }).ok).toBe(false);
    // A CN may contain quotes: it reaches Datalog as a parameter, so it is one string, not code.
    const cn = 'x"); check if true; client_cn("y';
    const token = mint({ user: 'alice', clientCn: cn });
    expect(authorize(token, publicKey, { time: now, route: 'r', cn: 'x' }).allowed).toBe(false);
    expect(authorize(token, publicKey, { time: now, route: 'r', cn: 'y' }).allowed).toBe(false);
    expect(authorize(token, publicKey, { time: now, route: 'r', cn }).allowed).toBe(true);
    const path = '/a/").starts_with("/';
    const pathToken = value(attenuateToken({ token, publicKey, pathPrefix: path }));
    expect(authorize(pathToken, publicKey, { time: now, route: 'r', cn, path: '/b' }).allowed).toBe(false);
    expect(authorize(pathToken, publicKey, { time: now, route: 'r', cn, path: `${path}z` }).allowed).toBe(true);
  });

  it('refuses tokens signed by another root key and malformed input', () => {
    const token = mint({ user: 'alice' });
    const otherKey = value(parsePublicKey(generateRootKey().publicKey));
    const inspected = inspectToken(token, otherKey);
    expect(inspected.ok).toBe(false);
    if (!inspected.ok) expect(inspected.error.kind).toBe('invalid-token');
    expect(attenuateToken({ token, publicKey: otherKey, methods: ['GET'] }).ok).toBe(false);
    expect(inspectToken('not a token', publicKey).ok).toBe(false);
    expect(inspectToken('AAAA').ok).toBe(false);
    expect(attenuateToken({ token, publicKey }).ok).toBe(false);
  });
});

describe('durations', () => {
  it('parses s/m/h/d and refuses the rest', () => {
    expect(value(parseTtl('30s'))).toBe(30);
    expect(value(parseTtl('15m'))).toBe(900);
    expect(value(parseTtl('8h'))).toBe(28_800);
    expect(value(parseTtl('7d'))).toBe(604_800);
    for (const bad of ['', '8', 'h', '1.5h', '-1h', '0s', '8hours', '1y', '400d']) expect(parseTtl(bad).ok).toBe(false);
  });
});

describe('key files', () => {
  it('writes the pair with safe modes, refuses to overwrite unless forced, and reads it back', () => {
    const dir = tempDir();
    const priv = path.join(dir, 'root.key');
    const pub = path.join(dir, 'root.pub');
    const keys = value(writeKeyPair(priv, pub));
    expect(fs.statSync(priv).mode & 0o777).toBe(0o600);
    expect(fs.statSync(pub).mode & 0o777).toBe(0o644);
    expect(fs.readFileSync(pub, 'utf8')).toBe(`${keys.publicKey}\n`);
    expect(keys.publicKey).toMatch(/^ed25519\/[0-9a-f]{64}$/);
    expect(keys.privateKey).toMatch(/^ed25519-private\/[0-9a-f]{64}$/);
    const again = writeKeyPair(priv, pub);
    expect(again.ok).toBe(false);
    if (!again.ok) expect(again.error).toMatchObject({ kind: 'exists', file: priv });
    expect(fs.readFileSync(pub, 'utf8')).toBe(`${keys.publicKey}\n`);
    const forced = value(writeKeyPair(priv, pub, { force: true }));
    expect(forced.publicKey).not.toBe(keys.publicKey);
    expect(fs.statSync(priv).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir).sort()).toEqual(['root.key', 'root.pub']);
    // Reading tolerates surrounding whitespace; the keys work together.
    fs.writeFileSync(pub, `\n  ${forced.publicKey}  \n\n`);
    const token = value(mintToken({ privateKey: value(readPrivateKey(priv)), user: 'alice' }));
    expect(value(inspectToken(token, value(readPublicKey(pub)))).user).toBe('alice');
  });

  it('names the file in typed errors: missing, unreadable, malformed', () => {
    const dir = tempDir();
    const missing = readPublicKey(path.join(dir, 'nope.pub'));
    expect(missing.ok).toBe(false);
    if (!missing.ok) expect(missing.error).toMatchObject({ kind: 'missing', file: path.join(dir, 'nope.pub') });
    const unreadable = readPrivateKey(dir);
    expect(unreadable.ok ? undefined : unreadable.error.kind).toBe('unreadable');
    const bad = path.join(dir, 'bad.pub');
    for (const text of ['hello', 'ed25519/zz', 'ed25519/abcd', generateRootKey().privateKey]) {
      fs.writeFileSync(bad, text);
      const result = readPublicKey(bad);
      expect(result.ok ? undefined : result.error).toMatchObject({ kind: 'malformed', file: bad });
      if (!result.ok) expect(result.error.message).toContain(bad);
    }
    fs.writeFileSync(bad, generateRootKey().publicKey);
    expect(readPrivateKey(bad).ok ? undefined : 'malformed').toBe('malformed');
  });
});

const hexId = (n: number, salt = 'a'): string => `${salt}${n.toString(16)}`.padEnd(128, '0').slice(0, 128);

describe('revocation list', () => {
  it('creates the file, appends only new ids, lower-cases and validates them', () => {
    const file = path.join(tempDir(), 'revoked.txt');
    expect(value(appendRevokedIds(file, [hexId(1), hexId(2).toUpperCase(), hexId(1)]))).toEqual([hexId(1), hexId(2)]);
    expect(fs.statSync(file).mode & 0o622).toBe(0o600);
    expect(value(appendRevokedIds(file, [hexId(2), hexId(3)]))).toEqual([hexId(3)]);
    expect(value(appendRevokedIds(file, [hexId(3)]))).toEqual([]);
    expect(fs.readFileSync(file, 'utf8')).toBe(`${hexId(1)}\n${hexId(2)}\n${hexId(3)}\n`);
    expect(appendRevokedIds(file, ['xyz']).ok).toBe(false);
    expect(appendRevokedIds(file, [hexId(4), 'abc']).ok).toBe(false);
    expect([...value(readRevocationList(file))]).toEqual([hexId(1), hexId(2), hexId(3)]);
  });

  it('never glues an id onto a hand-edited last line without a newline', () => {
    const file = path.join(tempDir(), 'revoked.txt');
    fs.writeFileSync(file, `# revoked by hand\n${hexId(1)}`);
    value(appendRevokedIds(file, [hexId(2)]));
    expect([...value(readRevocationList(file))]).toEqual([hexId(1), hexId(2)]);
  });

  it('reads comments and blanks, and rejects any malformed line with its number', () => {
    const file = path.join(tempDir(), 'revoked.txt');
    fs.writeFileSync(file, `# header\n\n${hexId(1)}  # alice's laptop\n   ${hexId(2).toUpperCase()}\n`);
    expect([...value(readRevocationList(file))]).toEqual([hexId(1), hexId(2)]);
    for (const badLine of ['not-hex', hexId(3).slice(0, 127), hexId(3).slice(0, 40), `${hexId(3)} ${hexId(4)}`, `${hexId(3)},`]) {
      fs.writeFileSync(file, `# header\n${hexId(1)}\n${badLine}\n${hexId(2)}\n`);
      const result = readRevocationList(file);
      expect(result.ok ? undefined : result.error).toMatchObject({ kind: 'malformed', line: 3, file });
      // Appending to a list the gateway would refuse does not paper over it.
      expect(appendRevokedIds(file, [hexId(5)]).ok).toBe(false);
    }
    const missing = readRevocationList(path.join(path.dirname(file), 'none.txt'));
    expect(missing.ok ? undefined : missing.error.kind).toBe('missing');
    const unreadable = readRevocationList(path.dirname(file));
    expect(unreadable.ok ? undefined : unreadable.error.kind).toBe('unreadable');
  });

  it('keeps lines whole when 20 processes append at once', async () => {
    const file = path.join(tempDir(), 'revoked.txt');
    const moduleUrl = pathToFileURL(path.join(repoRoot, 'src', 'token', 'revocationFile.ts')).href;
    const script = `
      const { appendRevokedIds } = await import(${JSON.stringify(moduleUrl)});
      const [file, worker] = process.argv.slice(-2);
      for (let round = 0; round < 10; round++) {
        const ids = [];
        for (let i = 0; i < 8; i++) ids.push(('b' + worker + 'c' + round + 'd' + i).padEnd(128, '0'));
        ids.push('e'.padEnd(128, String(round % 3)));
        const result = appendRevokedIds(file, ids);
        if (!result.ok) { console.error(result.error.message); process.exit(1); }
      }`;
    const children = Array.from({ length: 20 }, (_, worker) =>
      new Promise<number | null>((resolve) => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', script, file, String(worker)], { stdio: ['ignore', 'ignore', 'inherit'] });
        child.on('exit', resolve);
      }),
    );
    expect(await Promise.all(children)).toEqual(Array(20).fill(0));
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    expect(lines.pop()).toBe('');
    // Every line whole; a blank line (a writer that read another's append half done) is allowed by the format.
    for (const line of lines) expect(line).toMatch(/^(?:[0-9a-f]{128})?$/);
    const ids = value(readRevocationList(file));
    expect(ids.size).toBe(20 * 10 * 8 + 3);
  });
});

describe('gatehouse token CLI', () => {
  const run = async (args: string[], options: { cwd: string; input?: string }): Promise<{ code: number; stdout: string; stderr: string }> => {
    const child = execFileAsync(process.execPath, [cli, ...args], { cwd: options.cwd });
    if (options.input !== undefined) child.child.stdin?.end(options.input);
    else child.child.stdin?.end();
    try {
      const { stdout, stderr } = await child;
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };
  // A usage error caught by the option parser (options that cannot go together) exits 2, others 1.
  const expectOneLineError = (result: { code: number; stderr: string }, pattern: RegExp, code = 1): void => {
    expect(result.code).toBe(code);
    const errors = result.stderr.split('\n').filter((l) => l.startsWith('error: '));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(pattern);
    expect(result.stderr).not.toMatch(/^\s+at /m);
  };

  it('keygen, mint, attenuate, inspect and revoke work together', async () => {
    const cwd = tempDir();
    const keygen = await run(['token', 'keygen'], { cwd });
    expect(keygen.code).toBe(0);
    const publicKey = fs.readFileSync(path.join(cwd, 'certs', 'token-root.pub'), 'utf8').trim();
    expect(keygen.stdout).toBe(`${publicKey}\n`);
    expect(fs.statSync(path.join(cwd, 'certs', 'token-root.key')).mode & 0o777).toBe(0o600);
    expectOneLineError(await run(['token', 'keygen'], { cwd }), /already exists.*--force/);

    const cert = makeCertificate(cwd, 'alice');
    const mint = await run(['token', 'mint', '--user', 'alice', '--group', 'hpc', '--group', 'ops', '--ttl', '8h', '--route', 'jupyter', '--bind-cert', cert.pemPath], { cwd });
    expect(mint.code).toBe(0);
    expect(mint.stdout).toMatch(/^[A-Za-z0-9_-]+={0,2}\n$/);
    const token = mint.stdout.trim();

    const inspect = await run(['token', 'inspect', '--pubkey', 'certs/token-root.pub', '--json'], { cwd, input: `${token}\n` });
    expect(inspect.code).toBe(0);
    const inspection = JSON.parse(inspect.stdout) as { user: string; groups: string[]; expiresAt: string; verified: boolean; blocks: Array<{ source: string }> };
    expect(inspection).toMatchObject({ user: 'alice', groups: ['hpc', 'ops'], verified: true });
    expect(Math.abs(Date.parse(inspection.expiresAt) - Date.now() - 8 * hour)).toBeLessThan(60_000);
    expect(inspection.blocks[0]?.source).toContain(`check if client_fingerprint("${cert.fingerprint}");`);

    fs.writeFileSync(path.join(cwd, 'token.txt'), token);
    const attenuate = await run(['token', 'attenuate', '--token-file', 'token.txt', '--method', 'GET', '--path-prefix', '/lab/', '--out', 'child.txt'], { cwd });
    expect(attenuate.code).toBe(0);
    expect(fs.statSync(path.join(cwd, 'child.txt')).mode & 0o777).toBe(0o600);
    const human = await run(['token', 'inspect', '--pubkey', 'certs/token-root.pub', '--token-file', 'child.txt'], { cwd });
    expect(human.stdout).toMatch(/user: +alice/);
    expect(human.stdout).toContain('check if method($method), {"GET"}.contains($method);');
    expect(human.stdout).toMatch(/blocks: +2/);

    const child = fs.readFileSync(path.join(cwd, 'child.txt'), 'utf8').trim();
    const ids = value(inspectToken(child, value(readPublicKey(path.join(cwd, 'certs', 'token-root.pub'))))).revocationIds;
    const revokeChild = await run(['token', 'revoke', '--token-file', 'child.txt', '--pubkey', 'certs/token-root.pub', '--block', '1'], { cwd });
    expect(revokeChild.stdout).toBe(`${ids[1]}\n`);
    const revokeAll = await run(['token', 'revoke', '--token-file', 'child.txt'], { cwd });
    expect(revokeAll.stdout).toBe(`${ids[0]}\n`);
    const again = await run(['token', 'revoke', '--id', ids[0] ?? ''], { cwd });
    expect(again).toMatchObject({ code: 0, stdout: '' });
    expect([...value(readRevocationList(path.join(cwd, 'certs', 'revoked.txt')))]).toEqual([ids[1], ids[0]]);
  });

  it('prints only the token on standard output, so $(gatehouse token mint ...) is usable', async () => {
    const cwd = tempDir();
    await run(['token', 'keygen', '--out', 'k/root'], { cwd });
    const mint = await run(['token', 'mint', '--key', 'k/root.key', '--user', 'bob', '--unbound'], { cwd });
    expect(mint.stdout.split('\n')).toHaveLength(2);
    expect(value(inspectToken(mint.stdout, value(readPublicKey(path.join(cwd, 'k', 'root.pub'))))).user).toBe('bob');
  });

  it('fails with one line and exit 1', async () => {
    const cwd = tempDir();
    expectOneLineError(await run(['token', 'mint', '--key', 'missing.key', '--user', 'alice', '--unbound'], { cwd }), /missing\.key does not exist/);
    await run(['token', 'keygen'], { cwd });
    expectOneLineError(await run(['token', 'mint', '--user', 'alice'], { cwd }), /bound to their holder's client certificate: give --bind-cert/);
    expectOneLineError(await run(['token', 'mint', '--user', 'alice', '--unbound', '--delegable'], { cwd }), /cannot be used with/, 2);
    expectOneLineError(await run(['token', 'mint', '--user', 'al"ice', '--unbound'], { cwd }), /invalid user name/);
    expectOneLineError(await run(['token', 'mint', '--user', 'alice', '--ttl', '8 hours', '--unbound'], { cwd }), /invalid duration/);
    expectOneLineError(await run(['token', 'mint', '--user', 'alice', '--bind-cert', 'nope.pem'], { cwd }), /cannot read certificate nope\.pem/);
    expectOneLineError(await run(['token', 'mint', '--user', 'alice', '--bind-cn', 'a', '--unbound'], { cwd }), /cannot be used with/, 2);
    expectOneLineError(await run(['token', 'inspect', '--pubkey', 'certs/token-root.pub'], { cwd, input: 'garbage' }), /not a valid Biscuit/);
    const token = (await run(['token', 'mint', '--user', 'alice', '--unbound'], { cwd })).stdout;
    await run(['token', 'keygen', '--out', 'other/root'], { cwd });
    expectOneLineError(await run(['token', 'inspect', '--pubkey', 'other/root.pub'], { cwd, input: token }), /does not verify against the root public key/);
    expectOneLineError(await run(['token', 'attenuate', '--pubkey', 'other/root.pub', '--ttl', '1h'], { cwd, input: token }), /does not verify/);
    expectOneLineError(await run(['token', 'attenuate', '--ttl', '1h', '--token', token, '--token-file', 'x'], { cwd }), /not both/);
    expectOneLineError(await run(['token', 'revoke', '--id', 'xyz'], { cwd }), /invalid revocation id/);
    expectOneLineError(await run(['token', 'revoke'], { cwd }), /nothing to revoke/);
  });
});
