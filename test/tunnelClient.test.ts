// `gatehouse tunnel`, the client: where its settings come from, how -L is read, private UNIX sockets,
// and, through a real `gatehouse serve`, what the user sees: ready lines, refusals, TLS errors, exit codes.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveClientSettings } from '../src/client/clientSettings.ts';
import { parseForwardSpec } from '../src/client/forwardSpec.ts';
import { preparePrivateSocketPath } from '../src/client/privateSocket.ts';
import { startHarness, type Harness } from './support/gatewayHarness.ts';
import { makeTestPki, type TestClientCertificate } from './support/pki.ts';
import { cleanEnv, countHandler, echoHandler, gatewayFlags, listenUnix, runTunnel, startTunnel, writeToken } from './support/tunnelClient.ts';

const isRoot = process.getuid?.() === 0;

let h: Harness;
let alice: TestClientCertificate;
let home: string;
let env: NodeJS.ProcessEnv;
let tokenFile: string;
const servers: Server[] = [];

const routes = `  - name: echo
    protocols: [tcp]
    upstream: unix:run/echo.sock
    policy: |
      allow if user($u);
  - name: count
    protocols: [tcp]
    upstream: unix:run/count.sock
    policy: |
      allow if user($u);
  - name: secret
    protocols: [tcp]
    upstream: unix:run/echo.sock
    policy: |
      allow if user("admin");
  - name: flood
    protocols: [tcp]
    upstream: unix:run/flood.sock
    policy: |
      allow if user($u);
  - name: greet
    protocols: [tcp]
    upstream: unix:run/greet.sock
    policy: |
      allow if user($u);
  - name: late
    protocols: [tcp]
    upstream: unix:run/late.sock
    policy: |
      allow if user($u);
`;

/**
 * Sends `data` to a local listener, half-closes, and collects everything until the other side ends.
 * A refused tunnel shows as no data (the client drops the connection, possibly with a reset).
 */
function exchange(target: { port?: number; path?: string }, data: Buffer | string): Promise<Buffer> {
  return new Promise((ok) => {
    const socket = target.path ? connect(target.path) : connect(target.port ?? 0, '127.0.0.1');
    const got: Buffer[] = [];
    socket.on('data', (d: Buffer) => got.push(d));
    socket.on('error', () => {});
    socket.on('close', () => ok(Buffer.concat(got)));
    socket.end(data);
  });
}

beforeAll(async () => {
  h = await startHarness({ routes });
  alice = await h.pki.client('alice');
  home = mkdtempSync(join(tmpdir(), 'gatehouse-home-'));
  env = cleanEnv(home);
  tokenFile = writeToken(h, join(home, 'alice.token'), 'alice');
  servers.push(await listenUnix(join(h.dir, 'run', 'echo.sock'), echoHandler));
  servers.push(await listenUnix(join(h.dir, 'run', 'count.sock'), countHandler));
  servers.push(await listenUnix(join(h.dir, 'run', 'flood.sock'), floodHandler));
  // Speaks first (as sshd and SMTP do): its greeting may reach the client with the CONNECT answer.
  servers.push(await listenUnix(join(h.dir, 'run', 'greet.sock'), (socket) => {
    socket.write('hello from the service\n');
    echoHandler(socket);
  }));
});

/** Bytes the flood service managed to hand to its socket, per connection. */
const flooded: number[] = [];
const FLOOD_LIMIT = 1 << 30;

/** Writes up to 1 GiB as fast as the tunnel takes it, counting what it could write. */
function floodHandler(socket: Socket): void {
  const index = flooded.push(0) - 1;
  const chunk = Buffer.alloc(64 << 10, 'f');
  socket.on('error', () => {});
  const pump = () => {
    while ((flooded[index] as number) < FLOOD_LIMIT && !socket.destroyed) {
      flooded[index] = (flooded[index] as number) + chunk.length;
      if (!socket.write(chunk)) return void socket.once('drain', pump);
    }
    socket.end();
  };
  pump();
}

