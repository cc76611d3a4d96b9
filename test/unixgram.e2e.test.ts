// unixgram: upstreams and `-L unixgram:` through a real `gatehouse serve`: a socat datagram echo reached from
// `gatehouse tunnel -L udp:` and `-L unixgram:` (socat bound to a path, logger bound nowhere); refusals; records.
// Hostile peers (strangers on a flow's socket, oversize datagrams, a socket swapped for a symlink): hostile/udpUnixgram.test.ts.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './support/gatewayHarness.ts';
import { which } from './support/localServices.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { cleanEnv, gatewayFlags, startTunnel, writeToken, type TunnelProcess } from './support/tunnelClient.ts';
import { udpClient } from './support/udpPeers.ts';
import { flowSockets as liveFlowSockets, logTo, sendFromPath, startUnixgramEcho, unixgramRoute, type UnixgramEcho } from './support/unixgramPeers.ts';

const missingTools = ['socat', 'logger', 'python3'].filter((tool) => !which(tool));
const isRoot = process.getuid?.() === 0 && which('setpriv') !== undefined;
const NOBODY = { uid: 65534, gid: 65534 };

let h: Harness;
let alice: TestClientCertificate;
let aliceToken: string;
let nobodyToken: string;
let home: string;
/** The services' sockets: a short absolute path (unixgram: paths are absolute, socket paths short). */
let run: string;
let echo: UnixgramEcho;

