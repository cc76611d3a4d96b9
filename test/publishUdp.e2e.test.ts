// UDP services published with `gatehouse publish NAME=udp:PORT`, reached by `gatehouse tunnel -L udp:` through a
// udp route to published:{user}/{service}: dig to dnsmasq, an echo, one flow per local peer, the records; and the
// compute node: the publisher in a network namespace that accepts no inbound traffic.
import { execFile, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curl, startHarness, type Harness } from './support/gatewayHarness.ts';
import { freePort, which } from './support/localServices.ts';
import { computeNodeUnavailable, createComputeNode, type ComputeNode } from './support/computeNode.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { publishedRoute, publishedUdpRoute, publishFlags, publishTop, startPublisher, type PublisherProcess } from './support/publishPeers.ts';
import { cleanEnv, gatewayFlags, startTunnel, writeToken } from './support/tunnelClient.ts';
import { expectFlowPerPeer, startDnsmasq, startUdpEcho, type UdpEcho } from './support/udpPeers.ts';

const hasDnsTools = which('dnsmasq') !== undefined && which('dig') !== undefined;
const nodeUnavailable = computeNodeUnavailable() ?? (hasDnsTools ? undefined : 'dnsmasq or dig missing');

let h: Harness;
let alice: TestClientCertificate;
let home: string;
let tokenFile: string;
let echo: UdpEcho;
let dnsPort: number;
let dnsmasq: ChildProcess | undefined;
let publisher: PublisherProcess;
let publisherId: string;
/** The compute node, with its own dnsmasq and publisher, when this machine can make one. */
let node: ComputeNode | undefined;
const inNode: { dnsmasq?: ChildProcess; publisher?: PublisherProcess } = {};
let nodeFailure: Error | undefined;

beforeAll(async () => {
  echo = await startUdpEcho();
  dnsPort = await freePort();
  if (hasDnsTools) dnsmasq = await startDnsmasq(dnsPort);
  // The gateway also listens on the host's end of the node's veth pair, with a certificate for that address.
  // A node that cannot be made fails its own test below, not the others of this file.
  if (!nodeUnavailable) {
    try {
      node = createComputeNode();
    } catch (err) {
      nodeFailure = err as Error;
    }
  }
  h = await startHarness({
    // Beside the udp route, the web/tcp one: a UDP service must not show up there as a link or a raw TCP line.
    routes: publishedRoute + publishedUdpRoute,
    extraTop: publishTop,
    ...(node && { extraListen: `  - tcp: ${node.hostAddress}:0\n`, serverNames: [node.hostAddress] }),
  });
  alice = await h.pki.client('alice');
  home = join(h.dir, 'home-alice');
  mkdirSync(home, { recursive: true });
  tokenFile = writeToken(h, join(home, 'token'), 'alice');
  publisher = startPublisher([...publishFlags(h, alice, tokenFile), `echo=udp:${echo.port}`, `dns=udp:127.0.0.1:${dnsPort}`], cleanEnv(home));
  publisherId = (await publisher.waitForStderr(/published as alice through \S+ \(publisher ([0-9a-f]+)\)/))[1] as string;
}, 60_000);

afterAll(async () => {
  await inNode.publisher?.stop('SIGKILL');
  inNode.dnsmasq?.kill('SIGKILL');
  node?.remove();
  await publisher?.stop('SIGKILL');
  await h?.stop();
  echo?.close();
  dnsmasq?.kill();
});

function dig(server: string, port: number, name: string, extra: string[] = []): Promise<string> {
  return new Promise((resolve) => execFile('dig', [`@${server}`, '-p', String(port), name, 'A', '+short', '+tries=2', '+time=3', ...extra], (_err, stdout) => resolve(stdout.trim())));
}

const closes = (service: string) => h.audit().filter((r) => r.event === 'udp.close' && r.upstream === `published:alice/${service}`);