afterAll(async () => {
  for (const s of servers) s.close();
  await h?.stop();
});

describe('-L specifications', () => {
  it('reads ports, addresses, IPv6 and UNIX paths, defaulting to 127.0.0.1', () => {
    expect(parseForwardSpec('8888:jupyter')).toEqual({ ok: true, spec: { kind: 'tcp', host: '127.0.0.1', port: 8888, route: 'jupyter' } });
    expect(parseForwardSpec('0.0.0.0:0:db')).toEqual({ ok: true, spec: { kind: 'tcp', host: '0.0.0.0', port: 0, route: 'db' } });
    expect(parseForwardSpec('[::1]:5432:pg')).toEqual({ ok: true, spec: { kind: 'tcp', host: '::1', port: 5432, route: 'pg' } });
    expect(parseForwardSpec('unix:/run/user/1000/a:b.sock:my-route.v2')).toEqual({ ok: true, spec: { kind: 'unix', path: '/run/user/1000/a:b.sock', route: 'my-route.v2' } });
    expect(parseForwardSpec('udp:5353:dns')).toEqual({ ok: true, spec: { kind: 'udp', host: '127.0.0.1', port: 5353, route: 'dns' } });
    expect(parseForwardSpec('udp:[::1]:0:dns')).toEqual({ ok: true, spec: { kind: 'udp', host: '::1', port: 0, route: 'dns' } });
    expect(parseForwardSpec('unixgram:/run/user/1000/log:dgram.sock:syslog')).toEqual({ ok: true, spec: { kind: 'unixgram', path: '/run/user/1000/log:dgram.sock', route: 'syslog' } });
  });

  it('refuses malformed specs with the reason', () => {
    const error = (s: string) => {
      const r = parseForwardSpec(s);
      return r.ok ? 'parsed' : r.error;
    };
    expect(error('jupyter')).toMatch(/expected \[ADDR:\]PORT:ROUTE, unix:PATH:ROUTE, udp:\[ADDR:\]PORT:ROUTE or unixgram:PATH:ROUTE/);
    expect(error('70000:db')).toMatch(/port 70000 is out of range/);
    expect(error('udp:70000:dns')).toMatch(/port 70000 is out of range/);
    expect(error('udp::dns')).toMatch(/expected \[ADDR:\]PORT:ROUTE/);
    expect(error('8888:bad/route')).toMatch(/invalid route name/);
    expect(error('unix::db')).toMatch(/empty socket path/);
    expect(error('unixgram::syslog')).toMatch(/empty socket path/);
    expect(error(`unixgram:/${'x'.repeat(120)}:syslog`)).toMatch(/limited to 107/);
    expect(error(`unix:/${'x'.repeat(120)}:db`)).toMatch(/limited to 107/);
    expect(error('[nope]:80:db')).toMatch(/not an IPv6 address/);
  });
});

