// Where the gateway binds the datagram UNIX sockets of its unixgram flows: one directory per gateway process,
// created afresh (mkdtemp), private unless a route lets other users' services reply; its dead leftovers removed.
import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync, rmSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_SOCKET_PATH_BYTES } from './unixgramModule.ts';

/**
 * Who may send to a flow's sockets. Every bound AF_UNIX path is listed in the world-readable /proc/net/unix,
 * so a flow's socket name is no secret, and node-unix-socket can neither connect() a receiver to its target
 * nor read the sender's credentials: the file modes are the only lock. `gateway-user` (the default): a 0700
 * directory and 0600 sockets, which only the gateway's user and root can send to. `any-local-user` (a route's
 * `unixgramReplies: any-local-user`, for a service run as another user): a 0711 directory and 0622 sockets,
 * which every local user can send to. The flow drops and counts what does not come from the target's path,
 * but that path is only the string the sender bound: a user with unprivileged user namespaces (unshare -Urm)
 * binds it in a mount of their own and forges the service's answers, and anyone can flood the flow's queue.
 */
export type FlowSocketAccess = 'gateway-user' | 'any-local-user';

const ACCESS: Record<FlowSocketAccess, { subdirectory: string; directoryMode: number; socketMode: number }> = {
  'gateway-user': { subdirectory: 'private', directoryMode: 0o700, socketMode: 0o600 },
  'any-local-user': { subdirectory: 'shared', directoryMode: 0o711, socketMode: 0o622 },
};
/** The process's directory: searchable (not listable) so that the shared subdirectory can be reached. */
const PROCESS_DIRECTORY_MODE = 0o711;
const PREFIX = 'gatehouse-unixgram-';
/** In a process directory: which boot, PID namespace and process made it, so a sweep can prove it dead. */
const MARKER = '.owner';

export type FlowDirectory = { ok: true; dir: string; socketMode: number } | { ok: false; reason: string };

/** This boot and PID namespace (Linux): a pid means a process only within both. */
function processScope(): string | undefined {
  try {
    return `${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()} ${readlinkSync('/proc/self/ns/pid')}`;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Process directories in `base` of gateway processes no longer running (a crash or kill left their flow
 * sockets): removed only when their marker proves it: written in this boot and PID namespace by a pid that is
 * not running. Anything else (no marker, another namespace's gateway sharing the base) is left alone.
 */
export async function sweepLeftovers(base: string): Promise<void> {
  const scope = processScope();
  if (scope === undefined) return;
  for (const name of await readdir(base).catch(() => [] as string[])) {
    if (!name.startsWith(PREFIX)) continue;
    const marker = await readFile(join(base, name, MARKER), 'utf8').catch(() => '');
    const match = /^(.+) (\d+)\n$/.exec(marker);
    const pid = Number(match?.[2]);
    if (!match || match[1] !== scope || pid === process.pid || alive(pid)) continue;
    await rm(join(base, name), { recursive: true, force: true }).catch(() => undefined);
  }
}

/** systemd's RuntimeDirectory= must be ours and no one else's to write: another user could swap our sockets. */
async function ownedDirectory(dir: string): Promise<string | undefined> {
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

type Prepared = { ok: true; dir: string } | { ok: false; reason: string };

/**
 * The process's directory: in systemd's RuntimeDirectory= (the service's own; leftovers of dead processes
 * swept), else in the temporary directory. Made with mkdtemp (a new name no one could have created first,
 * owned by the gateway) and removed when the process exits.
 */
async function prepareProcessDirectory(): Promise<Prepared> {
  const runtime = process.env.RUNTIME_DIRECTORY?.split(':')[0];
  const base = runtime || tmpdir();
  const fail = (problem: string): Prepared => ({ ok: false, reason: `cannot make a directory in ${base} for datagram sockets: ${problem}` });
  if (runtime) {
    const problem = await ownedDirectory(runtime);
    if (problem) return fail(problem);
    await sweepLeftovers(runtime);
  }
  let dir: string;
  try {
    dir = await mkdtemp(join(base, `${PREFIX}${process.pid}-`));
  } catch (err) {
    return fail((err as NodeJS.ErrnoException).code ?? String(err));
  }
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const scope = processScope();
  if (scope !== undefined) await writeFile(join(dir, MARKER), `${scope} ${process.pid}\n`, { mode: 0o600 });
  await chmod(dir, PROCESS_DIRECTORY_MODE);
  // A flow's senders are named after its socket, with a number (boundDatagramSocket.ts): room for it.
  if (Buffer.byteLength(flowSocketPath(join(dir, ACCESS['any-local-user'].subdirectory))) + 6 > MAX_SOCKET_PATH_BYTES) {
    return { ok: false, reason: `${dir} is too long for a socket path (set RUNTIME_DIRECTORY or TMPDIR to a shorter directory)` };
  }
  return { ok: true, dir };
}

let prepared: Promise<Prepared> | undefined;
const subdirectories = new Map<FlowSocketAccess, Promise<FlowDirectory>>();

async function prepareSubdirectory(access: FlowSocketAccess): Promise<FlowDirectory> {
  prepared ??= prepareProcessDirectory();
  const base = await prepared;
  if (!base.ok) {
    // A failure (a directory not there yet) is tried again on the next flow.
    prepared = undefined;
    return base;
  }
  const { subdirectory, directoryMode, socketMode } = ACCESS[access];
  const dir = join(base.dir, subdirectory);
  try {
    await mkdir(dir, { mode: directoryMode });
    // mkdir's mode is cut by the umask: the shared one needs x for the services that reply.
    await chmod(dir, directoryMode);
  } catch (err) {
    return { ok: false, reason: `cannot make ${dir} for datagram sockets: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  }
  return { ok: true, dir, socketMode };
}

/** The directory for flows of this access, prepared on the first such flow; with the mode of their sockets. */
export function flowSocketDirectory(access: FlowSocketAccess = 'gateway-user'): Promise<FlowDirectory> {
  let made = subdirectories.get(access);
  if (!made) {
    made = prepareSubdirectory(access);
    subdirectories.set(access, made);
  }
  return made.then((result) => {
    if (!result.ok) subdirectories.delete(access);
    return result;
  });
}

/** A fresh, unguessable socket path in `dir` (unguessable, not secret: /proc/net/unix lists it once bound). */
export function flowSocketPath(dir: string): string {
  return join(dir, `${randomBytes(16).toString('base64url')}.sock`);
}
