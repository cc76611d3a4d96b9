// `gatehouse login` end to end: the CLI as a child process runs the device flow through a real gateway's
// issuer, the approval is given in headless Chromium on the real IdP's pages, the token file appears 0600,
// `gatehouse tunnel` uses it and renews it before its 60 s run out, and `gatehouse logout` ends it at once.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import type { Server } from 'node:net';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cliNode, startHarness, type Harness } from './support/gatewayHarness.ts';
import { approveInBrowser, chromiumMissing, launchIdpBrowser } from './support/idpBrowser.ts';
import { writeIssuerKey } from './support/issuerFixtures.ts';
import { startOidcProvider, testAccounts, type TestOidcProvider } from './support/oidcProvider.ts';
import { makeTestPki, type TestClientCertificate, type TestPki } from './support/pki.ts';
import { startStrictLoginPeer } from './support/strictLoginPeer.ts';
import { publishedRoute, publishTop, startPublisher, type PublisherProcess } from './support/publishPeers.ts';
import { writeTokenFile, type LoginFacts } from '../src/client/tokenFile.ts';
import { cleanEnv, echoHandler, listenUnix, runTunnel, startTunnel, writeToken, type TunnelProcess } from './support/tunnelClient.ts';

const suite = chromiumMissing ? describe.skip : describe;
const title = chromiumMissing ? 'gatehouse login (skipped: chromium not installed)' : 'gatehouse login, tunnel, renewal, logout';

let pki: TestPki;
let idp: TestOidcProvider;
let h: Harness;
let alice: TestClientCertificate;
let echo: Server;
let browser: Browser | undefined;
const children: ChildProcess[] = [];
const tunnels: TunnelProcess[] = [];
const publishers: PublisherProcess[] = [];

const routes = `  - name: echo
    protocols: [tcp]
    upstream: unix:run/echo.sock
    policy: |
      allow if user($u), signer("idp");
${publishedRoute}`;

/** The site's rules for this test: hpc (alice and bob) may reach any route the policies allow, and publish, with tokens of one minute. */
function issuerBlock(keyFile: string): string {
  return `issuer:
  name: idp
  keyId: 1
  signingKey: ${keyFile}
  provider:
    url: ${idp.issuer}
    clientId: ${idp.deviceClientId}
    ca: ${pki.caCertPath}
  groups:
    hpc:
      # Any route: a token limited to a list of routes cannot publish (the registration is authorized as route "publish").
      routes: ['*']
      publish: ['*']
      maxTtl: 1m
${publishTop}`;
}

beforeAll(async () => {
  const base = mkdtempSync(join(tmpdir(), 'gatehouse-login-'));
  pki = await makeTestPki(join(base, 'certs'));
  idp = await startOidcProvider(pki, { deviceIntervalSeconds: 1 });
  const key = writeIssuerKey(base);
  h = await startHarness({ pki, routes, extraTop: issuerBlock(join(base, 'issuer.key')), authzExtra: `  issuers:\n    idp:\n      keyId: 1\n      publicKey: ${key.publicKey}\n` });
  alice = await h.pki.client('alice');
  echo = await listenUnix(join(h.dir, 'run', 'echo.sock'), echoHandler);
  if (!chromiumMissing) browser = await launchIdpBrowser(pki.serverCertPath);
}, 60_000);

afterAll(async () => {
  for (const t of tunnels) await t.stop('SIGKILL');
  for (const p of publishers) await p.stop('SIGKILL');
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await browser?.close();
  echo?.close();
  await h?.stop();
  await idp?.stop();
});

/** The flags that reach the gateway with alice's certificate (no token: login gets it, tunnel reads the default file). */
const aliceFlags = () => ['--gateway', `https://localhost:${h.port}`, '--ca', h.pki.caCertPath, '--cert', alice.certPath, '--key', alice.keyPath];