describe.skipIf(missingTools.length > 0)(`unixgram: upstreams (needs ${['socat', 'logger', 'python3'].join(', ')})`, () => {
  beforeAll(async () => {
    run = mkdtempSync(join(tmpdir(), 'gh-ug-'));
    // Other users' services live below: they must be able to reach their directories.
    chmodSync(run, 0o711);
    echo = await startUnixgramEcho(join(run, 'echo.sock'));
    mkdirSync(join(run, 'users', 'nobody'), { recursive: true });
    chmodSync(join(run, 'users'), 0o711);
    chownSync(join(run, 'users', 'nobody'), NOBODY.uid, NOBODY.gid);
    h = await startHarness({
      routes: [
        unixgramRoute('dgram', `${run}/echo.sock`),
        unixgramRoute('gone', `${run}/nothing-here.sock`),
        unixgramRoute('user-dgram', `${run}/users/{user}/echo.sock`, '    tunnel: "{user}.echo"\n    socketOwner: user\n    unixgramReplies: any-local-user\n'),
      ].join(''),
    });
    alice = await h.pki.client('alice');
    home = join(h.dir, 'home-alice');
    mkdirSync(home, { recursive: true, mode: 0o700 });
    aliceToken = writeToken(h, join(home, 'token'), 'alice');
    nobodyToken = writeToken(h, join(home, 'nobody-token'), 'nobody');
  }, 60_000);

  afterAll(async () => {
    await h?.stop();
    await echo?.stop();
    if (run) rmSync(run, { recursive: true, force: true });
  });

  const env = () => cleanEnv(home);
  const closes = (route: string) => h.audit().filter((r) => r.event === 'udp.close' && r.route === route);
  /** The gateway's flow sockets (the test runs as the gateway's user, who may list its directory). */
  const flowSockets = () => liveFlowSockets(h.proc.pid as number);

  async function unixgramTunnel(route: string, token = aliceToken): Promise<{ tunnel: TunnelProcess; path: string }> {
    const path = join(home, `${route}.dgram`);
    const tunnel = await startTunnel(['-L', `unixgram:${path}:${route}`, ...gatewayFlags(h, alice, token)], env());
    return { tunnel, path };
  }

  it('gatehouse tunnel -L udp: reaches the datagram UNIX socket service; one udp.open and one udp.close with the counts', async () => {
    const before = closes('dgram').length;
    const tunnel = await startTunnel(['-L', 'udp:127.0.0.1:0:dgram', ...gatewayFlags(h, alice, aliceToken)], env());
    try {
      const client = await udpClient();
      for (let i = 0; i < 3; i++) await client.send(`u-${i}`, tunnel.ready[0]?.port as number);
      expect((await client.waitReplies(3)).map(String).sort()).toEqual(['u-0', 'u-1', 'u-2']);
      // The flow's own socket, in the gateway's private directory (0700, the socket 0600): the gateway's user and root only.
      expect(flowSockets()).toHaveLength(1);
      const socket = flowSockets()[0] as string;
      expect(lstatSync(dirname(socket)).mode & 0o777).toBe(0o700);
      expect(lstatSync(socket).mode & 0o777).toBe(0o600);
      client.close();
    } finally {
      await tunnel.stop();
    }
    const record = await h.waitForAudit((r) => r.event === 'udp.close' && r.route === 'dgram' && closes('dgram').length > before);
    expect(record).toMatchObject({ protocol: 'udp', upstream: `unixgram:${run}/echo.sock`, packetsIn: 3, packetsOut: 3, bytesIn: 9, bytesOut: 9, token: { user: 'alice' } });
    expect(record.dropped).toBeUndefined();
    // The flow's socket is removed with the flow.
    expect(flowSockets()).toEqual([]);
  }, 30_000);

  it('gatehouse tunnel -L unixgram: gives each bound sender a flow with answers, and carries unbound senders (logger) without answers', async () => {
    const { tunnel, path } = await unixgramTunnel('dgram');
    try {
      expect(tunnel.stderr()).toMatch(new RegExp(`^ready: unixgram:${path} -> dgram via https://localhost:\\d+ \\(connect\\)$`, 'm'));
      expect(lstatSync(path).mode & 0o777).toBe(0o600);
      const [a, b] = await Promise.all([sendFromPath(join(home, 'a.sock'), path, 'from-a'), sendFromPath(join(home, 'b.sock'), path, 'from-b')]);
      expect(a.answers).toBe('from-a');
      expect(b.answers).toBe('from-b');
      expect(await logTo(path, 'a line for the log')).toBe(0);
      await h.waitForAudit((r) => r.event === 'udp.open' && r.route === 'dgram' && h.audit().filter((o) => o.event === 'udp.open' && o.route === 'dgram').length >= 4);
    } finally {
      expect(await tunnel.stop()).toBe(0);
    }
    const flows = await (async () => {
      await h.waitForAudit(() => closes('dgram').length >= 4);
      return closes('dgram').slice(-3);
    })();
    // Two answered flows and the unbound senders' flow, whose answer (socat echoes the log line) the tunnel dropped.
    expect(flows.map((f) => f.packetsIn).sort()).toEqual([1, 1, 1]);
    expect(flows.map((f) => f.packetsOut).sort()).toEqual([1, 1, 1]);
    expect(lstatSync(path, { throwIfNoEntry: false })).toBeUndefined();
  }, 30_000);

  it('-L unixgram: goes on serving others when a local sender stops reading its answers (the listener is bound anew, the answers it has no room for dropped)', async () => {
    const { tunnel, path } = await unixgramTunnel('dgram');
    try {
      // A real sender that never reads: 40 datagrams, 40 answers, room for 10 in its socket.
      const mute = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nfor i in range(40): s.sendto(b"mute-%d" % i, sys.argv[2])\ntime.sleep(5)', join(home, 'mute.sock'), path], { stdio: 'ignore' });
      try {
        await new Promise((r) => setTimeout(r, 1500));
        expect((await sendFromPath(join(home, 'g.sock'), path, 'still served')).answers).toBe('still served');
      } finally {
        mute.kill();
      }
    } finally {
      expect(await tunnel.stop()).toBe(0);
    }
  }, 30_000);

  it('refuses a flow to a missing socket (502 to the client, the reason in the record) and keeps serving', async () => {
    const tunnel = await startTunnel(['-L', 'udp:127.0.0.1:0:gone', ...gatewayFlags(h, alice, aliceToken)], env());
    try {
      const client = await udpClient();
      await client.send('anyone?', tunnel.ready[0]?.port as number);
      await tunnel.waitForStderr(/error: .*502/);
      client.close();
    } finally {
      await tunnel.stop();
    }
    const record = await h.waitForAudit((r) => r.event === 'udp.close' && r.route === 'gone');
    expect(record).toMatchObject({ status: 502, token: { user: 'alice' } });
    expect(record.reason).toMatch(/nothing-here\.sock: ENOENT/);
    expect(h.proc.exitCode).toBeNull();
  }, 30_000);

  it('refuses a socket its socketOwner does not own, with the reason in the record', async () => {
    const impostor = await startUnixgramEcho(join(run, 'users', 'nobody', 'echo.sock'));
    try {
      const { tunnel, path } = await unixgramTunnel('nobody.echo', nobodyToken);
      try {
        const sent = await sendFromPath(join(home, 'c.sock'), path, 'hello', 1500);
        expect(sent.answers).toBe('');
        await tunnel.waitForStderr(/error: .*502/);
      } finally {
        await tunnel.stop();
      }
      const record = await h.waitForAudit((r) => r.route === 'user-dgram' && r.status === 502);
      expect(record.reason).toMatch(/owned by uid \d+, not nobody/);
    } finally {
      await impostor.stop();
    }
  }, 30_000);

  it.skipIf(!isRoot)('reaches a socket its owner runs (as nobody: with unixgramReplies: any-local-user the answer crosses the 0711 directory), and ends the flow when another user replaces it (needs root and setpriv)', async () => {
    const owned = await startUnixgramEcho(join(run, 'users', 'nobody', 'echo.sock'), NOBODY);
    const { tunnel, path } = await unixgramTunnel('nobody.echo', nobodyToken);
    const client = join(home, 'd.sock');
    try {
      expect((await sendFromPath(client, path, 'first')).answers).toBe('first');
      // The owner's service goes; another user's takes its path (the directory is the owner's: root can).
      await owned.stop();
      const impostor = await startUnixgramEcho(join(run, 'users', 'nobody', 'echo.sock'));
      try {
        const record = await h.waitForAudit((r) => r.event === 'udp.close' && r.route === 'user-dgram' && r.status === 101, 10_000);
        expect(record.reason).toMatch(/upstream socket replaced: .*owned by uid 0, not nobody/);
      } finally {
        await impostor.stop();
      }
    } finally {
      await tunnel.stop();
    }
  }, 30_000);

  it('goes on when the service restarts under a live flow (the socket deleted and created again at its path)', async () => {
    const before = closes('dgram').length;
    const tunnel = await startTunnel(['-L', 'udp:127.0.0.1:0:dgram', ...gatewayFlags(h, alice, aliceToken)], env());
    try {
      const client = await udpClient();
      const port = tunnel.ready[0]?.port as number;
      await client.send('before', port);
      expect((await client.waitReplies(1)).map(String)).toEqual(['before']);
      await echo.stop();
      await client.send('while-gone', port);
      await new Promise((r) => setTimeout(r, 300));
      echo = await startUnixgramEcho(join(run, 'echo.sock'));
      // The flow finds the new socket within a second (or at once, when a send to the old one fails): UDP is lossy meanwhile.
      for (let i = 0; i < 20 && client.replies.length < 2; i++) {
        await client.send('after', port);
        await client.waitReplies(2, 250);
      }
      expect(client.replies.map(String).slice(0, 2)).toEqual(['before', 'after']);
      client.close();
    } finally {
      await tunnel.stop();
    }
    await h.waitForAudit(() => closes('dgram').length > before);
    const record = closes('dgram').at(-1);
    expect(record?.packetsOut).toBeGreaterThanOrEqual(2);
    expect((record?.detail as { upstreamErrors?: string[] }).upstreamErrors?.[0]).toMatch(/No such file|refused/i);
  }, 30_000);
});
