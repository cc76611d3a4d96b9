// A UNIX socket path left by an earlier run: removed before binding, unless something still answers
// on it (a second start must fail on the busy path, not cut the first one off its clients).
import { connect } from 'node:net';
import { lstat, unlink } from 'node:fs/promises';

/** Whether something accepts connections on the socket at `path` (a stale socket refuses). */
export function socketInUse(path: string): Promise<boolean> {
  return new Promise((ok) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      ok(true);
    });
    probe.once('error', () => ok(false));
  });
}

/** Removes a UNIX socket left by an earlier run; refuses anything that is not a socket or is still in use. */
export async function removeStaleSocket(path: string): Promise<void> {
  try {
    const st = await lstat(path);
    if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
    if (await socketInUse(path)) throw new Error(`${path} is in use by another process; refusing to replace it`);
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
