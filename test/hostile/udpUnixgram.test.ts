// Hostile peers of unixgram: upstreams against a real `gatehouse serve` (raw RFC 9298 flows): another local
// process sending to a flow's socket (once, and a flood; another user, who finds it in /proc/net/unix, with and
// without unixgramReplies: any-local-user, and forging the service's path in namespaces of their own), oversize
// datagrams each way, and a user who swaps their socket for a symlink to have the datagrams delivered elsewhere.
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unixDatagramModule } from '../../src/upstream/unixgramModule.ts';
import { startHarness, type Harness } from '../support/gatewayHarness.ts';
import { which } from '../support/localServices.ts';
import type { TestClientCertificate } from '../support/pki.ts';
import { writeToken } from '../support/tunnelClient.ts';
import { rawConnectUdp } from '../support/udpPeers.ts';
import { flowSockets as liveFlowSockets, sendFromPath, startSocat, strangerSends, startUnixgramEcho, startUnixgramSink, unixgramRoute, type UnixgramEcho } from '../support/unixgramPeers.ts';

const me = userInfo().username;
const NOBODY = { uid: 65534, gid: 65534 };
const asRoot = process.getuid?.() === 0 && ['setpriv', 'unshare', 'python3'].every((tool) => which(tool) !== undefined);
let h: Harness;
let alice: TestClientCertificate;
let aliceToken: string;
let myToken: string;
let run: string;
const services: UnixgramEcho[] = [];

