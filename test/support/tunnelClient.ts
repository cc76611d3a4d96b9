// Drives the real `gatehouse tunnel` client as a child process against a harness gateway, plus the
// small UNIX-socket services tunnels lead to (echo, byte sink, byte source).
import { spawn, type ChildProcess } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { dirname, join } from 'node:path';
import { cli, cliNode, inOneHour, mintRaw, type Harness } from './gatewayHarness.ts';
import type { TestClientCertificate } from './pki.ts';

export interface TunnelProcess {
  proc: ChildProcess;
  stderr(): string;
  /** `ready:` lines, parsed: the local address (`127.0.0.1:PORT` or `unix:PATH`) and its port. */
  ready: Array<{ label: string; route: string; port?: number }>;
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** An environment without the caller's GATEHOUSE_* settings, HOME pointing at `home`. */
export function cleanEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GATEHOUSE_')) env[k] = v;
  return { ...env, HOME: home, ...extra };
}

/** Writes a token for `user` (valid one hour) to `file`, mode 0600, and returns the file. */
export function writeToken(h: Harness, file: string, user: string, extra = ''): string {
  mkdirSync(dirname(file), { recursive: true });
  // The right to publish any service (token mint --publish): the tests that publish use these tokens too.
  writeFileSync(file, mintRaw(h.rootKey.privateKey, `user("${user}"); publish_right("*"); check if time($t), $t <= ${inOneHour()}; ${extra}`) + '\n', { mode: 0o600 });
  return file;
}

/** The flags that reach the harness gateway with `client`'s certificate. */
export function gatewayFlags(h: Harness, client: TestClientCertificate, tokenFile: string, transport: 'connect' | 'websocket' | 'http2' = 'connect'): string[] {
  return ['--gateway', `https://localhost:${h.port}`, '--ca', h.pki.caCertPath, '--cert', client.certPath, '--key', client.keyPath, '--token-file', tokenFile, '--transport', transport];
}

/**
 * Starts `gatehouse tunnel ARGS` and waits for `readyCount` ready lines (or its exit). `command` is the
 * program and its leading arguments (default: this Node running the sources' bin/gatehouse.js).
 */
