// Publish windows sized to the path: through a 50 ms userspace WAN the publisher's stream window grows to its
// bound (not past it), and a service that stops reading leaves at most about that bound buffered (RSS measured).
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerPublisher } from '../src/client/publishConnection.ts';
import { serveStreams } from '../src/client/publishStreams.ts';
import { INITIAL_STREAM_WINDOW } from '../src/config/publishWindowBounds.ts';
import { startDelayProxy, type DelayProxy } from './support/delayProxy.ts';
import { startHarness, type Harness } from './support/gatewayHarness.ts';
import { publishedRoute, startPublisher, type PublisherProcess } from './support/publishPeers.ts';
import { cleanEnv, countHandler, gatewayFlags, listenUnix, sourceHandler, startTunnel, upload, writeToken, type TunnelProcess } from './support/tunnelClient.ts';
import type { TestClientCertificate } from './support/pki.ts';

const MiB = 1 << 20;
/** publish.window of the test gateway: the bound of what a stalled download leaves in the gateway. */
const GATEWAY_WINDOW = 2 * MiB;
let h: Harness;
let alice: TestClientCertificate;
let tokenFile: string;
const closers: Array<() => unknown> = [];

beforeAll(async () => {
  h = await startHarness({ routes: publishedRoute, extraTop: `publish:\n  policy: |\n    allow if user($u);\n  window: ${GATEWAY_WINDOW}\n` });
  alice = await h.pki.client('alice');
  tokenFile = writeToken(h, join(h.dir, 'home', 'token'), 'alice');
}, 30_000);

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await h?.stop();
});

async function wan(rttMs: number): Promise<DelayProxy> {
  // A small proxy queue: the proxy must not be where a stalled stream's bytes pile up in these tests.
  const proxy = await startDelayProxy({ rttMs, targetPort: h.port, maxQueuedBytes: 4 * MiB });
  closers.push(() => proxy.close());
  return proxy;
}

async function tunnelTo(service: string): Promise<TunnelProcess> {
  const t = await startTunnel([...gatewayFlags(h, alice, tokenFile), '-L', `0:${service}.alice`], cleanEnv(join(h.dir, 'home')));
  closers.push(() => t.stop());
  return t;
}

const rssMiB = (pid: number | undefined) => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;