interface Cli {
  proc: ChildProcess;
  stderr(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  exited: Promise<number | null>;
}

/** Runs `gatehouse ARGS` as a child process, its stderr collected. */
function gatehouse(args: string[], env: NodeJS.ProcessEnv): Cli {
  const proc = spawn(cliNode, [cli, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(proc);
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return {
    proc,
    stderr: () => err,
    exited,
    async waitFor(pattern, timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const m = pattern.exec(err);
        if (m) return m;
        if (Date.now() > until || proc.exitCode !== null) throw new Error(`stderr never matched ${pattern}:\n${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

/** Sends `text` through a local tunnel port and reads what comes back (nothing when the gateway refused). */
function through(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString()));
    socket.on('error', () => {});
    socket.on('close', () => resolve(got));
    socket.end(text);
  });
}

interface StoredLogin {
  token: string;
  user: string;
  expiresAt: string;
  revocationId: string;
}

suite(title, () => {
  it('alice logs in (approved in Chromium), tunnels with the token file, outlives its 60 s by renewal, and logout ends it at once', async () => {
    const [aliceAccount] = testAccounts;
    if (aliceAccount === undefined || browser === undefined) throw new Error('no account or browser');
    const home = mkdtempSync(join(tmpdir(), 'gatehouse-login-home-'));
    const env = cleanEnv(home);
    const tokenFile = join(home, '.config', 'gatehouse', 'token');

    const login = gatehouse(['login', '--no-browser', ...aliceFlags()], env);
    const url = (await login.waitFor(/^gatehouse login: url: (\S+)$/m))[1] ?? '';
    expect(login.stderr()).toMatch(/^gatehouse login: code: [A-Z0-9-]+$/m);
    const approval = await approveInBrowser(browser, url, aliceAccount);
    expect(approval.finalText).toMatch(/success/i);
    expect(await login.exited).toBe(0);
    expect(login.stderr()).toMatch(/logged in as alice through https:\/\/localhost:\d+; token saved in /);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(home, '.config', 'gatehouse')).mode & 0o777).toBe(0o700);
    const first = JSON.parse(readFileSync(tokenFile, 'utf8')) as StoredLogin;
    expect(first.user).toBe('alice');
    const life = Date.parse(first.expiresAt) - Date.now();
    expect(life).toBeLessThanOrEqual(60_000);

    // A tunnel to a socket route and to alice's own published service; the publisher runs on the same token file.
    const publisher = startPublisher([...aliceFlags(), `echo/tcp=unix:${join(h.dir, 'run', 'echo.sock')}`], env);
    publishers.push(publisher);
    await publisher.waitForStderr(/published as alice through/);
    const tunnel = await startTunnel([...aliceFlags(), '-L', '0:echo', '-L', '0:echo.alice'], env, 2);
    tunnels.push(tunnel);
    const [direct, published] = [tunnel.ready[0]?.port ?? 0, tunnel.ready[1]?.port ?? 0];
    expect(await through(direct, 'hello')).toBe('hello');
    expect(await through(published, 'hello published')).toBe('hello published');

    // Renewed at about 2/3 of its life; connections opened after the first token ended still get through.
    // One of the two commands sharing the file asks the gateway; the other takes the file it wrote.
    await tunnel.waitForStderr(/token renewed (through https:\/\/localhost:\d+|by another command \(read from [^)]*\)); valid until/, 70_000);
    // The publisher registers again with the new token before the gateway's re-authorization would end the old registration.
    await publisher.waitForStderr(/token renewed[^\n]*\n[\s\S]*re-registered as alice/, 70_000);
    expect(`${tunnel.stderr()}${publisher.stderr()}`.match(/token renewed through https:\/\/localhost:\d+/g)).toHaveLength(1);
    const renewed = JSON.parse(readFileSync(tokenFile, 'utf8')) as StoredLogin;
    expect(renewed.token).not.toBe(first.token);
    expect(Date.parse(renewed.expiresAt)).toBeGreaterThan(Date.parse(first.expiresAt));
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(first.expiresAt) - Date.now() + 1_500)));
    expect(await through(direct, 'after the first token ended')).toBe('after the first token ended');
    expect(await through(published, 'published, after the first token ended')).toBe('published, after the first token ended');

    // Logout revokes every token of the login: the running tunnel's next connection is refused, the publisher is ended.
    const logout = gatehouse(['logout', ...aliceFlags()], env);
    expect(await logout.exited).toBe(0);
    expect(logout.stderr()).toMatch(/^gatehouse logout: revoked \d+ token\(s\) of this login at https:\/\/localhost:\d+; removed /m);
    expect(existsSync(tokenFile)).toBe(false);
    expect(await through(direct, 'after logout')).toBe('');
    await h.waitForAudit((r) => r.event === 'request' && r.method === 'CONNECT' && r.decision === 'deny' && / is revoked$/.test(r.reason ?? ''), 10_000);
    expect(publisher.proc.exitCode ?? (await new Promise((resolve) => publisher.proc.once('exit', resolve)))).toBe(4);
    const again = gatehouse(['logout', ...aliceFlags()], env);
    expect(await again.exited).toBe(0);
    expect(again.stderr()).toBe(`gatehouse logout: no token file at ${tokenFile}: not logged in\n`);
  }, 150_000);

  it('a refused renewal says "log in again" once; the running tunnel takes the token of a new gatehouse login', async () => {
    const [aliceAccount] = testAccounts;
    if (aliceAccount === undefined || browser === undefined) throw new Error('no account or browser');
    const home = mkdtempSync(join(tmpdir(), 'gatehouse-login-home-'));
    const env = cleanEnv(home);
    const logIn = async (ttl: string) => {
      const login = gatehouse(['login', '--no-browser', '--ttl', ttl, ...aliceFlags()], env);
      await approveInBrowser(browser as Browser, (await login.waitFor(/^gatehouse login: url: (\S+)$/m))[1] ?? '', aliceAccount);
      expect(await login.exited).toBe(0);
    };
    await logIn('12s');
    const tunnel = await startTunnel([...aliceFlags(), '-L', '0:echo'], env);
    tunnels.push(tunnel);
    const port = tunnel.ready[0]?.port ?? 0;
    expect(await through(port, 'one')).toBe('one');
    // Logged out elsewhere: the tunnel's renewal (due 7 s into the 12 s) is refused.
    expect(await gatehouse(['logout', ...aliceFlags()], env).exited).toBe(0);
    await tunnel.waitForStderr(/refused to renew the token: [^\n]*; log in again: gatehouse login \(the current token works until \S+\)/, 30_000);
    await logIn('1m');
    await tunnel.waitForStderr(/token replaced by a new login \(read from [^)]*\); valid until/, 30_000);
    expect(await through(port, 'two')).toBe('two');
    expect(tunnel.stderr().match(/log in again/g)).toHaveLength(1);
  }, 120_000);

  it("refuses IdP user bob signing in for alice's certificate: exit 4, the issuer's words, no token file", async () => {
    const bob = testAccounts[1];
    if (bob === undefined || browser === undefined) throw new Error('no account or browser');
    const home = mkdtempSync(join(tmpdir(), 'gatehouse-login-home-'));
    const login = gatehouse(['login', '--no-browser', ...aliceFlags()], cleanEnv(home));
    const url = (await login.waitFor(/^gatehouse login: url: (\S+)$/m))[1] ?? '';
    await approveInBrowser(browser, url, bob);
    expect(await login.exited).toBe(4);
    expect(login.stderr()).toMatch(/^gatehouse login: error: your login does not match your client certificate \(GH_ISSUE_CERTIFICATE_MISMATCH\)$/m);
    expect(existsSync(join(home, '.config', 'gatehouse', 'token'))).toBe(false);
  }, 60_000);
});

describe('the token file, read by tunnel and logout', () => {
  it('refuses a token file that others can read, naming the file and the cure', async () => {
    const home = mkdtempSync(join(tmpdir(), 'gatehouse-login-home-'));
    const file = writeToken(h, join(home, '.config', 'gatehouse', 'token'), 'alice');
    chmodSync(file, 0o640);
    const r = await runTunnel([...aliceFlags(), '--stdio', 'echo'], cleanEnv(home));
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`error: token file ${file} can be read by other users (mode 0640): refusing to use it; chmod 600 it (and ask for a new token if others may have read it)\n`);
  });

  it('says "log in again" for a login whose token ended, and logout leaves a token it did not get alone', async () => {
    const home = mkdtempSync(join(tmpdir(), 'gatehouse-login-home-'));
    const file = join(home, '.config', 'gatehouse', 'token');
    const login: LoginFacts = { gateway: `https://localhost:${h.port}`, user: 'alice', obtainedAt: '2026-01-01T00:00:00.000Z', expiresAt: '2026-01-01T00:01:00.000Z', refreshUntil: '2026-01-01T08:00:00.000Z', revocationId: 'ab'.repeat(32) };
    writeTokenFile(file, { token: 'En0KEwoFYWxpY2UYAyIICgYIBBIC', login });
    const ended = await runTunnel([...aliceFlags(), '--stdio', 'echo'], cleanEnv(home));
    expect([ended.code, ended.stderr]).toEqual([2, `error: the token in ${file} (gatehouse login as alice) ended at 2026-01-01T00:01:00.000Z: log in again: gatehouse login\n`]);
    writeToken(h, file, 'alice');
    const logout = gatehouse(['logout', ...aliceFlags()], cleanEnv(home));
    expect(await logout.exited).toBe(2);
    expect(logout.stderr()).toContain(`error: the token in ${file} was not obtained with gatehouse login; it is left as it is`);
    expect(existsSync(file)).toBe(true);
  });
});

describe('gatehouse login against a strict login endpoint', () => {
  it('slows down when told (slow_down raises its interval) and saves the token only once it is given', async () => {
    const peer = await startStrictLoginPeer(pki);
    try {
      const home = mkdtempSync(join(tmpdir(), 'gatehouse-login-home-'));
      mkdirSync(join(home, 'xdg'), { mode: 0o700 });
      const login = gatehouse(['login', '--no-browser', '--gateway', `https://localhost:${peer.port}`, '--ca', pki.caCertPath, '--cert', alice.certPath, '--key', alice.keyPath], cleanEnv(home, { XDG_CONFIG_HOME: join(home, 'xdg') }));
      expect(await login.exited).toBe(0);
      expect(login.stderr()).toContain('gatehouse login: the gateway asked to poll more slowly: every 2 s');
      expect(peer.early).toBe(0);
      expect(peer.polls).toBe(3);
      const stored = JSON.parse(readFileSync(join(home, 'xdg', 'gatehouse', 'token'), 'utf8')) as StoredLogin;
      expect(stored).toMatchObject({ user: 'alice', token: 'En0KEwoFYWxpY2UYAyIICgYIBBIC' });
    } finally {
      peer.server.close();
    }
  }, 60_000);
});
