// Datagram UNIX socket peers for the tests: socat as the service (an echo that answers each datagram at its
// sender's path) and as a local client bound to a path of its own, and logger as a sender bound nowhere.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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

/** The sockets of the live flows of the gateway process `pid` (its directory under the temporary directory), by access. */
export function flowSockets(pid: number, access: 'private' | 'shared' = 'private'): string[] {
  const dirs = readdirSync(tmpdir()).filter((name) => name.startsWith(`gatehouse-unixgram-${pid}-`));
  return dirs.flatMap((dir) => {
    const sub = join(tmpdir(), dir, access);
    return existsSync(sub) ? readdirSync(sub).filter((f) => f.endsWith('.sock')).map((f) => join(sub, f)) : [];
  });
}

/** What a local user's attack did: the bound paths it found, how many datagrams it sent, the errors of the others. */
export interface StrangerResult {
  found: string[];
  sent: number;
  errors: string[];
}

/** The system's python3: one under root's home (a pyenv shim) is not another user's to run. */
const SYSTEM_PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

// Reads /proc/net/unix (world-readable: every bound AF_UNIX path), takes the first path holding argv[1] and
// ending in .sock, and sends it argv[2] datagrams, from a socket bound at argv[3] if given (else bound nowhere).
const STRANGER = `
import errno, json, socket, sys
rows = [l.split() for l in open('/proc/net/unix').read().splitlines()[1:]]
found = sorted({r[7] for r in rows if len(r) > 7 and sys.argv[1] in r[7] and r[7].endswith('.sock')})
out = {'found': found, 'sent': 0, 'errors': []}
if found:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if len(sys.argv) > 3: s.bind(sys.argv[3])
    s.setblocking(False)
    for i in range(int(sys.argv[2])):
        try:
            s.sendto(b'stranger-%d' % i, found[0]); out['sent'] += 1
        except OSError as e:
            out['errors'].append(errno.errorcode.get(e.errno, str(e.errno)))
print(json.dumps(out))
`;

/**
 * Another local user (`runAs`, through setpriv) who finds a flow's socket in /proc/net/unix (the first bound
 * path holding `marker`) and sends it `count` datagrams. `forgeFrom`: the service's socket path, which the user
 * takes over in user and mount namespaces of their own (`unshare -Urm`, a tmpfs over its directory) and sends
 * from, so that the kernel names the service's path as the sender.
 */
export function strangerSends(runAs: { uid: number; gid: number }, marker: string, count: number, forgeFrom?: string): Promise<StrangerResult> {
  const ids = ['setpriv', `--reuid=${runAs.uid}`, `--regid=${runAs.gid}`, '--clear-groups'];
  const python = [SYSTEM_PYTHON, '-c', STRANGER, marker, String(count), ...(forgeFrom ? [forgeFrom] : [])];
  const argv = forgeFrom
    ? [...ids, 'unshare', '-Urm', 'sh', '-c', 'mount -t tmpfs none "$0" && exec "$@"', forgeFrom.slice(0, forgeFrom.lastIndexOf('/')), ...python]
    : [...ids, ...python];
  return new Promise((resolve, reject) => {
    const proc = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    proc.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as StrangerResult) : reject(new Error(`stranger exited ${code}: ${err}`))));
  });
}