describe('publish windows on a 50 ms path', () => {
  it('grow from 256 KiB to the publisher\'s bound (2 MiB) during an upload, and not past it', async () => {
    const proxy = await wan(50);
    const sink = await listenUnix(join(h.dir, 'run', 'grow-sink.sock'), countHandler);
    closers.push(() => sink.close());
    const endpoint = { host: 'localhost', port: proxy.port, label: 'gateway', cert: Buffer.from(alice.cert), key: Buffer.from(alice.key), ca: readFileSync(h.pki.caCertPath), token: readFileSync(tokenFile, 'utf8').trim(), receiveWindow: 2 * MiB };
    const registration = await registerPublisher(endpoint, ['grow']);
    if (!registration.ok) throw new Error(`not registered: ${JSON.stringify(registration.failure)}`);
    closers.push(() => registration.session.destroy());
    serveStreams(registration.session, [{ service: 'grow', target: { kind: 'unix', path: join(h.dir, 'run', 'grow-sink.sock') } }]);
    const t = await tunnelTo('grow');

    const sent = await upload(t.ready[0]?.port as number, 24 * MiB);
    expect(sent.bytes).toBe(24 * MiB);
    expect(sent.sha256).toBe(sent.sentSha256);
    // A fixed 256 KiB window would need 96 round trips for 24 MiB; the session says what it granted instead.
    expect(registration.windows.rttMs).toBeGreaterThanOrEqual(45);
    expect(registration.windows.streamWindow).toBe(2 * MiB);
    expect(registration.session.localSettings.initialWindowSize).toBe(2 * MiB);
    expect(registration.session.state.localWindowSize).toBeGreaterThan(INITIAL_STREAM_WINDOW);
  }, 60_000);

  it('a service that stops reading leaves at most about the bound in the publisher and the gateway', async () => {
    const proxy = await wan(50);
    const bound = 2 * MiB;
    const readFirst = 12 * MiB;
    let read = 0;
    let service: Socket | undefined;
    const stalled = await listenUnix(join(h.dir, 'run', 'stall.sock'), (socket) => {
      service = socket;
      socket.on('error', () => {});
      // Reads long enough for the window to grow to its bound, then stops reading for good.
      socket.on('data', (d: Buffer) => {
        read += d.length;
        if (read >= readFirst) socket.pause();
      });
    });
    closers.push(() => stalled.close(), () => service?.destroy());
    const flags = gatewayFlags(h, alice, tokenFile).slice(0, -2).map((f) => f.replace(`localhost:${h.port}`, `localhost:${proxy.port}`));
    const publisher: PublisherProcess = startPublisher([...flags, '--window', '2M', `stall=unix:${join(h.dir, 'run', 'stall.sock')}`], cleanEnv(join(h.dir, 'home')));
    closers.push(() => publisher.stop());
    await publisher.waitForStderr(/published as alice/);
    const t = await tunnelTo('stall');
    const before = { publisher: rssMiB(publisher.proc.pid), gateway: rssMiB(h.proc.pid) };

    // Push up to 160 MiB; stop when no write completes for 1.5 s: what was accepted is buffered along the path.
    const accepted = await new Promise<number>((resolve, reject) => {
      const client = connect(t.ready[0]?.port as number, '127.0.0.1');
      closers.push(() => client.destroy());
      const chunk = Buffer.alloc(256 << 10, 7);
      let written = 0;
      let idle: NodeJS.Timeout | undefined;
      const settle = () => {
        clearTimeout(idle);
        idle = setTimeout(() => resolve(written), 1_500);
      };
      const pump = () => {
        while (written < 160 * MiB) {
          written += chunk.length;
          settle();
          if (!client.write(chunk)) return void client.once('drain', pump);
        }
      };
      client.on('error', reject);
      client.on('connect', pump);
    });
    const after = { publisher: rssMiB(publisher.proc.pid), gateway: rssMiB(h.proc.pid) };
    expect(read).toBeGreaterThanOrEqual(readFirst);
    // The bound at the publisher, the gateway's share of the same stream, kernel socket buffers on three hops
    // and the proxy's 4 MiB: far below what unbounded windows would take in (all 160 MiB).
    expect(accepted - read).toBeLessThan(48 * MiB);
    // RSS also keeps what the collector freed but did not return: a loose bound (unbounded windows: +155 MiB here).
    expect(after.publisher - before.publisher).toBeLessThan(bound / MiB + 40);
    expect(after.gateway - before.gateway).toBeLessThan(bound / MiB + 40);
  }, 60_000);

  it('a client that stops reading a download leaves at most about publish.window in the gateway', async () => {
    const proxy = await wan(50);
    let source: Socket | undefined;
    const endless = await listenUnix(join(h.dir, 'run', 'endless.sock'), (socket) => {
      source = socket;
      sourceHandler(socket);
    });
    closers.push(() => endless.close(), () => source?.destroy());
    const flags = gatewayFlags(h, alice, tokenFile).slice(0, -2).map((f) => f.replace(`localhost:${h.port}`, `localhost:${proxy.port}`));
    const publisher = startPublisher([...flags, `endless=unix:${join(h.dir, 'run', 'endless.sock')}`], cleanEnv(join(h.dir, 'home')));
    closers.push(() => publisher.stop());
    await publisher.waitForStderr(/published as alice/);
    const t = await tunnelTo('endless');
    const before = rssMiB(h.proc.pid);

    // Reads 12 MiB of a 160 MiB download (the gateway's window grows to publish.window), then stops reading.
    const client = connect(t.ready[0]?.port as number, '127.0.0.1');
    closers.push(() => client.destroy());
    const read = await new Promise<number>((resolve, reject) => {
      let got = 0;
      client.on('error', reject);
      client.on('data', (d: Buffer) => {
        got += d.length;
        if (got >= 12 * MiB && !client.isPaused()) {
          client.pause();
          resolve(got);
        }
      });
      client.end(`${160 * MiB}\n`);
    });
    // Then waits until the source has written nothing more for 1.5 s: what it handed off is buffered along the path.
    let handedOff = 0;
    for (let still = 0; still < 3; ) {
      await new Promise((r) => setTimeout(r, 500));
      const now = (source?.bytesWritten ?? 0) - (source?.writableLength ?? 0);
      still = now === handedOff ? still + 1 : 0;
      handedOff = now;
    }
    const after = rssMiB(h.proc.pid);
    expect(handedOff - read).toBeLessThan(48 * MiB);
    // RSS also keeps what the collector freed but did not return: a loose bound (unbounded windows: +130 MiB here).
    expect(after - before).toBeLessThan(GATEWAY_WINDOW / MiB + 40);
  }, 60_000);
});
