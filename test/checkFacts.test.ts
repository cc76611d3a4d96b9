// `gatehouse check` knows the authorizer's fact vocabulary (issue 19): it warns, and with --strict
// fails, on policies that read facts nothing states or that the route's protocols never carry, on unix:
// upstreams in missing directories; a scalar `protocols:` is one clear error; `authz explain` lists what a route can see.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { gatewayFacts, predicatesIn } from '../src/authz/policy/factVocabulary.ts';
import { requestFactList } from '../src/authz/policy/requestFacts.ts';
import { gatewayConfig, makeRootKey, runGatehouse } from './support/gatewayHarness.ts';
import { makeTestPki, type TestClientCertificate } from './support/pki.ts';

let dir: string;
let alice: TestClientCertificate;
const root = makeRootKey();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-check-facts-'));
  const pki = await makeTestPki(join(dir, 'certs'));
  alice = await pki.client('alice');
  writeFileSync(join(dir, 'certs', 'token-root.pub'), `${root.publicKey}\n`);
  writeFileSync(join(dir, 'certs', 'token-root.key'), `${root.privateKey}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'certs', 'revoked.txt'), '');
  mkdirSync(join(dir, 'run', 'users'), { recursive: true });
});

/** `gatehouse check` on a config with these route items (YAML, indented by 2) and more top-level keys. */
async function check(routes: string, extra: { top?: string; authz?: string } = {}, ...args: string[]) {
  const file = `c${Math.random().toString(36).slice(2)}.yaml`;
  writeFileSync(join(dir, file), gatewayConfig({ routes, extraTop: extra.top ?? '', authzExtra: extra.authz ?? '' }));
  const run = await runGatehouse(['check', '--config', file, ...args], { cwd: dir });
  return { ...run, file, lines: run.stderr.split('\n').filter((l) => l.startsWith(`${file}:`)) };
}

const route = (name: string, policy: string, extra = '    path: /x/\n    upstream: unix:run/x.sock\n') => `  - name: ${name}\n${extra}    policy: ${JSON.stringify(policy)}\n`;

describe('check warns on facts no request can produce', () => {
  it('a misspelt fact (every request denied): a warning with its line and a suggestion; --strict fails', async () => {
    const run = await check(route('a', 'allow if usr($u);'));
    expect(run.lines).toEqual([expect.stringMatching(/:\d+:\d+: routes\[0\]\.policy: warning: policy reads usr\(…\), which no request, token or rule of this policy states: .*\(did you mean user\?\)$/)]);
    expect(run.stdout).toMatch(/OK \(1 route, 1 warning\)/);
    expect(run.code).toBe(0);
    const strict = await check(route('a', 'allow if usr($u);'), {}, '--strict');
    expect(strict.lines).toEqual([expect.stringMatching(/warning: policy reads usr/), `${strict.file}: 1 warning, refused by --strict`]);
    expect(strict.stdout).toBe('');
    expect(strict.code).toBe(1);
  });

  it('method("GET") on a tcp-only route, and publish-only facts on a route, are facts its protocols never carry', async () => {
    const run = await check(route('t', 'allow if user($u), method("GET");', '    protocols: [tcp]\n    upstream: unix:run/x.sock\n') + route('s', 'allow if user($u), service("jupyter");'));
    expect(run.lines).toEqual([
      expect.stringMatching(/routes\[0\]\.policy: warning: policy reads method\(…\), which the gateway never states on this route \(protocols: tcp\): it states it only for http and websocket requests/),
      expect.stringMatching(/routes\[1\]\.policy: warning: policy reads service\(…\), .*only in the publish\.policy decision/),
    ]);
  });

  it('no warning for the contract: gateway facts of the protocol, token facts, the policy\'s own rules, attested facts, the shipped examples', async () => {
    const policies = [
      'allow if user($u), param("user", $u), method($m), host($h), path($p), protocol("http"), time($t), route("a");',
      'allow if group("hpc"), client_cn($c), client_san("email", $e), client_fingerprint($f), client_subject($s), client_issuer($i), client_serial($n), source_ip($ip);',
      'mine($u) <- user($u), param("user", $u);\nallow if mine($u);\n// allow if usr($u); in a comment\ncheck if path($p), !$p.starts_with("/usr(x)");',
      'deny if source_ip($ip), !$ip.starts_with("10.");\nallow if group("beamline-users"), method($m), {"GET", "HEAD"}.contains($m);',
      'allow if user($u), facility_member($u) trusting authority, {facility};',
    ];
    const run = await check(policies.map((p, i) => route(`r${i}`, p, `    path: /~{user}/r${i}/\n    upstream: unix:run/x.sock\n`)).join('') + route('pub', 'allow if user($u), publisher_fingerprint($f);', '    path: /~{user}/{service}/\n    upstream: published:{user}/{service}\n'), {
      top: 'publish:\n  policy: |\n    deny if token_blocks($n), $n > 1;\n    allow if user($u), service($s), publish_granted($b, $s);\n',
      authz: `  externalKeys:\n    facility: ${root.publicKey}\n`,
    });
    expect(run.stderr).not.toMatch(/warning/);
    expect(run.code, run.stderr).toBe(0);
  });

  it('the vocabulary is the authorizer\'s: every fact a request gets is in it, for the protocols it is stated in', () => {
    const client = { cn: 'alice', subject: 'CN=alice', issuer: 'CN=CA', serial: '01', fingerprint: 'sha256:aa', sans: [{ kind: 'email', value: 'a@x' }], notAfter: '2030-01-01T00:00:00.000Z' };
    const full = { time: new Date(), route: 'r', protocol: 'http' as const, method: 'GET', host: 'h', path: '/', params: { user: 'alice' }, sourceIp: '::1', client, publisherFingerprint: 'sha256:bb' };
    for (const { predicate } of requestFactList(full)) expect(predicatesIn(['http'], true)).toContain(predicate);
    const tunnel = { time: new Date(), route: 'r', protocol: 'tcp' as const, params: {}, sourceIp: '::1', client };
    for (const { predicate } of requestFactList(tunnel)) expect(predicatesIn(['tcp'], false)).toContain(predicate);
    expect(predicatesIn(['tcp'], false)).not.toContain('method');
    expect(Object.keys(gatewayFacts)).toEqual(expect.arrayContaining(['time', 'route', 'protocol', 'method', 'host', 'path', 'param', 'source_ip', 'client_cn', 'client_subject', 'client_san', 'client_serial', 'client_fingerprint', 'client_issuer']));
  });
});

describe('check warns on sockets that cannot exist', () => {
  it('a unix: upstream in a missing directory, and a template whose fixed part is missing', async () => {
    const run = await check(route('a', 'allow if user($u);', '    path: /a/\n    upstream: unix:/nonexistent/dir/x.sock\n') + route('b', 'allow if user($u);', '    path: /~{user}/b/\n    upstream: unix:/nonexistent/{user}/b.sock\n    socketOwner: user\n') + route('c', 'allow if user($u);', '    path: /~{user}/c/\n    upstream: unix:run/users/{user}/c.sock\n    socketOwner: user\n'));
    expect(run.lines).toEqual([
      expect.stringMatching(/routes\[0\]\.upstream: warning: no directory \/nonexistent\/dir: the socket cannot be there until it exists/),
      expect.stringMatching(/routes\[1\]\.upstream: warning: no directory \/nonexistent \(the fixed part of the template\)/),
    ]);
    expect((await check(route('a', 'allow if user($u);'), {}, '--strict')).code).toBe(0);
  });
});

describe('check warns on routes no request can reach', () => {
  it('a route path under /.well-known/gatehouse/ (the gateway\'s own) (a template too), but not /.well-known/ beside it', async () => {
    const run = await check(route('a', 'allow if user($u);', '    path: /.well-known/gatehouse/app/\n    upstream: unix:run/x.sock\n') + route('b', 'allow if user($u);', '    path: /.well-known/gatehouse/{user}/\n    upstream: unix:run/x.sock\n') + route('c', 'allow if user($u);', '    path: /.well-known/acme/\n    upstream: unix:run/x.sock\n'));
    expect(run.lines).toEqual([
      expect.stringMatching(/routes\[0\]\.path: warning: paths under \/\.well-known\/gatehouse\/ belong to the gateway .*: no request reaches this route there/),
      expect.stringMatching(/routes\[1\]\.path: warning: paths under \/\.well-known\/gatehouse\/ belong to the gateway/),
    ]);
    expect((await check(route('a', 'allow if user($u);', '    path: /.well-known/gatehouse/app/\n    upstream: unix:run/x.sock\n'), {}, '--strict')).code).toBe(1);
  });
});

describe('check run as root', () => {
  it.skipIf(process.getuid?.() !== 0)('says that readability was proved for root only (needs root)', async () => {
    const run = await check(route('a', 'allow if user($u);'));
    expect(run.stderr).toMatch(/^note: checked as root: run check as the gateway's user .* to prove it can read its files$/m);
    expect(run.code).toBe(0);
  });
});

describe('check on a scalar where a list belongs', () => {
  it('protocols: tcp is one error that says how to write it, with no follow-on about an empty list', async () => {
    const run = await check(route('t', 'allow if user($u);', '    protocols: tcp\n    upstream: unix:run/x.sock\n    idleTimeoutSeconds: 30\n'));
    expect(run.lines).toEqual([expect.stringMatching(/routes\[0\]\.protocols: expected a list, got a string \("tcp"\); write it as a list: \[tcp\]$/)]);
    expect(run.code).toBe(1);
  });
});

describe('authz explain', () => {
  it('lists the facts the route can see: none of method, host, path on a tcp route', async () => {
    writeFileSync(join(dir, 'routes.yaml'), gatewayConfig({ routes: route('raw', 'allow if user($u);', '    protocols: [tcp]\n    upstream: unix:run/x.sock\n') + route('web', 'allow if user($u);') }));
    const token = await runGatehouse(['token', 'mint', '--user', 'alice', '--bind-cert', alice.certPath], { cwd: dir });
    const raw = await runGatehouse(['authz', 'explain', '--route', 'raw', '--token-file', '-', '--cert', alice.certPath], { cwd: dir, input: token.stdout });
    expect(raw.stdout).toMatch(/^can see: {3}time, route, protocol, param, source_ip, client_cn, client_subject, client_serial, client_fingerprint, client_issuer, client_san, signer; from the token: user, group, publish_right, delegated_fingerprint, delegated_cn, idp_issuer, idp_subject$/m);
    const web = await runGatehouse(['authz', 'explain', '--route', 'web', '--token-file', '-', '--cert', alice.certPath, '--path', '/x/'], { cwd: dir, input: token.stdout });
    expect(web.stdout).toMatch(/^can see: {3}time, route, protocol, method, host, path, param, /m);
  });
});
