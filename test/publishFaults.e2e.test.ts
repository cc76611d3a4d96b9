// Published services under faults, all real processes: publishers killed, frozen (SIGSTOP), partitioned
// (a relay that stops forwarding), reset during the TLS handshake, and the gateway killed and restarted,
// during downloads, uploads, WebSockets and HTTP load. The gateway never exits; a cut always ends as an error.
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import type { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { curl, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { cleanEnv, gatewayFlags, listenUnix, writeToken } from './support/tunnelClient.ts';
import { httpAndWebSocketService, publishedRoute, publishTop, restartGateway, startPublisher, type PublisherProcess } from './support/publishPeers.ts';
import { clientAgent, getStatus, stdioTunnel, tcpRelay, throttledSource, type TcpRelay } from './support/faultPeers.ts';

const MiB = 1 << 20;
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

let h: Harness;
let alice: TestClientCertificate;
let home: string;
let tokenFile: string;
let aliceToken: string;
const servers: Server[] = [];
const publishers: PublisherProcess[] = [];
const relays: TcpRelay[] = [];
/** The gateway after a restart (the harness knows only the first one). */
let restarted: ChildProcess | undefined;

/** `gatehouse publish` for alice's services, straight to the gateway or through `relay`. */
function publish(relay?: TcpRelay): PublisherProcess {
  const flags = gatewayFlags(h, alice, tokenFile).slice(0, -2);
  if (relay) flags[1] = `https://localhost:${relay.port}`;
  const sockets = join(home, 'private');
  const p = startPublisher([...flags, `source=unix:${sockets}/source.sock`, `web=unix:${sockets}/web.sock`, `sink=unix:${sockets}/sink.sock`], cleanEnv(home));
  publishers.push(p);
  return p;
}

async function published(p: PublisherProcess): Promise<string> {
  return (await p.waitForStderr(/published as alice through \S+ \(publisher ([0-9a-f]+)\)/))[1] as string;
}

/** A download through `gatehouse tunnel --stdio source.alice` that lasts until cut (it asks for far more than it gets in a test). */
function endlessDownload() {
  const args = [...gatewayFlags(h, alice, tokenFile).slice(0, -2), '--stdio', 'source.alice'];
  return stdioTunnel(args, cleanEnv(home), `${64 * 1024 * MiB}\n`, false);
}

async function untilBytes(run: { got(): number }, bytes: number): Promise<void> {
  const until = Date.now() + 15_000;
  while (run.got() < bytes) {
    if (Date.now() > until) throw new Error(`download stuck at ${run.got()} bytes`);
    await wait(20);
  }
}

const agent = () => clientAgent(h, alice);
const get = (through: Agent, path: string) => getStatus(h, through, path, aliceToken);

beforeAll(async () => {
  h = await startHarness({ routes: publishedRoute, extraTop: publishTop });
  alice = await h.pki.client('alice');
  home = mkdtempSync(join(tmpdir(), 'gatehouse-publish-faults-'));
  mkdirSync(join(home, 'private'), { mode: 0o700 });
  servers.push(await listenUnix(join(home, 'private', 'source.sock'), throttledSource(16 * MiB)));
  servers.push((await httpAndWebSocketService(join(home, 'private', 'web.sock'))) as unknown as Server);
  servers.push(await listenUnix(join(home, 'private', 'sink.sock'), slowSink));
  tokenFile = writeToken(h, join(home, 'alice.token'), 'alice');
  aliceToken = readFileSync(tokenFile, 'utf8').trim();
}, 60_000);

afterAll(async () => {
  for (const p of publishers) {
    p.proc.kill('SIGCONT');
    await p.stop('SIGKILL');
  }
  for (const r of relays) await r.close();
  for (const s of servers) s.close();
  restarted?.kill('SIGKILL');
  if (!restarted) await h?.stop();
});

/** Kills `p` and waits until the gateway has let go of every publisher (so the next test's may register). */
async function retire(p: PublisherProcess): Promise<void> {
  p.proc.kill('SIGCONT');
  await p.stop('SIGKILL');
  const opened = () => h.audit().filter((r) => r.event === 'publish.open' && r.decision === 'allow').length;
  await h.waitForAudit(() => h.audit().filter((r) => r.event === 'publish.close').length >= opened(), 30_000);
}

/** The gateway is alive after each fault (no exception from a publisher's connection reached it). */
const gatewayAlive = () => expect((restarted ?? h.proc).exitCode).toBeNull();

describe('a publisher lost mid-transfer', () => {
  it('SIGKILL during a --stdio download: the tunnel client exits non-zero, publish.close is written, the gateway lives', async () => {
    const p = publish();
    const id = await published(p);
    const run = endlessDownload();
    await untilBytes(run, 4 * MiB);
    const killedAt = performance.now();
    await p.stop('SIGKILL');
    const end = await run.exited;
    console.log(`publish faults: SIGKILL -> tunnel client exit ${end.code} after ${Math.round(end.at - killedAt)} ms, ${(end.got / MiB).toFixed(1)} MiB`);
    expect(end.code).not.toBe(0);
    const closed = await h.waitForAudit((r) => r.event === 'publish.close' && r.publisher === id);
    expect(closed.reason).toMatch(/^publisher lost/);
    const tunnel = await h.waitForAudit((r) => r.event === 'tunnel.close' && r.publisher === id);
    expect(tunnel.reason).toMatch(/publisher lost/);
    await retire(p);
    gatewayAlive();
  }, 60_000);

  it('SIGSTOP during a --stdio download: detected as "publisher lost (ping timeout)", the client exits non-zero', async () => {
    const p = publish();
    const id = await published(p);
    const run = endlessDownload();
    await untilBytes(run, 4 * MiB);
    const frozenAt = performance.now();
    p.proc.kill('SIGSTOP');
    const end = await run.exited;
    console.log(`publish faults: SIGSTOP during a download -> client exit ${end.code} after ${Math.round(end.at - frozenAt)} ms`);
    expect(end.code).not.toBe(0);
    const closed = await h.waitForAudit((r) => r.event === 'publish.close' && r.publisher === id);
    expect(closed.reason).toBe('publisher lost (ping timeout)');
    const tunnel = await h.waitForAudit((r) => r.event === 'tunnel.close' && r.publisher === id);
    expect(tunnel.reason).toMatch(/publisher lost \(ping timeout\)/);
    p.proc.kill('SIGCONT');
    // The thawed publisher finds its connection gone and comes back.
    await p.waitForStderr(/re-registered as alice/, 15_000);
    await retire(p);
    gatewayAlive();
  }, 60_000);

  it('SIGSTOP with HTTP requests waiting on it: they fail within seconds (not 10 s), and are refused cleanly afterwards', async () => {
    const p = publish();
    await published(p);
    const through = agent();
    expect(await get(through, '/~alice/web/warm')).toBe(200);
    p.proc.kill('SIGSTOP');
    const frozenAt = performance.now();
    const statuses = await Promise.all([get(through, '/~alice/web/a'), get(agent(), '/~alice/web/b')]);
    const detected = performance.now() - frozenAt;
    console.log(`publish faults: SIGSTOP with requests waiting -> ${statuses.join(', ')} after ${Math.round(detected)} ms`);
    expect(statuses.every((s) => s === 502 || s === 503)).toBe(true);
    expect(detected).toBeLessThan(5_000);
    await retire(p);
    gatewayAlive();
  }, 60_000);

  it('a network partition (relay frozen) during a download: the client exits non-zero; the publisher reconnects once it heals', async () => {
    const relay = await tcpRelay(h.port);
    relays.push(relay);
    const p = publish(relay);
    const id = await published(p);
    const run = endlessDownload();
    await untilBytes(run, 4 * MiB);
    const from = p.stderr().length;
    relay.mode = 'freeze';
    const cutAt = performance.now();
    const end = await run.exited;
    console.log(`publish faults: partition during a download -> client exit ${end.code} after ${Math.round(end.at - cutAt)} ms`);
    expect(end.code).not.toBe(0);
    expect((await h.waitForAudit((r) => r.event === 'publish.close' && r.publisher === id)).reason).toBe('publisher lost (ping timeout)');
    // The publisher notices too (its transfer was waiting on the gateway), then dials again once the network is back.
    await p.waitForStderr(/lost \(no answer to a ping|lost \(ping timeout/, 15_000, from);
    relay.mode = 'forward';
    await p.waitForStderr(/re-registered as alice/, 15_000, from);
    expect((await curl(h, '/~alice/web/healed', { client: alice, token: aliceToken })).status).toBe(200);
    await retire(p);
    gatewayAlive();
  }, 60_000);
});

describe('the publisher against a failing network', () => {
  it('a reset during the TLS handshake (an L4 balancer with no backend): the publisher retries and publishes once it can', async () => {
    const relay = await tcpRelay(h.port);
    relays.push(relay);
    relay.mode = 'reset';
    const p = publish(relay);
    while (relay.accepted < 4 && p.proc.exitCode === null) await wait(50);
    expect(p.proc.exitCode).toBeNull();
    relay.mode = 'forward';
    await published(p);
    expect(p.proc.exitCode).toBeNull();
    await retire(p);
  }, 60_000);
});

describe('many requests', () => {
  it('2,000 HTTP requests (4 clients, each one after another) through one published service all answer 200 (no connection drop after ~1,000 resets)', async () => {
    const p = publish();
    await published(p);
    const statuses = new Map<number | 'error', number>();
    const started = performance.now();
    // Four clients, so the rate stays above the ~33 resets/s a publisher's HTTP/2 stack forgives even on a slow machine.
    await Promise.all(
      [0, 1, 2, 3].map(async (client) => {
        const through = agent();
        for (let i = 0; i < 500; i++) {
          const status = await get(through, `/~alice/web/${client}/${i}`);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
        }
      }),
    );
    console.log(`publish faults: 2,000 requests (4 clients) in ${Math.round(performance.now() - started)} ms: ${JSON.stringify([...statuses])}`);
    expect([...statuses]).toEqual([[200, 2000]]);
    expect(p.stderr()).not.toMatch(/lost/);
    await retire(p);
    gatewayAlive();
  }, 120_000);
});

/** Bytes the published sink has taken in (every upload cell's progress). */
let sunk = 0;
/** A UNIX-socket sink that reads at most ~16 MiB/s, so an upload is still running when its fault comes. */
function slowSink(socket: import('node:net').Socket): void {
  socket.on('error', () => {});
  socket.on('data', (d: Buffer) => {
    sunk += d.length;
    socket.pause();
    setTimeout(() => socket.resume(), 4);
  });
}

type Fault = 'SIGKILL' | 'SIGSTOP' | 'partition';

/** One workload under a fault: `cutOff` resolves once the client has seen the cut, `clean` when it looked like a normal end. */
interface Workload {
  progressed(): boolean;
  cutOff: Promise<{ clean: boolean; detail: string; at: number }>;
  /** Stops the workload; true when nothing it saw was outside what a cut may look like. */
  stop(): Promise<boolean>;
}

const workloads: Record<'upload' | 'WebSocket' | 'HTTP load', () => Workload> = {
  upload() {
    // `tunnel --stdio sink.alice` with far more on stdin than the sink takes before the fault: it must exit non-zero.
    const from = sunk;
    const run = stdioTunnel([...gatewayFlags(h, alice, tokenFile).slice(0, -2), '--stdio', 'sink.alice'], cleanEnv(home), Buffer.alloc(96 * MiB), false);
    return {
      progressed: () => sunk - from >= 2 * MiB,
      cutOff: run.exited.then((e) => ({ clean: e.code === 0, detail: `exit ${e.code}`, at: e.at })),
      stop: async () => (run.kill(), true),
    };
  },
  WebSocket() {
    // An HTTP route to the published service carrying a WebSocket, echoing all the time: the close must not be 1000.
    const ws = new WebSocket(`wss://localhost:${h.port}/~alice/web/ws`, {
      ca: h.pki.caCert, cert: alice.cert, key: alice.key, headers: { authorization: `Bearer ${aliceToken}` }, perMessageDeflate: false,
    });
    let echoed = 0;
    ws.on('error', () => {});
    ws.on('message', () => (echoed += 1));
    ws.on('open', () => {
      const tick = setInterval(() => (ws.readyState === WebSocket.OPEN ? ws.send(Buffer.alloc(16 << 10)) : clearInterval(tick)), 10);
    });
    return {
      progressed: () => echoed >= 10,
      cutOff: new Promise((resolve) => ws.once('close', (code) => resolve({ clean: code === 1000, detail: `close ${code}`, at: performance.now() }))),
      stop: async () => (ws.terminate(), true),
    };
  },
  'HTTP load'() {
    // Four keep-alive clients one request after another; a cut request may be 502/503 or a reset, never anything else.
    const seen = new Map<number | 'error', number>();
    let running = true;
    let firstFailure: ((v: { clean: boolean; detail: string; at: number }) => void) | undefined;
    const cutOff = new Promise<{ clean: boolean; detail: string; at: number }>((resolve) => (firstFailure = resolve));
    const loops = [0, 1, 2, 3].map(async (client) => {
      const through = agent();
      for (let i = 0; running; i++) {
        const status = await get(through, `/~alice/web/load/${client}/${i}`);
        seen.set(status, (seen.get(status) ?? 0) + 1);
        if (status === 200) continue;
        firstFailure?.({ clean: false, detail: `first failure ${status}`, at: performance.now() });
        await wait(10);
      }
    });
    return {
      progressed: () => (seen.get(200) ?? 0) >= 20,
      cutOff,
      async stop() {
        running = false;
        await Promise.all(loops);
        console.log(`publish faults: HTTP load statuses ${JSON.stringify([...seen])}`);
        return [...seen.keys()].every((s) => s === 200 || s === 502 || s === 503 || s === 'error');
      },
    };
  },
};

const cells = (['SIGKILL', 'SIGSTOP', 'partition'] as const).flatMap((fault) => (['upload', 'WebSocket', 'HTTP load'] as const).map((load) => [fault, load] as const));

describe('every publisher fault during every kind of transfer', () => {
  it.each(cells)('%s during %s: the client sees an error, publish.close is written, the service comes back, the gateway lives', async (fault, load) => {
    const relay = fault === 'partition' ? await tcpRelay(h.port) : undefined;
    if (relay) relays.push(relay);
    let p = publish(relay);
    const id = await published(p);
    const work = workloads[load]();
    for (const until = Date.now() + 15_000; !work.progressed(); await wait(20)) if (Date.now() > until) throw new Error(`${load} never got going`);
    const from = p.stderr().length;
    const cutAt = performance.now();
    if (fault === 'SIGKILL') await p.stop('SIGKILL');
    else if (fault === 'SIGSTOP') p.proc.kill('SIGSTOP');
    else (relay as TcpRelay).mode = 'freeze';
    const seen = await work.cutOff;
    expect(seen.clean).toBe(false);
    expect((await h.waitForAudit((r) => r.event === 'publish.close' && r.publisher === id)).reason).toMatch(/^publisher lost/);
    // Recovery: a supervisor restarts a killed publisher; a frozen one is thawed; a partition heals.
    const healAt = performance.now();
    if (fault === 'SIGKILL') {
      await retire(p);
      p = publish();
      await published(p);
    } else {
      if (fault === 'SIGSTOP') p.proc.kill('SIGCONT');
      else (relay as TcpRelay).mode = 'forward';
      await p.waitForStderr(/re-registered as alice/, 15_000, from);
    }
    let status: number | 'error' = 'error';
    for (const until = performance.now() + 15_000; status !== 200 && performance.now() < until; ) status = await get(agent(), '/~alice/web/back');
    const recovered = performance.now() - healAt;
    expect(status).toBe(200);
    expect(await work.stop()).toBe(true);
    console.log(`publish faults: ${fault} during ${load}: client saw ${seen.detail}, detected ${Math.round(seen.at - cutAt)} ms, serving again ${Math.round(recovered)} ms after ${fault === 'SIGKILL' ? 'the restart' : 'the heal'}`);
    await retire(p);
    gatewayAlive();
  }, 60_000);
});

/** Starts an upload, a WebSocket and HTTP load together and waits until each is moving. */
async function everyWorkload(): Promise<[string, Workload][]> {
  const loads = (['upload', 'WebSocket', 'HTTP load'] as const).map((load): [string, Workload] => [load, workloads[load]()]);
  for (const until = Date.now() + 15_000; !loads.every(([, w]) => w.progressed()); await wait(20)) if (Date.now() > until) throw new Error('a workload never got going');
  return loads;
}

/** Every workload saw the cut as an error (not a clean end); logs each one's time to notice. */
async function expectAllCut(loads: [string, Workload][], cutAt: number, fault: string): Promise<void> {
  for (const [load, work] of loads) {
    const seen = await work.cutOff;
    console.log(`publish faults: ${fault} during ${load}: client saw ${seen.detail}, detected ${Math.round(seen.at - cutAt)} ms`);
    expect(seen.clean).toBe(false);
  }
}

describe('the gateway going away', () => {
  it('SIGKILL and restart during an upload, a WebSocket and HTTP load: each sees an error; the publisher is serving again within about a second of the gateway being ready', async () => {
    const p = publish();
    await published(p);
    const from = p.stderr().length;
    const loads = await everyWorkload();
    const killedAt = performance.now();
    // The gateway stays down long enough for a doubling backoff to have grown past several seconds.
    restarted = await restartGateway(h, 6_000);
    await expectAllCut(loads, killedAt, 'gateway SIGKILL');
    const readyAt = performance.now();
    let status: number | 'error' = 'error';
    while (performance.now() - readyAt < 15_000) {
      status = await get(agent(), '/~alice/web/again');
      if (status === 200) break;
      await wait(50);
    }
    const back = performance.now() - readyAt;
    console.log(`publish faults: gateway killed, down 6 s, restarted: serving ${Math.round(back)} ms after it was ready`);
    expect(status).toBe(200);
    expect(back).toBeLessThan(2_500);
    expect(p.stderr().slice(from)).toMatch(/re-registered as alice/);
    for (const [, work] of loads) expect(await work.stop()).toBe(true);
  }, 60_000);

  it('SIGTERM during a --stdio download, an upload, a WebSocket and HTTP load: each cut ends as an error, publish.close precedes gateway.stop, exit 0', async () => {
    const run = endlessDownload();
    await untilBytes(run, 4 * MiB);
    const loads = await everyWorkload();
    const gateway = restarted as ChildProcess;
    const exited = new Promise<number | null>((resolve) => gateway.once('exit', (code) => resolve(code)));
    const stoppedAt = performance.now();
    gateway.kill('SIGTERM');
    const end = await run.exited;
    expect(end.code).not.toBe(0);
    await expectAllCut(loads, stoppedAt, 'gateway SIGTERM');
    for (const [, work] of loads) expect(await work.stop()).toBe(true);
    expect(await exited).toBe(0);
    const records = h.audit();
    const start = records.findLastIndex((r) => r.event === 'gateway.start');
    const close = records.findIndex((r, i) => i > start && r.event === 'publish.close');
    expect(close).toBeGreaterThan(start);
    expect(records.findIndex((r, i) => i > start && r.event === 'gateway.stop')).toBeGreaterThan(close);
  }, 60_000);
});