describe('settings: flags > environment > config file', () => {
  let cfgDir: string;
  beforeAll(() => {
    cfgDir = join(home, '.config', 'gatehouse');
    mkdirSync(cfgDir, { recursive: true });
    copyFileSync(alice.certPath, join(cfgDir, 'alice.crt'));
    copyFileSync(alice.keyPath, join(cfgDir, 'alice.key'));
    copyFileSync(h.pki.caCertPath, join(cfgDir, 'ca.crt'));
    writeToken(h, join(cfgDir, 'token'), 'alice-default');
    writeToken(h, join(cfgDir, 'file.token'), 'alice-file');
    // The default config file, with paths relative to it.
    writeFileSync(join(cfgDir, 'client.yaml'), 'gateway: https://from-file.example:7001\ncert: alice.crt\nkey: alice.key\nca: ca.crt\ntokenFile: file.token\ntransport: websocket\n');
  });

  const resolve = (flags: Parameters<typeof resolveClientSettings>[0], extraEnv: Record<string, string> = {}) => {
    const r = resolveClientSettings(flags, cleanEnv(home, extraEnv));
    if (!r.ok) throw new Error(r.errors.join('\n'));
    return r.settings;
  };
  /** Which token file a token came from. */
  const tokenUser = (token: string) => {
    const files: Record<string, string> = { 'alice-default': join(cfgDir, 'token'), 'alice-file': join(cfgDir, 'file.token'), alice: tokenFile };
    return Object.keys(files).find((user) => readFileSync(files[user] as string, 'utf8').trim() === token) ?? 'other';
  };

  it('takes everything from the default config file, resolving its relative paths', () => {
    const s = resolve({});
    expect(s.gatewayLabel).toBe('https://from-file.example:7001');
    expect(s.transport).toBe('websocket');
    expect(s.cert.toString()).toBe(alice.cert);
    expect(tokenUser(s.token)).toBe('alice-file');
  });

  it('lets the environment override the file and flags override both', () => {
    const e = { GATEHOUSE_GATEWAY: 'https://from-env.example:7002', GATEHOUSE_TRANSPORT: 'connect' };
    expect(resolve({}, e).gatewayLabel).toBe('https://from-env.example:7002');
    expect(resolve({}, e).transport).toBe('connect');
    expect(resolve({ gateway: 'https://from-flag.example:7003', transport: 'websocket' }, e)).toMatchObject({ gatewayLabel: 'https://from-flag.example:7003', host: 'from-flag.example', port: 7003, transport: 'websocket' });
    expect(resolve({ gateway: 'https://gw.example' }).port).toBe(443);
  });

  it('finds the token: --token-file, then GATEHOUSE_TOKEN, GATEHOUSE_TOKEN_FILE, the file, the default', () => {
    const raw = readFileSync(tokenFile, 'utf8').trim();
    const defaultToken = join(cfgDir, 'token');
    expect(tokenUser(resolve({ tokenFile }, { GATEHOUSE_TOKEN: 'abc' }).token)).toBe('alice');
    expect(resolve({}, { GATEHOUSE_TOKEN: `Bearer ${raw}`, GATEHOUSE_TOKEN_FILE: defaultToken }).token).toBe(raw);
    expect(tokenUser(resolve({}, { GATEHOUSE_TOKEN_FILE: defaultToken }).token)).toBe('alice-default');
    expect(tokenUser(resolve({}).token)).toBe('alice-file');
    writeFileSync(join(home, 'empty.yaml'), '# nothing here\n');
    expect(tokenUser(resolve({ config: '~/empty.yaml' }, { GATEHOUSE_GATEWAY: 'https://x', GATEHOUSE_CERT: alice.certPath, GATEHOUSE_KEY: alice.keyPath }).token)).toBe('alice-default');
  });

  it('reports every problem at once, each saying what to do', () => {
    const r = resolveClientSettings({ gateway: 'http://gw.example:80', cert: join(home, 'missing.crt'), tokenFile: join(home, 'missing.token') }, cleanEnv(join(home, 'empty-home')));
    expect(r.ok).toBe(false);
    const errors = r.ok ? [] : r.errors;
    expect(errors).toContain('gateway "http://gw.example:80": the gateway speaks HTTPS only; expected https://HOST[:PORT], not http://');
    expect(errors).toContain(`client certificate ${join(home, 'missing.crt')} does not exist`);
    expect(errors.some((e) => e.startsWith('no client key: give --key FILE, set GATEHOUSE_KEY'))).toBe(true);
    expect(errors).toContain(`token file ${join(home, 'missing.token')} does not exist`);
  });

  it('checks files: unreadable token, not a token, a key of another certificate, unknown config keys', async () => {
    const base = { gateway: 'https://gw.example', cert: alice.certPath, key: alice.keyPath };
    const errorsOf = (flags: Parameters<typeof resolveClientSettings>[0]) => {
      const r = resolveClientSettings(flags, cleanEnv(home));
      return r.ok ? [] : r.errors;
    };
    expect(errorsOf({ ...base, tokenFile: home })).toEqual([`cannot read token file ${home}: EISDIR`]);
    writeFileSync(join(home, 'junk.token'), 'not a token!\n', { mode: 0o600 });
    expect(errorsOf({ ...base, tokenFile: join(home, 'junk.token') })).toEqual([`token file ${join(home, 'junk.token')} does not hold a token (expected one line of base64url text)`]);
    const bob = await h.pki.client('bob');
    expect(errorsOf({ ...base, key: bob.keyPath, tokenFile })).toEqual([`client key ${bob.keyPath} does not belong to certificate ${alice.certPath}`]);
    expect(errorsOf({ ...base, gateway: 'https://gw.example/some/path', tokenFile })[0]).toMatch(/without a path or query/);
    writeFileSync(join(home, 'bad.yaml'), 'gatway: https://x\ntransport: carrier-pigeon\n');
    const fileErrors = errorsOf({ config: join(home, 'bad.yaml') });
    expect(fileErrors).toContain(`${join(home, 'bad.yaml')}: unknown key "gatway" (expected: gateway, cert, key, ca, tokenFile, transport)`);
    expect(fileErrors).toContain(`${join(home, 'bad.yaml')}: transport: expected one of connect, websocket, http2`);
    expect(errorsOf({ config: join(home, 'absent.yaml') })).toEqual([`client config ${join(home, 'absent.yaml')} does not exist`]);
  });

  it('refuses a token file others can read, as ssh refuses such a key', () => {
    for (const mode of [0o644, 0o640, 0o604]) {
      const loose = join(home, `loose-${mode.toString(8)}.token`);
      copyFileSync(tokenFile, loose);
      chmodSync(loose, mode);
      const r = resolveClientSettings({ gateway: 'https://gw.example', cert: alice.certPath, key: alice.keyPath, tokenFile: loose }, cleanEnv(home));
      expect(r).toEqual({ ok: false, errors: [`token file ${loose} can be read by other users (mode 0${mode.toString(8)}): refusing to use it; chmod 600 it (and ask for a new token if others may have read it)`] });
    }
  });
});

