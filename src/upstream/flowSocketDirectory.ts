// Where the gateway binds the datagram UNIX sockets of its unixgram flows: one directory per gateway process,
// reachable (not listable) by the services that reply to them, its leftovers from dead processes removed.
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_SOCKET_PATH_BYTES } from './unixgramModule.ts';

/**
 * Modes. A service replies with sendto() to the flow's socket: it needs search (x) on every directory on the
 * way and write (w) on the socket, whoever runs it, so the directory is 0711 (no one else can list it) and the
 * socket 0622. The socket's name is 128 random bits that only the target learns (as the sender of our
 * datagrams); anyone else who sends to it anyway is dropped, since the flow takes only the target's datagrams.
 */
const DIRECTORY_MODE = 0o711;
export const FLOW_SOCKET_MODE = 0o622;
const PREFIX = 'unixgram-';

export type FlowDirectory = { ok: true; dir: string } | { ok: false; reason: string };

/** systemd's RuntimeDirectory= (the service's own), else a directory of this user's under the temporary directory. */
function baseDirectory(): string {
  const runtime = process.env.RUNTIME_DIRECTORY?.split(':')[0];
  return runtime || join(tmpdir(), `gatehouse-${process.getuid?.() ?? 'user'}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Directories of gateway processes no longer running (a crash or kill left their flow sockets): removed. */
async function sweepLeftovers(base: string): Promise<void> {
  for (const name of await readdir(base).catch(() => [] as string[])) {
    const pid = Number(name.slice(PREFIX.length));
    if (!name.startsWith(PREFIX) || !Number.isInteger(pid) || (pid !== process.pid && alive(pid))) continue;
    await rm(join(base, name), { recursive: true, force: true }).catch(() => undefined);
  }
}

/** The base must be ours and no one else's to write: another user could otherwise swap our sockets. */
async function ownedDirectory(dir: string, create: boolean): Promise<string | undefined> {
  if (create) await mkdir(dir, { recursive: true, mode: DIRECTORY_MODE }).catch(() => undefined);
  let st;
  try {
    st = await lstat(dir);
  } catch (err) {
    return `${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
  const uid = process.getuid?.();
  if (!st.isDirectory()) return `${dir} is not a directory`;
  if (uid !== undefined && st.uid !== uid) return `${dir} belongs to uid ${st.uid}, not to the gateway's user (uid ${uid})`;
  if ((st.mode & 0o022) !== 0) return `${dir} has mode ${(st.mode & 0o777).toString(8)}: others could replace the gateway's sockets`;
  return undefined;
}

let prepared: Promise<FlowDirectory> | undefined;

/** This process's directory, prepared on the first unixgram flow (its leftovers swept then). */
export function flowSocketDirectory(): Promise<FlowDirectory> {
  prepared ??= (async (): Promise<FlowDirectory> => {
    const base = baseDirectory();
    const dir = join(base, `${PREFIX}${process.pid}`);
    const fail = (problem: string): FlowDirectory => ({ ok: false, reason: `cannot use ${dir} for datagram sockets: ${problem}` });
    const baseProblem = await ownedDirectory(base, true);
    if (baseProblem) return fail(baseProblem);
    await sweepLeftovers(base);
    const dirProblem = await ownedDirectory(dir, true);
    if (dirProblem) return fail(dirProblem);
    // mkdir's mode is cut by the umask: the services that reply need x on it.
    await chmod(dir, DIRECTORY_MODE);
    // A flow's senders are named after its socket, with a number (boundDatagramSocket.ts): room for it.
    if (Buffer.byteLength(flowSocketPath(dir)) + 6 > MAX_SOCKET_PATH_BYTES) return { ok: false, reason: `${dir} is too long for a socket path (set RUNTIME_DIRECTORY or TMPDIR to a shorter directory)` };
    return { ok: true, dir };
  })();
  return prepared.then((result) => {
    // A failure (a directory not there yet) is tried again on the next flow.
    if (!result.ok) prepared = undefined;
    return result;
  });
}

/** A fresh, unguessable socket path in `dir`. */
export function flowSocketPath(dir: string): string {
  return join(dir, `${randomBytes(16).toString('base64url')}.sock`);
}
