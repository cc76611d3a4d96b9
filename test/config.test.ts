// Tests for loading routes.yaml: the shipped config, every error with its exact line, file checks,
// resolved paths, and the `gatehouse check` command as a real process.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KeyPair, SignatureAlgorithm } from '@biscuit-auth/biscuit-wasm';
import { writeAuditKeyPair } from '../src/audit/auditCheckpoint.ts';
import { formatConfigError, loadConfig, type ConfigError } from '../src/configCheck/loadConfig.ts';

const repo = path.resolve(import.meta.dirname, '..');
const temps: string[] = [];

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-config-'));
  temps.push(dir);
  return dir;
}

function selfSigned(dir: string, name: string, cn: string): void {
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', path.join(dir, `${name}.key`), '-out', path.join(dir, `${name}.crt`),
    '-subj', `/CN=${cn}`, '-days', '2',
  ], { stdio: 'ignore' });
}

/** A directory holding the files the shipped routes.yaml names (certs/, root key, revocation list). */
function siteDir(): string {
  const dir = tempDir();
  const certs = path.join(dir, 'certs');
  fs.mkdirSync(certs);
  selfSigned(certs, 'ca', 'test CA');
  selfSigned(certs, 'server', 'localhost');
  const keys = new KeyPair(SignatureAlgorithm.Ed25519);
  fs.writeFileSync(path.join(certs, 'token-root.pub'), `${keys.getPublicKey().toString()}\n`);
  fs.writeFileSync(path.join(certs, 'token-root.private'), `${keys.getPrivateKey().toString()}\n`);
  fs.writeFileSync(path.join(certs, 'revoked.txt'), '');
  expect(writeAuditKeyPair(path.join(certs, 'audit-signing'), false).ok).toBe(true);
  // The socket directories the shipped routes.yaml names (check warns about missing ones).
  fs.mkdirSync(path.join(dir, 'run', 'users'), { recursive: true });
  return dir;
}

let site: string;
beforeAll(() => {
  site = siteDir();
});
afterAll(() => {
  for (const dir of temps) fs.rmSync(dir, { recursive: true, force: true });
});

/** Writes `lines` as routes.yaml in a fresh copy of the site and loads it. */
async function loadLines(lines: string[]): Promise<{ file: string; errors: ConfigError[]; warnings: ConfigError[] }> {
  const dir = tempDir();
  fs.cpSync(path.join(site, 'certs'), path.join(dir, 'certs'), { recursive: true });
  const file = path.join(dir, 'routes.yaml');
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  const result = await loadConfig(file);
  return { file, errors: result.ok ? [] : result.errors, warnings: result.warnings };
}

const header = [
  'listen:', //                          1
  '  - tcp: 127.0.0.1:8443', //          2
  'tls:', //                             3
  '  cert: certs/server.crt', //         4
  '  key: certs/server.key', //          5
  '  clientCa: certs/ca.crt', //         6
  'authz:', //                           7
  '  rootKey: certs/token-root.pub', //  8
  '  revocationList: certs/revoked.txt', // 9
  'audit:', //                           10
  '  file: audit/audit.log', //          11
  'routes:', //                          12
];

function route(name: string, extra: string[] = [], policy = 'allow if user($u);'): string[] {
  return [`  - name: ${name}`, `    path: /${name}/`, '    upstream: unix:run/x.sock', ...extra, `    policy: ${JSON.stringify(policy)}`];
}

function brief(errors: ConfigError[]): string[] {
  return errors.map((e) => `${e.line}:${e.column} ${e.key}: ${e.message}`);
}

