// Hostile peers of a published UDP service against a real `gatehouse serve` and real `gatehouse publish`
// processes: a publisher frozen (SIGSTOP) or killed mid-flow, a flood towards a publisher that reads nothing,
// and streams of the wrong kind (a UDP flow to a TCP service, a TCP tunnel to a UDP service).
import type { Server } from 'node:net';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/gatewayHarness.ts';
import type { TestClientCertificate } from '../support/pki.ts';
import { echoService, publishedRoute, publishedUdpRoute, publishFlags, startPublisher, type PublisherProcess } from '../support/publishPeers.ts';
import { cleanEnv, writeToken } from '../support/tunnelClient.ts';
import { connectTunnel } from '../support/tunnelPeers.ts';
import { rawConnectUdp, startUdpEcho, type RawUdpFlow, type UdpEcho } from '../support/udpPeers.ts';

const QUEUE_PACKETS = 64;

let h: Harness;
let alice: TestClientCertificate;
let home: string;
let tokenFile: string;
let token: string;
let echo: UdpEcho;
let tcpEcho: Server;
/** alice's steady publisher: `echo` (UDP) and `web` (a raw TCP echo). */
let steady: PublisherProcess;
const started: PublisherProcess[] = [];

beforeAll(async () => {
  echo = await startUdpEcho();
  h = await startHarness({
    routes: publishedRoute + publishedUdpRoute,
    // No rate limit in the way: a flood meets the flow's queue, the bound under test.
    extraTop: `publish:\n  policy: |\n    allow if user($u);\nlimits:\n  udp:\n    queuePackets: ${QUEUE_PACKETS}\n    packetsPerSecondPerFlow: 1000000\n    packetsPerSecondPerIdentity: 1000000\n`,
  });
  alice = await h.pki.client('alice');
  home = join(h.dir, 'home-alice');
  mkdirSync(home, { recursive: true });
  tokenFile = writeToken(h, join(home, 'token'), 'alice');
  token = readFileSync(tokenFile, 'utf8').trim();
  tcpEcho = await echoService(join(home, 'web.sock'));
  steady = publish([`echo=udp:${echo.port}`, `web/tcp=unix:${join(home, 'web.sock')}`]);
  await steady.waitForStderr(/published as alice/);
}, 60_000);

afterEach(async () => {
  for (const p of started.splice(0)) {
    p.proc.kill('SIGCONT');
    await p.stop('SIGKILL');
  }
});

afterAll(async () => {
  await steady?.stop('SIGKILL');
  await h?.stop();
  echo?.close();
  tcpEcho?.close();
});

function publish(services: string[]): PublisherProcess {
  return startPublisher([...publishFlags(h, alice, tokenFile), ...services], cleanEnv(home));
}

const flowTo = (service: string) => rawConnectUdp(h, alice, token, `/.well-known/gatehouse/udp/${service}.alice`);
const closeOf = (flow: RawUdpFlow) => h.waitForAudit((r) => r.event === 'udp.close' && r.source === flow.source, 20_000);

/** The gateway still serves: a new flow to the steady publisher's echo answers. */
async function gatewayServes(): Promise<void> {
  expect(h.proc.exitCode).toBeNull();
  const flow = await flowTo('echo');
  expect(flow.status).toBe(101);
  flow.sendDatagram(Buffer.from('still here'));
  expect((await flow.waitDatagrams(1)).map(String)).toEqual(['still here']);
  flow.tls.socket.end();
}

describe('a publisher that goes away mid-flow', () => {
  it('frozen (SIGSTOP): the flow is cut as an error once the publisher stops answering, a flood meanwhile is held to the queue, the gateway serves on', async () => {
    const frozen = publish([`frozen=udp:${echo.port}`]);
    started.push(frozen);
    const id = (await frozen.waitForStderr(/\(publisher ([0-9a-f]+)\)/))[1];
    const flow = await flowTo('frozen');
    expect(flow.status).toBe(101);
    flow.sendDatagram(Buffer.from('before'));
    expect((await flow.waitDatagrams(1)).map(String)).toEqual(['before']);
    frozen.proc.kill('SIGSTOP');
    // A flood towards the frozen publisher: its stream's window fills, then the flow's queue, then datagrams are dropped.
    const FLOOD = 4000;
    const payload = Buffer.alloc(1200, 0x61);
    for (let i = 0; i < FLOOD && !flow.tls.isClosed(); i++) {
      flow.sendDatagram(payload);
      if (i % 200 === 0) await new Promise((r) => setImmediate(r));
    }
    await flow.tls.closed;
    const record = await closeOf(flow);
    expect(record).toMatchObject({ upstream: 'published:alice/frozen', publisher: id });
    expect(record.reason).toMatch(/^upstream ended: publisher lost/);
    expect(record.dropped?.queueFullIn).toBeGreaterThan(0);
    // What the gateway took towards the publisher: what its window holds and the queue, never the whole flood.
    expect(record.packetsIn).toBeLessThan(FLOOD);
    await h.waitForAudit((r) => r.event === 'publish.close' && r.publisher === id && /publisher lost/.test(r.reason ?? ''), 20_000);
    await gatewayServes();
  }, 60_000);

  it('killed (SIGKILL): the flow ends at once as an error naming the lost publisher, the gateway serves on', async () => {
    const doomed = publish([`doomed=udp:${echo.port}`]);
    started.push(doomed);
    const id = (await doomed.waitForStderr(/\(publisher ([0-9a-f]+)\)/))[1];
    const flow = await flowTo('doomed');
    flow.sendDatagram(Buffer.from('before'));
    expect((await flow.waitDatagrams(1)).map(String)).toEqual(['before']);
    await doomed.stop('SIGKILL');
    await flow.tls.closed;
    const record = await closeOf(flow);
    expect(record).toMatchObject({ upstream: 'published:alice/doomed', publisher: id, packetsIn: 1, packetsOut: 1 });
    expect(record.reason).toMatch(/^upstream ended: publisher lost/);
    await gatewayServes();
  }, 60_000);
});

describe('a stream of the wrong kind is refused with the reason', () => {
  it('a UDP flow to a TCP service: 503, no stream reaches the publisher, the reason in udp.close', async () => {
    const flow = await flowTo('web');
    expect(flow.status).toBe(503);
    const record = await closeOf(flow);
    expect(record.reason).toMatch(/published:alice\/web is not a UDP service/);
    expect(steady.stderr()).not.toMatch(/stream for web/);
  });

  it('a TCP tunnel to a UDP service: 503, the reason in the record', async () => {
    const opened = await connectTunnel(h, alice, 'echo.alice:443', { 'proxy-authorization': `Bearer ${token}` });
    expect(opened.ok).toBe(false);
    expect(opened.ok ? 0 : opened.status).toBe(503);
    const record = await h.waitForAudit((r) => r.upstream === 'published:alice/echo' && r.protocol === 'tcp' && /is a UDP service/.test(r.reason ?? ''));
    expect(record.reason).toMatch(/only a udp route reaches it/);
  });
});