describe('private UNIX socket paths', () => {
  it('creates a missing directory 0700, and refuses directories others can enter or own', async () => {
    const base = mkdtempSync(join(tmpdir(), 'gatehouse-sock-'));
    const created = await preparePrivateSocketPath(join(base, 'new', 'sub', 'a.sock'));
    expect(created.ok).toBe(true);
    expect(statSync(join(base, 'new', 'sub')).mode & 0o777).toBe(0o700);

    mkdirSync(join(base, 'open'), { mode: 0o755 });
    chmodSync(join(base, 'open'), 0o755);
    const open = await preparePrivateSocketPath(join(base, 'open', 'a.sock'));
    expect(open).toEqual({ ok: false, error: `refusing to create a socket in ${join(base, 'open')}: the directory has mode 0755, so other users can reach the socket (and your token's access); chmod 700 it or use a private directory` });
  });

  it.skipIf(!isRoot)('refuses a directory that belongs to another user (needs root to chown)', async () => {
    const base = mkdtempSync(join(tmpdir(), 'gatehouse-sock-'));
    mkdirSync(join(base, 'theirs'), { mode: 0o700 });
    chownSync(join(base, 'theirs'), 65534, 65534);
    const r = await preparePrivateSocketPath(join(base, 'theirs', 'a.sock'));
    expect(r.ok ? '' : r.error).toMatch(/the directory belongs to uid 65534, not to you/);
  });

  it('replaces a stale socket, but not a live one or a regular file', async () => {
    const base = mkdtempSync(join(tmpdir(), 'gatehouse-sock-'));
    chmodSync(base, 0o700);
    // A socket file nobody listens on: its process was killed before it could remove it.
    const stale = join(base, 'stale.sock');
    spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    expect(statSync(join(base, 'stale.sock')).isSocket()).toBe(true);
    expect(await preparePrivateSocketPath(join(base, 'stale.sock'))).toEqual({ ok: true, path: join(base, 'stale.sock') });
    expect(existsSync(join(base, 'stale.sock'))).toBe(false);

    const live = createServer();
    await new Promise<void>((ok) => live.listen(join(base, 'live.sock'), ok));
    expect(await preparePrivateSocketPath(join(base, 'live.sock'))).toEqual({ ok: false, error: `${join(base, 'live.sock')} is in use by another process` });
    live.close();
    writeFileSync(join(base, 'file.sock'), 'x');
    expect(await preparePrivateSocketPath(join(base, 'file.sock'))).toEqual({ ok: false, error: `${join(base, 'file.sock')} exists and is not a socket; refusing to replace it` });
  });
});