describe.skipIf(!which('socat'))('hostile peers of unixgram: upstreams (needs socat)', () => {
  beforeAll(async () => {
    run = mkdtempSync(join(tmpdir(), 'gh-ugh-'));
    chmodSync(run, 0o711);
    mkdirSync(join(run, 'own', me), { recursive: true });
    services.push(await startUnixgramEcho(join(run, 'echo.sock')));
    // Answers anything with 3,000 bytes: more than a flow carries (limits.udp.maxDatagramBytes, 1,472).
    services.push(await startSocat(['socat', `UNIX-RECVFROM:${join(run, 'big.sock')},fork,unlink-early`, 'SYSTEM:head -c 3000 /dev/zero'], join(run, 'big.sock')));
    h = await startHarness({
      routes: [
        unixgramRoute('dgram', `${run}/echo.sock`),
        unixgramRoute('big', `${run}/big.sock`),
        unixgramRoute('shared-dgram', `${run}/echo.sock`, '    unixgramReplies: any-local-user\n'),
        unixgramRoute('own-dgram', `${run}/own/{user}/echo.sock`, '    tunnel: "{user}.own"\n    socketOwner: user\n'),
      ].join(''),
    });
    alice = await h.pki.client('alice');
    aliceToken = readFileSync(writeToken(h, join(h.dir, 'alice-token'), 'alice'), 'utf8').trim();
    myToken = readFileSync(writeToken(h, join(h.dir, 'my-token'), me), 'utf8').trim();
  }, 60_000);

  afterAll(async () => {
    await h?.stop();
    for (const service of services) await service.stop();
    if (run) rmSync(run, { recursive: true, force: true });
  });

  /** The gateway's flow sockets (the test runs as the gateway's user, who may list its directory). */
  const flowSockets = () => liveFlowSockets(h.proc.pid as number);
  const closeOf = (source: string) => h.waitForAudit((r) => r.event === 'udp.close' && r.source === source, 10_000);

  it('drops what another process sends to a flow\'s socket, a flood of it too, and counts it; the flow goes on', async () => {
    const flow = await rawConnectUdp(h, alice, aliceToken, '/.well-known/gatehouse/udp/dgram');
    expect(flow.status).toBe(101);
    flow.sendDatagram(Buffer.from('open'));
    expect((await flow.waitDatagrams(1)).map(String)).toEqual(['open']);
    expect(flowSockets()).toHaveLength(1);
    const target = flowSockets()[0] as string;
    // A local process that found the flow's path: a forged answer, then a flood of 500 more.
    await sendFromPath(join(run, 'stranger.sock'), target, 'forged answer', 200);
    const addon = unixDatagramModule();
    if (!addon.ok) throw new Error(addon.reason);
    const flood = addon.create();
    flood.bind(join(run, 'flood.sock'));
    await Promise.all(Array.from({ length: 500 }, (_, i) => new Promise((sent) => flood.sendTo(Buffer.from(`flood-${i}`), 0, `flood-${i}`.length, target, sent))));
    flood.close();
    flow.sendDatagram(Buffer.from('still-here'));
    expect((await flow.waitDatagrams(2)).map(String)).toEqual(['open', 'still-here']);
    flow.tls.socket.end();
    const record = await closeOf(flow.source);
    expect(record).toMatchObject({ packetsIn: 2, packetsOut: 2, reason: 'client closed' });
    expect(record.dropped?.strangerOut).toBe(501);
    expect(flow.datagrams.map(String)).not.toContain('forged answer');
  }, 30_000);

  /** An open flow on `route` that answered once, and what the gateway process's paths in /proc/net/unix hold. */
  async function answeredFlow(route: string) {
    const flow = await rawConnectUdp(h, alice, aliceToken, `/.well-known/gatehouse/udp/${route}`);
    expect(flow.status).toBe(101);
    flow.sendDatagram(Buffer.from('open'));
    expect((await flow.waitDatagrams(1)).map(String)).toEqual(['open']);
    return { flow, marker: `unixgram-${h.proc.pid as number}` };
  }

  it.skipIf(!asRoot)('another local user who finds a flow\'s socket in /proc/net/unix cannot send to it: no flood, no answer forged from the service\'s path taken over with unshare -Urm and a tmpfs (EACCES) (needs root, setpriv, unshare, python3)', async () => {
    const { flow, marker } = await answeredFlow('dgram');
    const flood = await strangerSends(NOBODY, marker, 50);
    expect(flood.found).toHaveLength(1);
    expect(flood).toMatchObject({ sent: 0, errors: Array(50).fill('EACCES') });
    const forged = await strangerSends(NOBODY, marker, 1, `${run}/echo.sock`);
    expect(forged).toMatchObject({ sent: 0, errors: ['EACCES'] });
    flow.sendDatagram(Buffer.from('still-here'));
    expect((await flow.waitDatagrams(2)).map(String)).toEqual(['open', 'still-here']);
    flow.tls.socket.end();
    const record = await closeOf(flow.source);
    expect(record).toMatchObject({ packetsIn: 2, packetsOut: 2 });
    expect(record.dropped?.strangerOut).toBeUndefined();
    expect(flow.datagrams.map(String).filter((d) => d.startsWith('stranger'))).toEqual([]);
  }, 30_000);

  it.skipIf(!asRoot)('with unixgramReplies: any-local-user another local user reaches the flow\'s socket, and what it sends is dropped and counted as a stranger\'s (needs root, setpriv, python3)', async () => {
    const { flow, marker } = await answeredFlow('shared-dgram');
    const flood = await strangerSends(NOBODY, marker, 50);
    expect(flood.found).toHaveLength(1);
    expect(flood.found[0]).toMatch(/\/shared\/[^/]+\.sock$/);
    expect(flood.sent).toBeGreaterThan(0);
    flow.sendDatagram(Buffer.from('still-here'));
    expect((await flow.waitDatagrams(2)).map(String)).toEqual(['open', 'still-here']);
    flow.tls.socket.end();
    const record = await closeOf(flow.source);
    expect(record).toMatchObject({ packetsIn: 2, packetsOut: 2 });
    expect(record.dropped?.strangerOut).toBe(flood.sent);
  }, 30_000);

  it('carries a burst larger than the service\'s socket holds (10 datagrams ahead of its reads), and the flow goes on answering', async () => {
    const flow = await rawConnectUdp(h, alice, aliceToken, '/.well-known/gatehouse/udp/dgram');
    expect(flow.status).toBe(101);
    for (let i = 0; i < 100; i++) flow.sendDatagram(Buffer.from(`burst-${i}`));
    const answers = await flow.waitDatagrams(100, 10_000);
    flow.sendDatagram(Buffer.from('after the burst'));
    await flow.waitDatagrams(101, 5000);
    flow.tls.socket.end();
    const record = await closeOf(flow.source);
    // Every datagram reached the service (the flow's queue, 256, holds the burst while the service catches up: before,
    // 1 of 101 came back). The answers cross the gateway's own socket, which holds 10 ahead of its reads: on a loaded
    // machine the service may drop some of them (UDP), so the test asks for most, and for the flow to go on answering.
    expect(record.packetsIn).toBe(101);
    expect(record.dropped?.queueFullIn ?? 0).toBe(0);
    expect(new Set(answers.map(String)).size).toBeGreaterThan(50);
    expect(flow.datagrams.map(String)).toContain('after the burst');
  }, 30_000);

  it('drops oversize datagrams each way and counts them', async () => {
    const flow = await rawConnectUdp(h, alice, aliceToken, '/.well-known/gatehouse/udp/big');
    flow.sendDatagram(Buffer.alloc(2000, 0x61));
    flow.sendDatagram(Buffer.from('answer me'));
    await h.waitForAudit((r) => r.event === 'udp.open' && r.source === flow.source);
    await new Promise((r) => setTimeout(r, 500));
    flow.tls.socket.end();
    const record = await closeOf(flow.source);
    expect(record).toMatchObject({ packetsIn: 1, packetsOut: 0, dropped: { oversizeIn: 1, oversizeOut: 1 } });
    expect(flow.datagrams).toEqual([]);
  }, 30_000);

  it('a user who swaps their socket for a symlink under a live flow cannot send the gateway\'s datagrams elsewhere; the flow ends', async () => {
    const own = join(run, 'own', me);
    const mine = await startUnixgramEcho(join(own, 'echo.sock'));
    // A socket the gateway's user can write to and the flow's user cannot (a syslog or a service manager's, say).
    const privileged = await startUnixgramSink(join(run, 'privileged.sock'));
    services.push(mine, privileged);
    const flow = await rawConnectUdp(h, alice, myToken, `/.well-known/gatehouse/udp/${me}.own`);
    flow.sendDatagram(Buffer.from('first'));
    expect((await flow.waitDatagrams(1)).map(String)).toEqual(['first']);
    renameSync(join(own, 'echo.sock'), join(own, 'old.sock'));
    symlinkSync(join(run, 'privileged.sock'), join(own, 'echo.sock'));
    for (let i = 0; i < 5; i++) flow.sendDatagram(Buffer.from(`redirected-${i}`));
    await flow.tls.closed;
    const record = await closeOf(flow.source);
    expect(record.reason).toMatch(/upstream socket replaced: upstream socket .*echo\.sock is a symlink/);
    expect(privileged.received()).toBe('');
  }, 30_000);
});