describe.each(['connect', 'websocket'] as const)('a published UDP service over %s', (transport) => {
  it('carries datagrams both ways, one flow (and one publisher socket) per local peer, each flow recorded once naming its publisher', async () => {
    const before = closes('echo').length;
    const tunnel = await startTunnel(['-L', 'udp:127.0.0.1:0:echo.alice', ...gatewayFlags(h, alice, tokenFile, transport)], cleanEnv(home));
    try {
      const port = tunnel.ready[0]?.port as number;
      // Each peer gets its own datagrams back, none of the other's: the publisher keeps a socket per flow.
      await expectFlowPerPeer(port);
    } finally {
      await tunnel.stop();
    }
    await h.waitForAudit(() => closes('echo').length >= before + 2, 10_000);
    const flows = closes('echo').slice(before).sort((x, y) => (y.packetsIn ?? 0) - (x.packetsIn ?? 0));
    expect(flows[0]).toMatchObject({ route: 'published-udp', upstream: 'published:alice/echo', publisher: publisherId, packetsIn: 5, packetsOut: 5, bytesIn: 15, bytesOut: 15, token: { user: 'alice' } });
    expect(flows[1]).toMatchObject({ publisher: publisherId, packetsIn: 1, packetsOut: 1 });
    expect(h.audit().filter((r) => r.event === 'udp.open' && r.req === flows[0]?.req)).toMatchObject([{ decision: 'allow', publisher: publisherId, upstream: 'published:alice/echo' }]);
  }, 40_000);

  it.skipIf(!hasDnsTools)('reaches dnsmasq behind the publisher: dig gets its answer (needs dnsmasq and dig)', async () => {
    const tunnel = await startTunnel(['-L', 'udp:127.0.0.1:0:dns.alice', ...gatewayFlags(h, alice, tokenFile, transport)], cleanEnv(home));
    try {
      expect(await dig('127.0.0.1', tunnel.ready[0]?.port as number, 'host.gatehouse.test')).toBe('192.0.2.7');
    } finally {
      await tunnel.stop();
    }
    await h.waitForAudit((r) => r.event === 'udp.close' && r.upstream === 'published:alice/dns' && (r.packetsOut ?? 0) >= 1, 10_000);
  }, 40_000);
});

it('the registration names the UDP services (publish.open), and the publisher says which are UDP', async () => {
  const open = await h.waitForAudit((r) => r.event === 'publish.open' && r.decision === 'allow' && r.publisher === publisherId);
  expect(open.detail).toMatchObject({ services: ['echo', 'dns'], udp: ['echo', 'dns'] });
  expect(publisher.stderr()).toMatch(/echo -> udp:127\.0\.0\.1:\d+, dns -> udp:127\.0\.0\.1:\d+/);
});

it('the portal lists the UDP services as UDP: a `tunnel -L udp:` line each, never a web link or a raw TCP line', async () => {
  const jar = join(home, 'portal-cookies.txt');
  await curl(h, '/.well-known/gatehouse/session', { client: alice, args: ['-c', jar, '--data-urlencode', `token=${readFileSync(tokenFile, 'utf8').trim()}`] });
  const portal = await curl(h, '/.well-known/gatehouse/', { client: alice, args: ['-b', jar] });
  const table = /<table id="published">([\s\S]*?)<\/table>/.exec(portal.body)?.[1] ?? '';
  expect(table).toContain('<td>echo (UDP)</td>');
  expect(table).toContain('<td>dns (UDP)</td>');
  const links = /<ul id="links">([\s\S]*?)<\/ul>/.exec(portal.body)?.[1] ?? '';
  expect(links).toContain('<li>UDP: <code>gatehouse tunnel -L udp:5353:dns.alice</code></li>');
  expect(links).toContain('<li>UDP: <code>gatehouse tunnel -L udp:5353:echo.alice</code></li>');
  expect(links).not.toContain('/~alice/dns/');
  expect(links).not.toContain('8888:dns.alice');
});

/** A UDP probe to `address:port`: whatever comes back within `ms` (an answer, or an ICMP error reported as one). */
function udpProbe(address: string, port: number, ms = 1500): Promise<string> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    const done = (what: string) => {
      clearTimeout(timer);
      socket.close();
      resolve(what);
    };
    const timer = setTimeout(() => done('nothing'), ms);
    socket.on('message', () => done('answer'));
    socket.on('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
    socket.connect(port, address, () => socket.send('probe'));
  });
}