describe('through the gateway', () => {
  for (const transport of ['connect', 'websocket'] as const) {
    it(`${transport}: -L on a TCP port warns, says ready, and carries bytes with half-close`, async () => {
      const t = await startTunnel([...gatewayFlags(h, alice, tokenFile, transport), '-L', '0:echo', '-L', '127.0.0.1:0:count'], env, 2);
      try {
        expect(t.stderr()).toMatch(/^warning: 127\.0\.0\.1:\d+ is a TCP port: every local user on this machine can connect to it and use the tunnel with your credentials; on a shared machine use -L unix:PATH:echo instead$/m);
        expect(t.ready.map((r) => r.route)).toEqual(['echo', 'count']);
        expect(t.stderr()).toContain(`-> echo via https://localhost:${h.port} (${transport})`);
        const payload = Buffer.alloc(300_000, 'gatehouse ');
        expect((await exchange({ port: t.ready[0]?.port }, payload)).equals(payload)).toBe(true);
        // The count service answers only after our FIN reached it through the tunnel.
        const answer = (await exchange({ port: t.ready[1]?.port }, payload)).toString();
        expect(answer).toMatch(/^300000 [0-9a-f]{64}\n$/);
      } finally {
        expect(await t.stop()).toBe(0);
      }
    });
  }

  for (const transport of ['connect', 'websocket'] as const) {
    it(`${transport}: -L delivers what the service says first, then relays many chunks each way intact`, async () => {
      const t = await startTunnel([...gatewayFlags(h, alice, tokenFile, transport), '-L', '0:greet'], env);
      try {
        // Enough records, in uneven sizes, that reused read memory would show as corrupted bytes.
        const payload = Buffer.from(Array.from({ length: 3_000_001 }, (_, i) => (i * 7919) % 251));
        const got = await exchange({ port: t.ready[0]?.port }, payload);
        const greeting = Buffer.from('hello from the service\n');
        expect(got.subarray(0, greeting.length).toString()).toBe(greeting.toString());
        expect(got.subarray(greeting.length).equals(payload)).toBe(true);
      } finally {
        expect(await t.stop()).toBe(0);
      }
    });
  }

  it('-L unix: makes a 0600 socket, serves it, and removes it on SIGTERM', async () => {
    const dir = join(home, 'sockets');
    const path = join(dir, 'echo.sock');
    // ~ inside `unix:~/...` is not expanded by the shell; the client does it.
    const t = await startTunnel([...gatewayFlags(h, alice, tokenFile), '-L', 'unix:~/sockets/echo.sock:echo'], env);
    expect(t.ready[0]?.label).toBe(`unix:${path}`);
    expect(t.stderr()).not.toMatch(/warning/);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect((await exchange({ path }, 'over a private socket')).toString()).toBe('over a private socket');
    expect(await t.stop('SIGTERM')).toBe(0);
    expect(existsSync(path)).toBe(false);
  });

  it("shows the gateway's reason for 401, 403 and 404, and keeps listening", async () => {
    const t = await startTunnel([...gatewayFlags(h, alice, tokenFile), '-L', '0:secret', '-L', '0:nosuch', '-L', '0:echo', '--verbose'], env, 3);
    try {
      const [secret, nosuch, echo] = t.ready;
      expect(await exchange({ port: secret?.port }, 'x')).toHaveLength(0);
      await t.waitForStderr(/^error: \[\d+\] https:\/\/localhost:\d+ refused route secret: 403 access denied: "denied by policy" — the token does not allow this route for this certificate$/m);
      expect(await exchange({ port: nosuch?.port }, 'x')).toHaveLength(0);
      await t.waitForStderr(/refused route nosuch: 404 no such route: "no such route"/);
      // The same listener again, and its neighbour: nothing stopped.
      expect(await exchange({ port: secret?.port }, 'x')).toHaveLength(0);
      expect((await exchange({ port: echo?.port }, 'still here')).toString()).toBe('still here');
      await t.waitForStderr(/\] 127\.0\.0\.1:\d+ -> echo: closed; 10 B sent, 10 B received, [\d.]+ s$/m);
    } finally {
      await t.stop();
    }
    const junk = join(home, 'forged.token');
    writeFileSync(junk, 'En0KEwoFYWxpY2UYAyIICgYIBBICGAAS\n', { mode: 0o600 });
    const bad = await startTunnel([...gatewayFlags(h, alice, junk), '-L', '0:echo'], env);
    try {
      expect(await exchange({ port: bad.ready[0]?.port }, 'x')).toHaveLength(0);
      await bad.waitForStderr(/refused route echo: 401 not authenticated \(token missing, malformed or not signed by the site\): "invalid token" — check the token file/);
    } finally {
      await bad.stop();
    }
  });

  it('a tunnel whose service is down fails alone; the next one works once the service is up', async () => {
    const t = await startTunnel([...gatewayFlags(h, alice, tokenFile, 'websocket'), '-L', '0:late'], env);
    try {
      expect(await exchange({ port: t.ready[0]?.port }, 'x')).toHaveLength(0);
      await t.waitForStderr(/refused route late: 502 the gateway could not reach the service: "upstream unavailable"/);
      servers.push(await listenUnix(join(h.dir, 'run', 'late.sock'), echoHandler));
      expect((await exchange({ port: t.ready[0]?.port }, 'now up')).toString()).toBe('now up');
    } finally {
      await t.stop();
    }
  });

  for (const transport of ['connect', 'websocket'] as const) {
    it(`${transport}: --stdio carries stdin to the service and its answer to stdout, nothing else`, async () => {
      const r = await runTunnel([...gatewayFlags(h, alice, tokenFile, transport), '--stdio', 'count'], env, 'through stdio');
      expect(r.stderr).toBe('');
      expect(r.stdout.toString()).toMatch(/^13 [0-9a-f]{64}\n$/);
      expect(r.code).toBe(0);
    });
  }

  it('--stdio exit codes: 4 when refused, 3 when the gateway is unreachable, 2 for bad options', async () => {
    const denied = await runTunnel([...gatewayFlags(h, alice, tokenFile), '--stdio', 'secret'], env, 'x');
    expect(denied.code).toBe(4);
    expect(denied.stdout).toHaveLength(0);
    expect(denied.stderr).toMatch(/refused route secret: 403 access denied: "denied by policy"/);

    const closed = createServer();
    await new Promise<void>((ok) => closed.listen(0, '127.0.0.1', ok));
    const port = (closed.address() as { port: number }).port;
    closed.close();
    const flags = gatewayFlags(h, alice, tokenFile);
    flags[1] = `https://localhost:${port}`;
    const down = await runTunnel([...flags, '--stdio', 'echo'], env, 'x');
    expect(down.code).toBe(3);
    expect(down.stderr).toMatch(new RegExp(`^error: cannot connect to https://localhost:${port}: connection refused`));

    const badUrl = await runTunnel(['--gateway', 'gw.example:443', '--stdio', 'echo'], env);
    expect(badUrl.code).toBe(2);
    expect(badUrl.stderr).toContain('error: gateway "gw.example:443": the gateway speaks HTTPS only');
    const unreadable = await runTunnel([...gatewayFlags(h, alice, home), '--stdio', 'echo'], env);
    expect(unreadable.code).toBe(2);
    expect(unreadable.stderr).toBe(`error: cannot read token file ${home}: EISDIR\n`);
    const both = await runTunnel([...gatewayFlags(h, alice, tokenFile), '--stdio', 'echo', '-L', '0:echo'], env);
    expect([both.code, both.stderr]).toEqual([2, 'error: give either -L specs or --stdio ROUTE, not both\n']);
    const badSpec = await runTunnel([...gatewayFlags(h, alice, tokenFile), '-L', 'nonsense'], env);
    expect([badSpec.code, badSpec.stderr]).toEqual([2, 'error: -L "nonsense": expected [ADDR:]PORT:ROUTE, unix:PATH:ROUTE, udp:[ADDR:]PORT:ROUTE or unixgram:PATH:ROUTE\n']);
  });

  for (const transport of ['connect', 'websocket'] as const) {
    it(`${transport}: a local reader that stops reading holds back the service (backpressure, bounded memory)`, async () => {
      const t = await startTunnel([...gatewayFlags(h, alice, tokenFile, transport), '-L', '0:flood'], env);
      const reader = connect(t.ready[0]?.port as number, '127.0.0.1');
      reader.pause();
      try {
        await new Promise((r) => setTimeout(r, 1500));
        // Offered 1 GiB; what is in flight is only socket buffers and the high-water marks on the way.
        const inFlight = flooded.at(-1) ?? 0;
        expect(inFlight).toBeGreaterThan(0);
        expect(inFlight).toBeLessThan(64 << 20);
      } finally {
        reader.destroy();
        await t.stop();
      }
    });
  }

  it('on SIGTERM stops listening at once, lets an open tunnel go on for the grace period, then exits 0', async () => {
    const t = await startTunnel([...gatewayFlags(h, alice, tokenFile), '-L', '0:echo', '--grace-ms', '800'], env);
    const port = t.ready[0]?.port as number;
    const open = connect(port, '127.0.0.1');
    const echoed: string[] = [];
    open.on('data', (d: Buffer) => echoed.push(d.toString()));
    open.on('error', () => {});
    open.write('before;');
    await new Promise((r) => setTimeout(r, 300));
    const exited = new Promise<number | null>((ok) => t.proc.once('exit', ok));
    t.proc.kill('SIGTERM');
    await t.waitForStderr(/^SIGTERM: no longer accepting; letting open tunnels finish \(up to 0\.8 s\)$/m);
    const refused = await new Promise<string>((ok) => connect(port, '127.0.0.1').on('error', (e: NodeJS.ErrnoException) => ok(e.code ?? '')).on('connect', () => ok('accepted')));
    expect(refused).toBe('ECONNREFUSED');
    open.write('during grace');
    await new Promise((r) => setTimeout(r, 200));
    expect(echoed.join('')).toBe('before;during grace');
    expect(await exited).toBe(0);
  });

  it('explains TLS failures before saying ready: an untrusted gateway, a rejected client certificate', async () => {
    const other = await makeTestPki(join(h.dir, 'other-ca'));
    const wrongCa = gatewayFlags(h, alice, tokenFile);
    wrongCa[3] = other.caCertPath;
    const untrusted = await startTunnel([...wrongCa, '-L', '0:echo'], env);
    await untrusted.stop(); // a no-op unless it wrongly got ready
    expect(untrusted.proc.exitCode).toBe(3);
    expect(untrusted.stderr()).toMatch(/^error: TLS: the certificate of https:\/\/localhost:\d+ is not signed by a trusted CA \(\w+\); give the site's CA with --ca or GATEHOUSE_CA$/m);
    expect(untrusted.ready).toHaveLength(0);

    const stranger = await other.client('alice');
    const rejected = await startTunnel([...gatewayFlags(h, stranger, tokenFile), '-L', '0:echo'], env);
    await rejected.stop();
    expect(rejected.proc.exitCode).toBe(3);
    expect(rejected.stderr()).toMatch(/^error: TLS: https:\/\/localhost:\d+ rejected the client certificate \(the gateway closed the connection right after the TLS handshake\); is it issued by the site's CA and still valid\?$/m);
  });
});