export function startTunnel(args: string[], env: NodeJS.ProcessEnv, readyCount = 1, command: string[] = [cliNode, cli]): Promise<TunnelProcess> {
  const [program = process.execPath, ...leading] = command;
  const proc = spawn(program, [...leading, 'tunnel', ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const ready: TunnelProcess['ready'] = [];
  proc.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
    ready.length = 0;
    for (const m of err.matchAll(/^ready: (\S+) -> (\S+) via/gm)) {
      const port = /:(\d+)$/.exec(m[1] as string);
      ready.push({ label: m[1] as string, route: m[2] as string, ...(port && !(m[1] as string).startsWith('unix:') && { port: Number(port[1]) }) });
    }
  });
  const handle: TunnelProcess = {
    proc,
    stderr: () => err,
    ready,
    async waitForStderr(pattern, timeoutMs = 10_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const m = pattern.exec(err);
        if (m) return m;
        if (Date.now() > until) throw new Error(`stderr never matched ${pattern}:\n${err}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
      return new Promise((ok) => {
        proc.once('exit', (code) => ok(code));
        proc.kill(signal);
      });
    },
  };
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`tunnel did not get ready:\n${err}`)), 20_000);
    const check = () => {
      if (ready.length >= readyCount) {
        clearTimeout(timer);
        proc.stderr?.off('data', check);
        ok(handle);
      }
    };
    proc.stderr?.on('data', check);
    proc.once('exit', () => {
      clearTimeout(timer);
      if (ready.length < readyCount) ok(handle); // the caller inspects the exit code and stderr
    });
  });
}

export interface RunResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs `gatehouse tunnel ARGS` to completion, feeding `input` on stdin. */
export function runTunnel(args: string[], env: NodeJS.ProcessEnv, input: Buffer | string = '', timeoutMs = 20_000): Promise<RunResult> {
  return new Promise((ok) => {
    const proc = spawn(cliNode, [cli, 'tunnel', ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    proc.stdout.on('data', (d: Buffer) => out.push(d));
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    proc.stdin.on('error', () => {});
    proc.stdin.end(input);
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.once('close', (code) => {
      clearTimeout(timer);
      ok({ code, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

/** A UNIX-socket server in this process; half-open so services can answer after the client's FIN. */
export function listenUnix(path: string, onConnection: (socket: Socket) => void): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true });
  const server = createServer({ allowHalfOpen: true }, onConnection);
  return new Promise((ok, fail) => server.once('error', fail).listen(path, () => ok(server)));
}

/** Echoes every byte back; ends its side when the client ends. */
export function echoHandler(socket: Socket): void {
  socket.on('error', () => {});
  socket.pipe(socket);
}

/**
 * A "count then answer" service: reads until the client's FIN (half-close), then answers with
 * `<bytes> <sha256>` and ends. Only correct half-close in the client->service direction gets an answer.
 */
export function countHandler(socket: Socket): void {
  socket.on('error', () => {});
  const hash = createHash('sha256');
  let n = 0;
  socket.on('data', (d: Buffer) => {
    n += d.length;
    hash.update(d);
  });
  socket.on('end', () => socket.end(`${n} ${hash.digest('hex')}\n`));
}

/** Deterministic pseudo-random bytes (an AES-CTR keystream): `total` bytes in chunks of `chunk`. */
export function* keystream(total: number, chunk = 64 << 10): Generator<Buffer> {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), Buffer.alloc(16, 1));
  const zeros = Buffer.alloc(chunk);
  for (let sent = 0; sent < total; sent += chunk) yield cipher.update(zeros.subarray(0, Math.min(chunk, total - sent)));
}

/** The sha256 of `keystream(total)`. */
/** Two tcp routes for bulk transfers: `sink` (bytes up) and `source` (bytes down), sockets in the harness's run/. */
export const sinkSourceRoutes = `  - name: sink
    protocols: [tcp]
    upstream: unix:run/sink.sock
    policy: |
      allow if user($u);
  - name: source
    protocols: [tcp]
    upstream: unix:run/source.sock
    policy: |
      allow if user($u);
`;

export function keystreamSha256(total: number): string {
  const hash = createHash('sha256');
  for (const c of keystream(total)) hash.update(c);
  return hash.digest('hex');
}

/**
 * A "source" service: reads one line `<bytes>\n`, then sends that many keystream bytes and ends,
 * honouring backpressure. The client may half-close right after its line.
 */
export function sourceHandler(socket: Socket): void {
  socket.on('error', () => {});
  let line = '';
  const onData = (d: Buffer) => {
    line += d.toString('latin1');
    const nl = line.indexOf('\n');
    if (nl < 0) return;
    socket.off('data', onData);
    socket.resume(); // ignore anything after the line, and see the client's FIN
    const chunks = keystream(Number(line.slice(0, nl)));
    const pump = () => {
      for (let next = chunks.next(); !next.done; next = chunks.next()) {
        if (!socket.write(next.value)) return void socket.once('drain', pump);
      }
      socket.end();
    };
    pump();
  };
  socket.on('data', onData);
}

export interface Transfer {
  bytes: number;
  sha256: string;
  ms: number;
}

/** Streams `total` keystream bytes into a local listener leading to a count service; returns its answer. */
export function upload(port: number, total: number): Promise<Transfer & { sentSha256: string }> {
  return new Promise((ok, fail) => {
    const started = performance.now();
    const sent = createHash('sha256');
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    socket.on('error', fail);
    socket.on('close', () => {
      const [bytes, sha256] = answer.trim().split(' ');
      ok({ bytes: Number(bytes), sha256: sha256 ?? '', sentSha256: sent.digest('hex'), ms: performance.now() - started });
    });
    Readable.from((function* () {
      for (const c of keystream(total)) {
        sent.update(c);
        yield c;
      }
    })()).pipe(socket);
  });
}

/** Asks a source service (through a local listener) for `total` bytes, half-closes, and hashes what arrives. */
export function download(port: number, total: number): Promise<Transfer> {
  return new Promise((ok, fail) => {
    const started = performance.now();
    const hash = createHash('sha256');
    let bytes = 0;
    const socket = connect(port, '127.0.0.1');
    socket.on('data', (d: Buffer) => {
      bytes += d.length;
      hash.update(d);
    });
    socket.on('error', fail);
    socket.on('close', () => ok({ bytes, sha256: hash.digest('hex'), ms: performance.now() - started }));
    socket.end(`${total}\n`);
  });
}

/** Peak resident memory (VmHWM) of a process, in MiB, read from /proc. */
export function peakRssMiB(pid: number | undefined): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmHWM:\s+(\d+) kB/m.exec(status);
    return m ? Math.round(Number(m[1]) / 1024) : undefined;
  } catch {
    return undefined;
  }
}

export function tunnelDir(h: Harness, name: string): string {
  const dir = join(h.dir, name);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}
