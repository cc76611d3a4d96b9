// The socket a unixgram flow sends to, pinned: an O_PATH descriptor of the checked socket, sent to through
// /proc/self/fd, so a path replaced under a live flow (by a symlink to another socket) cannot redirect it.
import { close, constants, fstat, lstat, open, readlink, stat, type Stats } from 'node:fs';
import { promisify } from 'node:util';
import { uidOf, type UpstreamTarget } from './upstreamTarget.ts';

type UnixgramTarget = Extract<UpstreamTarget, { kind: 'unixgram' }>;

const openFd = promisify(open);
const fstatFd = promisify(fstat);
const closeFd = promisify(close);
const readlinkPath = promisify(readlink);
const lstatPath = promisify(lstat);
const statPath = promisify(stat);

/** Linux's O_PATH (not among Node's constants): a descriptor naming the inode, for nothing but naming it. */
const O_PATH = 0o10000000;
/** Elsewhere (macOS) there is no /proc: the flow sends to the path, checked again by the flow's watch. */
const PINNED = process.platform === 'linux';

/** The socket the flow sends to now: where to send (`via`), and which inode that is. */
export interface PinnedSocket {
  via: string;
  /** Device, inode, owner, change time: a socket created where another was removed often reuses the inode number. */
  id: string;
  release(): void;
}

export type PinResult = { ok: true; pin: PinnedSocket } | { ok: false; reason: string; gone: boolean };

function socketIdentity(st: Stats): string {
  return `${st.dev}:${st.ino}:${st.uid}:${st.ctimeMs}:${st.birthtimeMs}`;
}

/** The identity of what is at the target's path now (as pinSocket would open it), to compare with a pin's. */
export function identityAtPath(target: UnixgramTarget): Promise<string | undefined> {
  return (target.owner !== undefined ? lstatPath : statPath)(target.path).then(socketIdentity, () => undefined);
}

/**
 * Opens the socket at the target's path and checks what was opened: a socket. Where the route has a
 * `socketOwner` (the path is a user's to change), as admission checked it by path: not a symlink, reached
 * by exactly this path (no directory on the way is a symlink, which /proc tells of the open descriptor
 * itself), owned by that user. An administrator's fixed path may be a symlink, as for unix:. `gone`: no
 * socket there now (a service restarting), as against one that must not be used.
 */
export async function pinSocket(target: UnixgramTarget): Promise<PinResult> {
  let fd: number | undefined;
  const release = () => void (fd === undefined || closeFd(fd).catch(() => undefined));
  const refused = (reason: string, gone = false): PinResult => (release(), { ok: false, reason, gone });
  const strict = target.owner !== undefined;
  let st: Stats;
  try {
    // Elsewhere than Linux only the path can be checked (lstat), and the flow's watch checks it again.
    if (PINNED) {
      fd = await openFd(target.path, O_PATH | (strict ? constants.O_NOFOLLOW : 0));
      st = await fstatFd(fd);
    } else st = await (strict ? lstatPath : statPath)(target.path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    return refused(`upstream socket ${target.path}: ${code}`, code === 'ENOENT');
  }
  if (st.isSymbolicLink()) return refused(`upstream socket ${target.path} is a symlink`);
  if (!st.isSocket()) return refused(`upstream ${target.path} is not a socket`);
  if (strict && fd !== undefined && (await readlinkPath(`/proc/self/fd/${fd}`).catch(() => '')) !== target.path) return refused(`upstream socket ${target.path} is reached through a symlink`);
  if (target.owner !== undefined) {
    const uid = await uidOf(target.owner);
    if (uid === undefined || st.uid !== uid) return refused(`upstream socket ${target.path} is owned by uid ${st.uid}, not ${target.owner}${uid === undefined ? '' : ` (uid ${uid})`}`);
  }
  return { ok: true, pin: { via: fd === undefined ? target.path : `/proc/self/fd/${fd}`, id: socketIdentity(st), release } };
}