/** A TCP probe: `connected`, `refused` (a reset came back), or `nothing` within `ms` (dropped). */
function tcpProbe(address: string, port: number, ms = 1500): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: address, port });
    const done = (what: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(what);
    };
    const timer = setTimeout(() => done('nothing'), ms);
    socket.once('connect', () => done('connected'));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : (err.code ?? err.message)));
  });
}

describe('the compute node: a publisher in a network namespace that accepts no inbound traffic', () => {
  it.skipIf(nodeUnavailable !== undefined)(`dig on the host reaches dnsmasq in the namespace through the publisher's own connection, while the namespace refuses every probe from the host (needs root, ip, nft, dnsmasq, dig${nodeUnavailable ? `; skipped: ${nodeUnavailable}` : ''})`, async () => {
    if (nodeFailure) throw nodeFailure;
    const n = node as ComputeNode;
    const nodeDnsPort = 5300 + Math.floor(Math.random() * 600);
    // dnsmasq answers on the namespace's loopback and on its veth address (so the probe below has a listener to miss).
    inNode.dnsmasq = await startDnsmasq(nodeDnsPort, { wrap: n.exec, addresses: ['127.0.0.1', n.nodeAddress] });
    // Inside, the service answers on both addresses: the namespace itself reaches it.
    expect(await runIn(n, ['dig', `@${n.nodeAddress}`, '-p', String(nodeDnsPort), 'host.gatehouse.test', 'A', '+short', '+tries=1', '+time=2'])).toBe('192.0.2.7');
    // From the host, nothing comes back: no answer, no ICMP error, no reset. Every inbound packet is dropped.
    expect(await dig(n.nodeAddress, nodeDnsPort, 'host.gatehouse.test', ['+tries=1', '+time=2'])).not.toContain('192.0.2.7');
    expect(await udpProbe(n.nodeAddress, nodeDnsPort)).toBe('nothing');
    expect(await udpProbe(n.nodeAddress, 9)).toBe('nothing');
    expect(await tcpProbe(n.nodeAddress, nodeDnsPort)).toBe('nothing');
    expect(await tcpProbe(n.nodeAddress, 9)).toBe('nothing');

    // The publisher runs in the namespace and dials out to the gateway on the host's end of the veth pair.
    const gatewayPort = Number(new RegExp(`listening on https://${n.hostAddress.replace(/\./g, '\\.')}:(\\d+)`).exec(h.stderr())?.[1]);
    const nodeHome = join(h.dir, 'home-node');
    mkdirSync(nodeHome, { recursive: true });
    inNode.publisher = startPublisher([...publishFlags(h, alice, tokenFile, `https://${n.hostAddress}:${gatewayPort}`), `nodedns=udp:127.0.0.1:${nodeDnsPort}`], cleanEnv(nodeHome), n.exec);
    const nodePublisher = (await inNode.publisher.waitForStderr(/published as alice through \S+ \(publisher ([0-9a-f]+)\)/))[1];

    const tunnel = await startTunnel(['-L', 'udp:127.0.0.1:0:nodedns.alice', ...gatewayFlags(h, alice, tokenFile)], cleanEnv(home));
    try {
      const port = tunnel.ready[0]?.port as number;
      expect(await dig('127.0.0.1', port, 'host.gatehouse.test', ['+tries=3'])).toBe('192.0.2.7');
      expect(await dig('127.0.0.1', port, 'other.gatehouse.test', ['+tries=3'])).toBe('192.0.2.7');
    } finally {
      await tunnel.stop();
    }
    // dig asks from a new port each time: two flows, each answered.
    await h.waitForAudit(() => closes('nodedns').length >= 2, 10_000);
    for (const record of closes('nodedns')) {
      expect(record).toMatchObject({ route: 'published-udp', publisher: nodePublisher, token: { user: 'alice' } });
      expect(record.packetsOut).toBeGreaterThanOrEqual(1);
    }
    // And still nothing gets in from the host.
    expect(await udpProbe(n.nodeAddress, nodeDnsPort)).toBe('nothing');
  }, 60_000);
});

/** Runs a command in the node; its stdout, trimmed. */
function runIn(n: ComputeNode, command: string[]): Promise<string> {
  const [program = 'ip', ...args] = [...n.exec, ...command];
  return new Promise((resolve) => execFile(program, args, (_err, stdout) => resolve(stdout.trim())));
}
