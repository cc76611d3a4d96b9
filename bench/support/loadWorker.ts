// One load-generator process of `npm run bench` (started N times, one per core given to the load):
// HTTP closed loop, paced low-load latency, TLS handshakes (full or resumed), or idle CONNECT tunnels.
import { readFileSync } from 'node:fs';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { Pool } from 'undici';

/** What the parent asks of one worker (argv[2], JSON). */
export type LoadJob =
  | { mode: 'http'; target: Target; connections: number; seconds: number; warmupSeconds: number; token: string }
  | { mode: 'latency'; target: Target; rate: number; seconds: number; warmupSeconds: number; token: string }
  | { mode: 'handshake'; target: Target; resume: boolean; concurrency: number; seconds: number; warmupSeconds: number }
  | { mode: 'idle'; target: Target; count: number; concurrency: number; connectRoute?: string; token: string }
  | { mode: 'bulk'; target: Target; streams: number; bytes: number; direction: 'up' | 'down'; connectRoute?: string; token: string };

export interface Target {
  /** https://localhost:PORT, or http://localhost with socketPath (direct to the upstream). */
  url: string;
  socketPath?: string;
  tls?: { cert: string; key: string; ca: string };
}

/** What one worker reports (one JSON line on stdout). */
export interface LoadReport {
  completed: number;
  errors: number;
  firstError?: string;
  seconds: number;
  /** Request or handshake latencies in ms (measured window only). */
  latencies: number[];
  /** CPU this worker used during the measured window, in seconds (user + system). */
  cpuSeconds: number;
  resumed?: number;
  opened?: number;
}

const job = JSON.parse(process.argv[2] ?? '{}') as LoadJob;
const tlsFiles = job.target.tls && { cert: readFileSync(job.target.tls.cert), key: readFileSync(job.target.tls.key), ca: readFileSync(job.target.tls.ca) };
const port = Number(new URL(job.target.url).port);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pool(connections: number): Pool {
  return new Pool(job.target.url, {
    connections,
    pipelining: 1,
    ...(tlsFiles ? { connect: { ...tlsFiles, servername: 'localhost' } } : { socketPath: job.target.socketPath }),
  });
}

/** Runs `body` over the warm-up, then measures the CPU and wall time of the measured window. */
async function measured(warmupSeconds: number, seconds: number, body: (inWindow: () => boolean, until: number) => Promise<void>): Promise<{ cpuSeconds: number; seconds: number }> {
  const warmUntil = performance.now() + warmupSeconds * 1000;
  const until = warmUntil + seconds * 1000;
  let cpu0: NodeJS.CpuUsage | undefined;
  const startCpu = setTimeout(() => (cpu0 = process.cpuUsage()), warmupSeconds * 1000);
  await body(() => performance.now() >= warmUntil, until);
  clearTimeout(startCpu);
  const cpu = process.cpuUsage(cpu0);
  return { cpuSeconds: (cpu.user + cpu.system) / 1e6, seconds };
}

async function httpLoad(j: Extract<LoadJob, { mode: 'http' | 'latency' }>): Promise<LoadReport> {
  const p = pool(j.mode === 'http' ? j.connections : 1);
  const headers = { authorization: `Bearer ${j.token}` };
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const one = async (inWindow: () => boolean) => {
    const t0 = performance.now();
    try {
      const res = await p.request({ path: '/bench', method: 'GET', headers });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
      if (inWindow()) latencies.push(performance.now() - t0);
    } catch (err) {
      errors++;
      firstError ??= (err as Error).message;
    }
  };
  const window = await measured(j.warmupSeconds, j.seconds, async (inWindow, until) => {
    if (j.mode === 'http') {
      await Promise.all(Array.from({ length: j.connections }, async () => {
        while (performance.now() < until) await one(inWindow);
      }));
      return;
    }
    // Low load: one request at a time at a fixed rate, so the latency is the path's, not a queue's.
    const interval = 1000 / j.rate;
    for (let next = performance.now(); performance.now() < until; next += interval) {
      await one(inWindow);
      const wait = next + interval - performance.now();
      if (wait > 0) await sleep(wait);
    }
  });
  await p.close();
  return { completed: latencies.length, errors, firstError, latencies, ...window };
}

function tlsOptions(session?: Buffer): ConnectionOptions {
  return { host: '127.0.0.1', port, servername: 'localhost', ...tlsFiles, ...(session && { session }) };
}

/**
 * One handshake, done at `secureConnect`. TLS 1.2: there the client's handshake ends only after the
 * server's Finished, i.e. after the server verified the client certificate, so a count is a handshake
 * the server completed. (In TLS 1.3 the client finishes first, and waiting for the server's session
 * ticket instead measures Nagle + delayed ACK, ~40 ms, not the handshake.)
 */
function handshake(session?: Buffer): Promise<{ ticket: Buffer | undefined; reused: boolean }> {
  return new Promise((ok, fail) => {
    const socket: TLSSocket = tlsConnect({ ...tlsOptions(session), maxVersion: 'TLSv1.2' });
    const timer = setTimeout(() => (socket.destroy(), fail(new Error('no handshake within 5 s'))), 5000);
    let ticket: Buffer | undefined;
    socket.on('session', (t: Buffer) => (ticket = t));
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const reused = socket.isSessionReused();
      // The ticket of a TLS 1.2 handshake arrives before secureConnect; end politely so the server sees a clean close.
      socket.end();
      socket.on('error', () => {});
      ok({ ticket: ticket ?? (socket.getSession() as Buffer | undefined), reused });
    });
    socket.once('error', (err) => (clearTimeout(timer), fail(err)));
  });
}

