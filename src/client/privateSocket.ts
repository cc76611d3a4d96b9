// Local UNIX sockets only their owner can use: the socket lives in a directory that only the user
// can enter (created 0700 if missing, refused if anyone else could get in), and is itself mode 0600.
import { chmod, lstat, mkdir, realpath, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { socketInUse } from '../listener/staleSocket.ts';

export type PrivatePathResult = { ok: true; path: string; createdDir?: string } | { ok: false; error: string };

function modeText(mode: number): string {
  return (mode & 0o777).toString(8).padStart(4, '0');
}

/**
 * Checks (or creates) the directory of `path` and clears a stale socket there. The directory must be
 * owned by this user and closed to group and others: otherwise another user could reach or replace
 * the socket, whatever its own mode. Returns the path to bind, with the directory's symlinks resolved.
 */
export async function preparePrivateSocketPath(requested: string): Promise<PrivatePathResult> {
  const wanted = resolve(requested);
  let dir = dirname(wanted);
  let createdDir: string | undefined;
  try {
    await stat(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return { ok: false, error: `cannot use ${dir}: ${(err as NodeJS.ErrnoException).code}` };
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      createdDir = dir;
    } catch (mkErr) {
      return { ok: false, error: `cannot create directory ${dir} for the socket: ${(mkErr as NodeJS.ErrnoException).code ?? String(mkErr)}` };
    }
  }
  dir = await realpath(dir);
  const st = await stat(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory()) return { ok: false, error: `${dir} is not a directory` };
  if (uid !== undefined && st.uid !== uid) {
    return { ok: false, error: `refusing to create a socket in ${dir}: the directory belongs to uid ${st.uid}, not to you (uid ${uid}); use a directory of your own, e.g. mkdir -m 700 ~/.gatehouse` };
  }
  if ((st.mode & 0o077) !== 0) {
    return { ok: false, error: `refusing to create a socket in ${dir}: the directory has mode ${modeText(st.mode)}, so other users can reach the socket (and your token's access); chmod 700 it or use a private directory` };
  }

  const path = join(dir, basename(wanted));
  try {
    const existing = await lstat(path);
    if (!existing.isSocket()) return { ok: false, error: `${path} exists and is not a socket; refusing to replace it` };
    if (await socketInUse(path)) return { ok: false, error: `${path} is in use by another process` };
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return { ok: false, error: `cannot use ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  }
  return { ok: true, path, ...(createdDir !== undefined && { createdDir }) };
}

/** After bind: the socket file is the user's alone. Returns its inode, to remove only our own socket later. */
export async function restrictSocket(path: string): Promise<number> {
  await chmod(path, 0o600);
  return (await lstat(path)).ino;
}

/** Removes the socket if it is still the one we created. */
export async function removeOwnSocket(path: string, ino: number): Promise<void> {
  try {
    if ((await lstat(path)).ino === ino) await unlink(path);
  } catch {
    // Already gone.
  }
}
