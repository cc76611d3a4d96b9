// Datagram UNIX socket peers for the tests: socat as the service (an echo that answers each datagram at its
// sender's path) and as a local client bound to a path of its own, and logger as a sender bound nowhere.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

/** A `protocols: [udp]` route to the datagram socket at `path` (a YAML list item); `extra`: more keys, indented. */
export function unixgramRoute(name: string, path: string, extra = ''): string {
  return `  - name: ${name}\n    protocols: [udp]\n    upstream: unixgram:${path}\n${extra}    policy: |\n      allow if user($u), protocol("udp");\n`;
}

export interface UnixgramEcho {
  path: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

async function until(ready: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `socat UNIX-RECVFROM:PATH,fork EXEC:cat`: answers every datagram with itself, from PATH. `runAs`: setpriv's ids. */
export function startUnixgramEcho(path: string, runAs?: { uid: number; gid: number }): Promise<UnixgramEcho> {
  return startSocat(['socat', `UNIX-RECVFROM:${path},fork,unlink-early`, 'EXEC:cat'], path, runAs);
}

/** `socat -u UNIX-RECVFROM:PATH,fork -`: takes datagrams and answers none; `received()` is what came. */
export async function startUnixgramSink(path: string): Promise<UnixgramEcho & { received(): string }> {
  let received = '';
  const sink = await startSocat(['socat', '-u', `UNIX-RECVFROM:${path},fork,unlink-early`, '-'], path, undefined, (d) => (received += d.toString()));
  return { ...sink, received: () => received };
}

export async function startSocat(socat: string[], path: string, runAs?: { uid: number; gid: number }, onStdout?: (d: Buffer) => void): Promise<UnixgramEcho> {
  const argv = runAs ? ['setpriv', `--reuid=${runAs.uid}`, `--regid=${runAs.gid}`, '--clear-groups', ...socat] : socat;
  const proc = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', onStdout ? 'pipe' : 'ignore', 'pipe'] });
  if (onStdout) proc.stdout?.on('data', onStdout);
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  await until(() => existsSync(path) || proc.exitCode !== null, `socat at ${path}`);
  if (proc.exitCode !== null) throw new Error(`socat exited: ${err}`);
  return {
    path,
    proc,
    stop: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

/** One datagram from a socket bound at `from` to `to`, and the answers that come back within `waitMs`. */
export function sendFromPath(from: string, to: string, payload: string | Buffer, waitMs = 3000): Promise<{ answers: string; code: number | null }> {
  return new Promise((resolve) => {
    // -T: socat waits this long for answers after the datagram went out, then ends.
    const proc = spawn('socat', ['-T', String(waitMs / 1000), '-', `UNIX-SENDTO:${to},bind=${from},unlink-early`], { stdio: ['pipe', 'pipe', 'ignore'] });
    let answers = '';
    proc.stdout.on('data', (d: Buffer) => (answers += d.toString()));
    proc.stdin.write(payload);
    proc.once('exit', (code) => resolve({ answers, code }));
  });
}

/** `logger -d --socket PATH`: a datagram from a socket bound nowhere (it cannot be answered). */
export function logTo(path: string, message: string): Promise<number | null> {
  return new Promise((resolve) => {
    const proc = spawn('logger', ['-d', '--socket', path, '--socket-errors=on', message], { stdio: 'ignore' });
    proc.once('exit', (code) => resolve(code));
  });
}