async function handshakes(j: Extract<LoadJob, { mode: 'handshake' }>): Promise<LoadReport> {
  const latencies: number[] = [];
  let errors = 0;
  let resumed = 0;
  let firstError: string | undefined;
  const window = await measured(j.warmupSeconds, j.seconds, async (inWindow, until) => {
    await Promise.all(Array.from({ length: j.concurrency }, async () => {
      let ticket: Buffer | undefined;
      while (performance.now() < until) {
        const t0 = performance.now();
        try {
          const r = await handshake(j.resume ? ticket : undefined);
          // Resumption: keep the first full handshake's ticket (a resumed one issues a fresh one too).
          ticket ??= r.ticket;
          if (inWindow()) {
            latencies.push(performance.now() - t0);
            if (r.reused) resumed++;
          }
        } catch (err) {
          errors++;
          firstError ??= (err as Error).message;
          await sleep(10);
        }
      }
    }));
  });
  return { completed: latencies.length, errors, firstError, latencies, resumed, ...window };
}

/** Opens `count` TLS connections (with CONNECT when a route is given), reports, and holds them until stdin closes. */
async function idle(j: Extract<LoadJob, { mode: 'idle' }>): Promise<void> {
  const held: TLSSocket[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;
  const openOne = () =>
    new Promise<void>((ok, fail) => {
      const socket = tlsConnect(tlsOptions());
      socket.once('error', fail);
      socket.once('secureConnect', () => {
        if (!j.connectRoute) return ok(void held.push(socket));
        socket.write(`CONNECT ${j.connectRoute}:1 HTTP/1.1\r\nHost: ${j.connectRoute}:1\r\nProxy-Authorization: Bearer ${j.token}\r\n\r\n`);
        socket.once('data', (d: Buffer) => (/^HTTP\/1\.1 200/.test(d.toString('latin1')) ? ok(void held.push(socket)) : fail(new Error(d.toString('latin1').split('\r\n')[0]))));
      });
    });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: j.concurrency }, async () => {
    while (next < j.count) {
      next++;
      await openOne().catch((err: Error) => {
        errors++;
        firstError ??= err.message;
      });
    }
  }));
  const cpu = process.cpuUsage(cpu0);
  for (const s of held) s.on('error', () => {});
  const report: LoadReport = { completed: held.length, opened: held.length, errors, firstError, latencies: [], seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
  process.stdout.write(JSON.stringify(report) + '\n');
  process.stdin.resume();
  process.stdin.once('end', () => {
    for (const s of held) s.destroy();
    process.exit(0);
  });
}

/** A TLS connection (through CONNECT when a route is given) to the benchmark's holder: a sink, and a source on `SEND n`. */
function openStream(j: { connectRoute?: string; token: string }): Promise<TLSSocket> {
  return new Promise((ok, fail) => {
    const socket = tlsConnect(tlsOptions());
    socket.once('error', fail);
    socket.once('secureConnect', () => {
      if (!j.connectRoute) return ok(socket);
      socket.write(`CONNECT ${j.connectRoute}:1 HTTP/1.1\r\nHost: ${j.connectRoute}:1\r\nProxy-Authorization: Bearer ${j.token}\r\n\r\n`);
      socket.once('data', (d: Buffer) => (/^HTTP\/1\.1 200/.test(d.toString('latin1')) ? ok(socket) : fail(new Error(d.toString('latin1').split('\r\n')[0]))));
    });
  });
}

/** Moves `bytes` per stream up (into the sink) or down (from the source) on `streams` connections at once. */
async function bulk(j: Extract<LoadJob, { mode: 'bulk' }>): Promise<LoadReport> {
  const sockets = await Promise.all(Array.from({ length: j.streams }, () => openStream(j)));
  const chunk = Buffer.alloc(256 << 10, 7);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let errors = 0;
  await Promise.all(sockets.map(async (socket) => {
    if (j.direction === 'up') {
      for (let sent = 0; sent < j.bytes; sent += chunk.length) {
        if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r));
      }
      socket.end();
      await new Promise((r) => socket.once('close', r));
      return;
    }
    let got = 0;
    socket.on('data', (d: Buffer) => (got += d.length));
    socket.write(`SEND ${j.bytes}\n`);
    await new Promise((r) => socket.once('end', r));
    socket.destroy();
    if (got !== j.bytes) errors++;
  }));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { completed: j.streams, errors, latencies: [], seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

if (job.mode === 'idle') await idle(job);
else if (job.mode === 'bulk') {
  const report = await bulk(job);
  process.stdout.write(JSON.stringify(report) + '\n', () => process.exit(0));
}
else {
  const report = job.mode === 'handshake' ? await handshakes(job) : await httpLoad(job);
  // Exit only once the report is out: a large report to a pipe is written asynchronously.
  report.latencies = report.latencies.map((l) => Math.round(l * 1000) / 1000);
  process.stdout.write(JSON.stringify(report) + '\n', () => process.exit(0));
}
