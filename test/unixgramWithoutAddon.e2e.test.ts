// Where the datagram UNIX socket addon does not load (an unsupported platform, here one made so by a module hook
// that refuses to resolve it): a gateway without unixgram: routes starts and carries udp: flows; check, serve
// and the tunnel refuse unixgram: with the reason.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cli, cliNode, gatewayConfig, startHarness, type Harness } from './support/gatewayHarness.ts';
import { cleanEnv, gatewayFlags, startTunnel, writeToken } from './support/tunnelClient.ts';
import { startUdpEcho, udpClient, type UdpEcho } from './support/udpPeers.ts';

const WHY = /datagram UNIX sockets need the node-unix-socket module, which does not load here \(\S+\): no build of node-unix-socket here/;
const unixgramRoute = '  - name: dgram\n    protocols: [udp]\n    upstream: unixgram:/run/gatehouse-test/none.sock\n    policy: |\n      allow if user($u);\n';

let h: Harness;
let echo: UdpEcho;
let hooks: string;
let hook: string;
let home: string;
let token: string;

beforeAll(async () => {
  hooks = mkdtempSync(join(tmpdir(), 'gatehouse-no-addon-'));
  hook = join(hooks, 'no-addon.mjs');
  writeFileSync(hook, `import { registerHooks } from 'node:module';\nregisterHooks({ resolve(s, c, next) { if (s === 'node-unix-socket') throw new Error('no build of node-unix-socket here'); return next(s, c); } });\n`);
  echo = await startUdpEcho();
  // The harness's gateway inherits this process's environment.
  const saved = process.env.NODE_OPTIONS;
  process.env.NODE_OPTIONS = `${saved ?? ''} --import=${hook}`.trim();
  try {
    h = await startHarness({ routes: `  - name: echo\n    protocols: [udp]\n    upstream: udp:127.0.0.1:${echo.port}\n    policy: |\n      allow if user($u);\n` });
  } finally {
    if (saved === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = saved;
  }
  home = join(h.dir, 'home');
  mkdirSync(home, { recursive: true, mode: 0o700 });
  token = writeToken(h, join(home, 'token'), 'alice');
}, 60_000);

afterAll(async () => {
  await h?.stop();
  echo?.close();
  if (hooks) rmSync(hooks, { recursive: true, force: true });
});

/** `gatehouse ARGS` run with the hook, in the harness's directory (its certificates), to its end. */
function gatehouse(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) =>
    execFile(cliNode, [`--import=${hook}`, cli, ...args], { cwd: h.dir, timeout: 20_000 }, (err, _stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stderr })),
  );
}

it('a gateway without unixgram: routes starts and carries udp: flows (the addon is loaded only for unixgram:)', async () => {
  const alice = await h.pki.client('alice');
  const tunnel = await startTunnel(['-L', 'udp:127.0.0.1:0:echo', ...gatewayFlags(h, alice, token)], cleanEnv(home, { NODE_OPTIONS: `--import=${hook}` }));
  try {
    const client = await udpClient();
    await client.send('hello', tunnel.ready[0]?.port as number);
    expect((await client.waitReplies(1)).map(String)).toEqual(['hello']);
    client.close();
  } finally {
    await tunnel.stop();
  }
}, 30_000);

it('gatehouse check and gatehouse serve name the unixgram: upstream and why; serve does not start', async () => {
  const config = join(h.dir, 'with-unixgram.yaml');
  writeFileSync(config, gatewayConfig({ routes: unixgramRoute, auditFile: 'audit/other.log' }));
  const line = new RegExp(`with-unixgram\\.yaml:\\d+:\\d+: routes\\[0\\]\\.upstream: ${WHY.source}`);
  const checked = await gatehouse(['check', '--config', config]);
  expect(checked.code).toBe(1);
  expect(checked.stderr).toMatch(line);
  const served = await gatehouse(['serve', '--config', config]);
  expect(served.code).toBe(1);
  expect(served.stderr).toMatch(line);
}, 30_000);

it('gatehouse tunnel -L unixgram: exits 2 with the reason', async () => {
  const alice = await h.pki.client('alice');
  const path = join(home, 'd.sock');
  const tunnel = await startTunnel(['-L', `unixgram:${path}:echo`, ...gatewayFlags(h, alice, token)], cleanEnv(home, { NODE_OPTIONS: `--import=${hook}` }));
  await new Promise((r) => (tunnel.proc.exitCode !== null ? r(undefined) : tunnel.proc.once('exit', r)));
  expect(tunnel.proc.exitCode).toBe(2);
  expect(tunnel.stderr()).toMatch(new RegExp(`error: cannot listen on unixgram:${path}: ${WHY.source}`));
}, 30_000);