describe('the shipped routes.yaml', () => {
  it('validates once the files it names exist, with every path made absolute', async () => {
    const file = path.join(site, 'routes.yaml');
    fs.copyFileSync(path.join(repo, 'routes.yaml'), file);
    const result = await loadConfig(file);
    if (!result.ok) throw new Error(result.errors.map(formatConfigError).join('\n'));
    const { config } = result;
    expect(result.file).toBe(file);
    expect(config.routes.map((r) => r.name)).toEqual(['demo', 'user-services', 'demo-tcp']);
    expect(config.tls.cert).toBe(path.join(site, 'certs/server.crt'));
    expect(config.tls.key).toBe(path.join(site, 'certs/server.key'));
    expect(config.tls.clientCa).toBe(path.join(site, 'certs/ca.crt'));
    expect(config.authz.rootKey).toBe(path.join(site, 'certs/token-root.pub'));
    expect(config.authz.revocationList).toBe(path.join(site, 'certs/revoked.txt'));
    expect(config.audit.file).toBe(path.join(site, 'audit/audit.log'));
    expect(config.routes[1]?.upstream).toBe(`unix:${path.join(site, 'run/users')}/{user}/{service}.sock`);
    expect(config.routes[1]?.socketOwner).toBe('user');
    expect(config.routes[2]?.path).toBe('/');
    expect(config.authz.limits).toEqual({ maxFacts: 1000, maxIterations: 100, maxTimeMicros: 10000, deadlineMs: 100 });
    expect(config.listen).toEqual([{ tcp: '127.0.0.1:8443' }]);
  });

  it('explains every key it sets with a comment above it, and every route key in the route key table', () => {
    const lines = fs.readFileSync(path.join(repo, 'routes.yaml'), 'utf8').split('\n');
    const routesAt = lines.indexOf('routes:');
    const table = lines.slice(0, routesAt).join('\n');
    for (const key of ['name', 'host', 'path', 'protocols', 'upstream', 'socketOwner', 'stripPrefix', 'forwardToken', 'policy', 'limits']) {
      expect(table, key).toMatch(new RegExp(`^#   ${key} +\\S`, 'm'));
    }
    lines.forEach((line, index) => {
      const key = /^\s*(?:- )?([A-Za-z]+):/.exec(line)?.[1];
      if (key === undefined || index > routesAt) return;
      expect(lines[index - 1], `comment above "${key}" (line ${index + 1})`).toMatch(/^\s*#/);
    });
    expect(lines.slice(routesAt).join('\n')).toMatch(/\/\/ allow if group\(/);
  });
});

describe('errors carry their line and key', () => {
  it('reports all of several different mistakes at once', async () => {
    const { errors } = await loadLines([
      ...header.slice(0, 6),
      '  minVersoin: TLSv1.3', //                                      7
      ...header.slice(6),
      ...route('a'), //                                                14-17
      '  - name: b', //                                                18
      '    path: /b/', //                                              19
      '    upstream: http://localhost:8080', //                        20
      '    policy: allow if user($u);', //                             21
      '  - name: a', //                                                22
      '    path: /c/', //                                              23
      '    upstream: unix:/run/c.sock', //                             24
      '    policy: |', //                                              25
      '      allow if user($u);', //                                   26
      '      allow if user($u) and;', //                               27
    ]);
    expect(brief(errors)).toEqual([
      '7:3 tls.minVersoin: unknown key "minVersoin" (did you mean "minVersion"?)',
      '20:15 routes[1].upstream: expected unix:/path, tcp:host:port, udp:host:port, unixgram:/path or published:USER/SERVICE',
      '22:11 routes[2].name: duplicate route name "a" (also routes[0])',
      '27:7 routes[2].policy: policy does not parse near "allow if user($u) and"',
    ]);
    expect(errors[1]?.file).toMatch(/routes\.yaml$/);
    expect(formatConfigError(errors[1] as ConfigError)).toMatch(/routes\.yaml:20:15: routes\[1\]\.upstream: expected unix:\/path, tcp:host:port, udp:host:port, unixgram:\/path or published:USER\/SERVICE$/);
  });

  it('bounds audit records: a cap under 4 KiB and a budget of zero are errors at their keys', async () => {
    const { errors } = await loadLines([...header.slice(0, 11), '  maxRecordBytes: 1000', '  refusalRecords:', '    anonymous: 0', ...header.slice(11), ...route('a')]);
    expect(brief(errors)).toEqual([expect.stringMatching(/^12:\d+ audit\.maxRecordBytes: /), expect.stringMatching(/^14:\d+ audit\.refusalRecords\.anonymous: /)]);
  });

  it('reports YAML syntax errors with their line', async () => {
    const { errors } = await loadLines([...header, ...route('a'), '  - name: [b', '    path: /b/']);
    expect(errors.length).toBeGreaterThan(0);
    expect(errors[0]?.key).toBe('(document)');
    expect(errors[0]?.message).toMatch(/^YAML syntax: /);
    expect(errors[0]?.line).toBeGreaterThanOrEqual(17);
  });

  it('reports a duplicated key as a syntax error at that key', async () => {
    const { errors } = await loadLines([...header.slice(0, 4), '  cert: other.crt', ...header.slice(4), ...route('a')]);
    expect(brief(errors)).toEqual(['5:3 (document): YAML syntax: Map keys must be unique']);
  });

  it('points a missing key at the mapping that lacks it', async () => {
    const { errors } = await loadLines([...header, '  - name: a', '    path: /a/', '    policy: "allow if true;"']);
    expect(brief(errors)).toEqual(['13:5 routes[0].upstream: missing required key "upstream"']);
  });

  it('checks templates, upstream parameters, socket owners, tunnels, hosts and policies', async () => {
    const { errors } = await loadLines([
      ...header,
      '  - name: t1', //                                           13
      '    path: /~{user}/{user}/', //                             14
      '    upstream: unix:run/x.sock', //                          15
      '    policy: "allow if user($u);"', //                       16
      '  - name: t2', //                                           17
      '    path: /~{user}/', //                                    18
      '    upstream: unix:run/{user}/{svc}.sock', //               19
      '    socketOwner: owner', //                                 20
      '    policy: "allow if user($u), param(\\"usr\\", $u);"', // 21
      '  - name: t3', //                                           22
      '    protocols: [tcp]', //                                   23
      '    upstream: unix:run/{user}.sock', //                     24
      '    policy: "deny if true;"', //                            25
      '  - name: t4', //                                           26
      '    path: /t4/', //                                         27
      '    host: "example.org:443"', //                            28
      '    upstream: tcp:localhost:70000', //                      29
      '    policy: "allow if user({u});"', //                      30
      '  - name: t5', //                                           31
      '    path: /x/../{a}{b}/', //                                32
      '    upstream: unix:../outside.sock', //                     33
      '    socketOwner: a', //                                     34
      '    policy: "allow if true;"', //                           35
    ]);
    expect(brief(errors)).toEqual([
      '14:11 routes[0].path: parameter {user} is captured twice',
      '19:15 routes[1].upstream: upstream uses {svc}, but the path does not capture it',
      '20:18 routes[1].socketOwner: socketOwner "owner" must be a captured parameter, but the path does not capture it',
      '21:13 routes[1].policy: policy tests param("usr", ...) but the path captures only {user}; it can never match',
      '24:15 routes[2].upstream: upstream uses {user}, but tcp tunnels name the route itself: give the route a tunnel: template that captures it, e.g. tunnel: "{service}.{user}"',
      '25:13 routes[2].policy: policy has no "allow if" rule: every request would be denied',
      '28:11 routes[3].host: "example.org:443" is not a host name (no port, no scheme, no path)',
      '29:15 routes[3].upstream: port 70000 is out of range 1..65535',
      '30:13 routes[3].policy: policy uses {u}, which is not filled in: declare it in authz.externalKeys to trust blocks signed by that key ("trusting {u}"); match path captures with param("name", $var)',
      '32:11 routes[4].path: two captures side by side ("}{") cannot be told apart',
      '33:15 routes[4].upstream: socket paths must not contain ".." segments',
    ]);
  });

  it('checks udp routes: protocols [udp] alone, a fixed udp: upstream, no http keys; accepts unixgram:', async () => {
    const { errors } = await loadLines([
      ...header,
      '  - name: dns', //                                          13
      '    protocols: [udp]', //                                   14
      '    upstream: udp:127.0.0.1:5353', //                       15
      '    idleTimeoutSeconds: 30', //                             16
      '    policy: "allow if user($u), protocol(\\"udp\\");"', // 17
      '  - name: mixed', //                                        18
      '    protocols: [udp, tcp]', //                              19
      '    upstream: unix:run/x.sock', //                          20
      '    policy: "allow if user($u);"', //                       21
      '  - name: web-to-udp', //                                   22
      '    path: /w/', //                                          23
      '    upstream: udp:127.0.0.1:70000', //                      24
      '    policy: "allow if user($u);"', //                       25
      '  - name: dgram', //                                        26
      '    protocols: [udp]', //                                   27
      '    upstream: unixgram:/run/x.sock', //                     28
      '    policy: "allow if user($u);"', //                       29
      '  - name: pathy', //                                        30
      '    protocols: [udp]', //                                   31
      '    path: /p/', //                                          32
      '    upstream: udp:localhost:53', //                         33
      '    policy: "allow if user($u);"', //                       34
    ]);
    expect(brief(errors)).toEqual([
      '19:16 routes[1].protocols: udp routes carry datagrams only: protocols: [udp] alone',
      '20:15 routes[1].upstream: a udp route needs a udp:host:port, unixgram:/path or published:USER/SERVICE upstream',
      '24:15 routes[2].upstream: port 70000 is out of range 1..65535',
      '24:15 routes[2].upstream: a udp: upstream needs protocols: [udp]',
      '32:11 routes[4].path: path has no effect on a udp route: flows name the route itself and carry datagrams',
    ]);
  });

  it('checks unixgram: upstreams as unix: ones (captures of a tunnel: template, socketOwner), absolute and udp only', async () => {
    const { errors } = await loadLines([
      ...header,
      '  - name: user-dgram', //                                   13
      '    protocols: [udp]', //                                   14
      '    tunnel: "{service}.{user}"', //                         15
      '    upstream: unixgram:/home/{user}/run/{service}.dgram', // 16
      '    socketOwner: user', //                                  17
      '    policy: "allow if user($u);"', //                       18
      '  - name: no-capture', //                                   19
      '    protocols: [udp]', //                                   20
      '    upstream: unixgram:/home/{user}/d.sock', //             21
      '    socketOwner: user', //                                  22
      '    policy: "allow if user($u);"', //                       23
      '  - name: relative', //                                     24
      '    protocols: [udp]', //                                   25
      '    upstream: unixgram:run/../d.sock', //                   26
      '    policy: "allow if user($u);"', //                       27
      '  - name: stream-dgram', //                                 28
      '    protocols: [tcp]', //                                   29
      '    upstream: unixgram:/run/d.sock', //                     30
      '    policy: "allow if user($u);"', //                       31
    ]);
    expect(brief(errors)).toEqual([
      '21:15 routes[1].upstream: upstream uses {user}, but udp flows name the route itself: give the route a tunnel: template that captures it, e.g. tunnel: "{service}.{user}"',
      '22:18 routes[1].socketOwner: socketOwner "user" must be a captured parameter, but udp flows name the route itself: give the route a tunnel: template that captures it, e.g. tunnel: "{service}.{user}"',
      '26:15 routes[2].upstream: socket paths must not contain ".." segments',
      '26:15 routes[2].upstream: unixgram: paths are absolute (/run/service/dgram.sock)',
      '30:15 routes[3].upstream: a unixgram: upstream needs protocols: [udp]',
    ]);
  });

  it('refuses a templated unixgram: path without socketOwner, warns for such a unix: path, takes unixgramReplies on unixgram: routes only, and warns where a socketOwner\'s service could not answer without it', async () => {
    const { errors, warnings } = await loadLines([
      ...header,
      '  - name: open-dgram', //                                   13
      '    protocols: [udp]', //                                   14
      '    tunnel: "{service}.{user}"', //                         15
      '    upstream: unixgram:/home/{user}/run/{service}.dgram', // 16
      '    policy: "allow if user($u);"', //                       17
      '  - name: open-stream', //                                  18
      '    path: /~{user}/', //                                    19
      '    upstream: unix:/tmp/{user}.sock', //                    20
      '    policy: "allow if user($u);"', //                       21
      '  - name: shared-dgram', //                                 22
      '    protocols: [udp]', //                                   23
      '    tunnel: "{user}.dgram"', //                             24
      '    upstream: unixgram:/home/{user}/d.sock', //             25
      '    socketOwner: user', //                                  26
      '    unixgramReplies: any-local-user', //                    27
      '    policy: "allow if user($u);"', //                       28
      '  - name: stream-replies', //                               29
      '    path: /s/', //                                          30
      '    upstream: unix:/tmp/s.sock', //                         31
      '    unixgramReplies: any-local-user', //                    32
      '    policy: "allow if user($u);"', //                       33
      '  - name: bad-replies', //                                  34
      '    protocols: [udp]', //                                   35
      '    upstream: unixgram:/run/d.sock', //                     36
      '    unixgramReplies: everyone', //                          37
      '    policy: "allow if user($u);"', //                       38
      '  - name: owner-dgram', //                                  39
      '    protocols: [udp]', //                                   40
      '    tunnel: "{user}.owned"', //                             41
      '    upstream: unixgram:/home/{user}/d.sock', //             42
      '    socketOwner: user', //                                  43
      '    policy: "allow if user($u);"', //                       44
    ]);
    expect(brief(errors)).toEqual([
      "16:15 routes[0].upstream: a unixgram: path with a {param} is a user's to change: add socketOwner (the parameter naming the user who must own the socket), or the gateway follows their symlinks to any socket it can send to",
      '32:22 routes[3].unixgramReplies: unixgramReplies needs a unixgram: upstream',
      '37:22 routes[4].unixgramReplies: Invalid option: expected one of "gateway-user"|"any-local-user"',
    ]);
    expect(brief(warnings)).toEqual([
      "20:15 routes[1].upstream: a unix: path with a {param} is a user's to change: without socketOwner the gateway follows their symlinks to any socket it can connect to; add socketOwner (the parameter naming the user who must own the socket)",
      "42:15 routes[5].upstream: a service run by its socketOwner answers as that user, and only the gateway's user and root can send to a flow's socket: its answers are refused unless the route sets unixgramReplies: any-local-user (which lets every local user reach the flow's socket)",
    ]);
  });

  it('finds routes on the same host and path, and duplicate or invalid listeners', async () => {
    const { errors } = await loadLines([
      'listen:', //                                 1
      '  - tcp: 127.0.0.1:8443', //                 2
      '  - tcp: 127.0.0.1:8443', //                 3
      '  - tcp: "[::1]:99999"', //                  4
      '  - unix: run/g.sock', //                    5
      '  - unix: ./run/g.sock', //                  6
      ...header.slice(2),
      ...route('a'), //                             17-20
      '  - name: b', //                             21
      '    path: /a/', //                           22
      '    protocols: [websocket]', //              23
      '    upstream: unix:run/x.sock', //           24
      '    policy: "allow if true;"', //            25
    ]);
    expect(brief(errors)).toEqual([
      '3:5 listen[1]: duplicate listener (same as listen[0])',
      '4:10 listen[2].tcp: port 99999 is out of range 0..65535',
      '6:5 listen[4]: duplicate listener (same as listen[3])',
      '22:11 routes[1].path: same host and path as routes[0]: requests could reach only one of them',
    ]);
  });
  it('keeps only the route limits written, so the others come from authz.limits', async () => {
    const dir = tempDir();
    fs.cpSync(path.join(site, 'certs'), path.join(dir, 'certs'), { recursive: true });
    const file = path.join(dir, 'routes.yaml');
    fs.writeFileSync(file, [...header, ...route('a', ['    limits: { maxFacts: 2000 }']), ...route('b')].join('\n'));
    const result = await loadConfig(file);
    if (!result.ok) throw new Error(result.errors.map(formatConfigError).join('\n'));
    expect(result.config.routes[0]?.limits).toEqual({ maxFacts: 2000 });
    expect(result.config.routes[1]?.limits).toBeUndefined();
  });

  it('explains that an unquoted socket mode is read as a number', async () => {
    const { errors } = await loadLines(['listen:', '  - unix: run/g.sock', '    mode: 0660', ...header.slice(2), ...route('a')]);
    expect(brief(errors)).toEqual(['3:11 listen[0].mode: expected a string, got a number (660); put it in quotes']);
  });
});

describe('files named by the config', () => {
  it('reports a missing file at its key, and a missing revocation list as deny-all', async () => {
    const lines = [...header, ...route('a')];
    lines[5] = '  clientCa: certs/missing-ca.crt';
    lines[8] = '  revocationList: certs/nope.txt';
    const { file, errors } = await loadLines(lines);
    const dir = path.dirname(file);
    expect(brief(errors)).toEqual([
      `6:13 tls.clientCa: cannot read ${path.join(dir, 'certs/missing-ca.crt')}: no such file`,
      `9:19 authz.revocationList: cannot read ${path.join(dir, 'certs/nope.txt')}: no such file: the gateway would deny every request`,
    ]);
  });

  it('reports a key that does not match the certificate, and a private root key', async () => {
    const lines = [...header, ...route('a')];
    lines[4] = '  key: certs/ca.key';
    lines[7] = '  rootKey: certs/token-root.private';
    const { errors } = await loadLines(lines);
    expect(brief(errors)).toEqual([
      '5:8 tls.key: this private key does not belong to the certificate in tls.cert',
      '8:12 authz.rootKey: this file holds a PRIVATE key; authz.rootKey must be the public key (ed25519/<hex>)',
    ]);
  });

  it('refuses a server key every local user can read, and allows group read (0640, the ssl-cert group)', async () => {
    const dir = tempDir();
    fs.cpSync(path.join(site, 'certs'), path.join(dir, 'certs'), { recursive: true });
    const file = path.join(dir, 'routes.yaml');
    fs.writeFileSync(file, [...header, ...route('a')].join('\n') + '\n');
    fs.chmodSync(path.join(dir, 'certs/server.key'), 0o644);
    const loaded = await loadConfig(file);
    expect(loaded.ok ? [] : brief(loaded.errors)).toEqual([
      "5:8 tls.key: the server's private key can be read by every user (mode 0644); chmod o-r it",
    ]);
    fs.chmodSync(path.join(dir, 'certs/server.key'), 0o640);
    expect((await loadConfig(file)).ok).toBe(true);
  });

  it('rejects unparsable certificates, bare-hex root keys and bad revocation list lines', async () => {
    const dir = tempDir();
    fs.cpSync(path.join(site, 'certs'), path.join(dir, 'certs'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'certs/ca.crt'), 'not a certificate\n');
    const publicKey = fs.readFileSync(path.join(dir, 'certs/token-root.pub'), 'utf8').trim();
    fs.writeFileSync(path.join(dir, 'certs/token-root.pub'), publicKey.replace('ed25519/', ''));
    fs.writeFileSync(path.join(dir, 'certs/revoked.txt'), `# revoked 2026-11-02\n${'ab'.repeat(64)}\n${'cd'.repeat(64)} # bob\n`);
    const file = path.join(dir, 'routes.yaml');
    fs.writeFileSync(file, [...header, ...route('a')].join('\n'));
    const result = await loadConfig(file);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.map(formatConfigError)).toEqual([
      `${file}:6:13: tls.clientCa: no PEM certificate (BEGIN CERTIFICATE) in the file`,
      `${file}:8:12: authz.rootKey: expected ed25519/<64 hex digits> (the public key from "gatehouse token keygen")`,
      `${path.join(dir, 'certs/revoked.txt')}:3:1: authz.revocationList: expected one revocation id (hex) per line; comments go on their own line starting with "#"`,
    ]);
  });
});

describe('gatehouse check', () => {
  function check(cwd: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
    const run = spawnSync(process.execPath, [path.join(repo, 'bin/gatehouse.js'), 'check', ...args], { cwd, encoding: 'utf8' });
    return { status: run.status, stdout: run.stdout, stderr: run.stderr };
  }

  it('prints OK and exits 0 for a valid config', () => {
    fs.copyFileSync(path.join(repo, 'routes.yaml'), path.join(site, 'routes.yaml'));
    const run = check(site, '--config', 'routes.yaml');
    expect(run.stderr).not.toMatch(/routes\.yaml:\d/);
    expect(run.stdout).toMatch(/^routes\.yaml: OK \(3 routes\)$/m);
    expect(run.status).toBe(0);
  });

  it('prints every error on stderr, one per line, and exits 1', () => {
    const dir = tempDir();
    fs.cpSync(path.join(site, 'certs'), path.join(dir, 'certs'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'run'));
    const lines = [...header, ...route('a'), ...route('a', ['    bogus: 1'])];
    fs.writeFileSync(path.join(dir, 'bad.yaml'), lines.join('\n'));
    const run = check(dir, '--config', 'bad.yaml');
    const reported = run.stderr.split('\n').filter((l) => l.startsWith('bad.yaml:'));
    expect(reported).toEqual([
      'bad.yaml:17:11: routes[1].name: duplicate route name "a" (also routes[0])',
      'bad.yaml:18:11: routes[1].path: same host and path as routes[0]: requests could reach only one of them',
      'bad.yaml:20:5: routes[1].bogus: unknown key "bogus" (expected one of: name, host, path, protocols, upstream, tunnel, socketOwner, unixgramReplies, stripPrefix, forwardToken, policy, limits, idleTimeoutSeconds, connectTimeoutSeconds)',
    ]);
    expect(run.stdout).not.toMatch(/OK/);
    expect(run.status).toBe(1);
  });

  it('names an audit signing key the running user cannot read, or that is not an ed25519 key', () => {
    const dir = tempDir();
    fs.cpSync(site, dir, { recursive: true });
    fs.copyFileSync(path.join(repo, 'routes.yaml'), path.join(dir, 'routes.yaml'));
    fs.rmSync(path.join(dir, 'certs', 'audit-signing.key'));
    expect(check(dir, '--config', 'routes.yaml').stderr).toMatch(/^routes\.yaml:\d+:\d+: audit\.signingKey: cannot read .*audit-signing\.key: no such file: the gateway would not start$/m);
    fs.copyFileSync(path.join(dir, 'certs', 'server.key'), path.join(dir, 'certs', 'audit-signing.key'));
    const wrongType = check(dir, '--config', 'routes.yaml');
    expect(wrongType.stderr).toMatch(/audit\.signingKey: expected an ed25519 private key .*found ec$/m);
    expect(wrongType.status).toBe(1);
  });

  it.skipIf(process.getuid?.() !== 0 || !fs.existsSync('/usr/bin/setpriv'))('as the gateway user: a signing key only root may read is named (needs root and setpriv)', () => {
    const dir = tempDir();
    fs.cpSync(site, dir, { recursive: true });
    fs.copyFileSync(path.join(repo, 'routes.yaml'), path.join(dir, 'routes.yaml'));
    fs.chmodSync(dir, 0o755);
    for (const f of fs.readdirSync(path.join(dir, 'certs'))) fs.chmodSync(path.join(dir, 'certs', f), 0o644);
    fs.chmodSync(path.join(dir, 'certs'), 0o755);
    fs.chmodSync(path.join(dir, 'certs', 'audit-signing.key'), 0o600);
    const run = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, path.join(repo, 'bin/gatehouse.js'), 'check', '--config', 'routes.yaml'], { cwd: dir, encoding: 'utf8' });
    expect(run.stderr).toMatch(/audit\.signingKey: cannot read .*audit-signing\.key: permission denied: the gateway would not start/);
    expect(run.status).toBe(1);
  });

  it('reports an unreadable config file as one error', () => {
    const run = check(tempDir(), '--config', 'absent.yaml');
    expect(run.stderr).toMatch(/^absent\.yaml: \(document\): cannot read config: no such file$/m);
    expect(run.status).toBe(1);
  });

  it('has help text', () => {
    const run = check(repo, '--help');
    expect(run.stdout).toMatch(/--config <file>/);
    expect(run.stdout).toMatch(/routes\.yaml:12:5: routes\[2\]\.upstream/);
    expect(run.status).toBe(0);
  });
});
