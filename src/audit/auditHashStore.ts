// The tree's stored hashes beside the log (Go tlog's layout): every leaf and every completed node, 32
// bytes each, in completion order. A proof then reads O(log n) hashes instead of hashing the whole log.
import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, readSync, statSync, unlinkSync, write } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { nodeHash, type SubtreeRoots } from './merkleTree.ts';

/** Where the stored hash of the perfect subtree `n` at `level` (leaves n*2^level ..) sits (tlog.StoredHashIndex). */
export function storedHashIndex(level: number, n: number): number {
  for (let l = level; l > 0; l -= 1) n = 2 * n + 1;
  let i = 0;
  for (; n > 0; n = Math.floor(n / 2)) i += n;
  return i + level;
}

/** How many hashes a tree of `n` leaves has stored (tlog.StoredHashCount). */
export function storedHashCount(n: number): number {
  if (n === 0) return 0;
  let count = storedHashIndex(0, n - 1) + 1;
  for (let i = n - 1; i % 2 === 1; i = Math.floor(i / 2)) count += 1;
  return count;
}

/** Hidden beside the log, like the saved head: `audit.log` -> `.audit.log.hashes`. */
export function hashFileOf(auditFile: string): string {
  return join(dirname(auditFile), `.${basename(auditFile)}.hashes`);
}

export interface HashStore {
  /** One hash, hex. */
  add(hash: string): void;
  /** Hands what was added to the file: at once when `now`, else once 32 KiB have gathered. */
  flush(now?: boolean): void;
  close(): Promise<void>;
}

/**
 * Opens the store for a tree of `treeSize` leaves whose first `baseSize` were there before this start
 * (`since` holds the stored hashes of the others). A store that does not match (a crash lost its
 * tail, a log from before it) is removed: proofs are then computed from the files.
 */
export function openHashStore(auditFile: string, baseSize: number, treeSize: number, since: readonly string[]): HashStore | undefined {
  const file = hashFileOf(auditFile);
  // Only beside a regular file: a log written to a device or pipe has no proofs to serve.
  if (existsSync(auditFile) && !statSync(auditFile).isFile()) return undefined;
  let fd = -1;
  // The hashes of the records read back from the live file at start, when the store stopped before them.
  let since0: readonly string[] = [];
  try {
    fd = openSync(file, 'a+', 0o640);
    const have = fstatSync(fd).size;
    const full = storedHashCount(treeSize) * 32;
    if (have >= full) ftruncateSync(fd, full);
    else if (have === storedHashCount(baseSize) * 32) since0 = since;
    else throw new Error('does not match the log');
  } catch {
    if (fd >= 0) closeSync(fd);
    if (existsSync(file)) unlinkSync(file);
    return undefined;
  }
  // Hashes are copied into one buffer per batch (a Buffer per hash kept until the write was GC work).
  let pending = Buffer.allocUnsafe(64 * 1024);
  let used = 0;
  let writing: Promise<void> = Promise.resolve();
  let failed = false;
  const store: HashStore = {
    add(hash) {
      if (used + 32 > pending.length) {
        const larger = Buffer.allocUnsafe(pending.length * 2);
        pending.copy(larger, 0, 0, used);
        pending = larger;
      }
      pending.write(hash, used, 32, 'hex');
      used += 32;
    },
    flush(now = false) {
      // A write per 32 KiB (~500 records), not per batch: the store is a cache that prove checks.
      if (used === 0 || failed || (!now && used < 32 * 1024)) return;
      // A copy (small ones come from Node's buffer pool): the buffer is filled again while this is written.
      const bytes = Buffer.from(pending.subarray(0, used));
      used = 0;
      // One write at a time, in order: the file is positional (hash i at byte 32*i).
      writing = writing.then(
        () =>
          new Promise<void>((resolve) =>
            write(fd, bytes, (err) => {
              // A failed write leaves a hole: drop the store rather than serve wrong offsets.
              if (err && !failed) {
                failed = true;
                unlinkSync(file);
              }
              resolve();
            }),
          ),
      );
    },
    async close() {
      store.flush(true);
      await writing;
      closeSync(fd);
    },
  };
  for (const hash of since0) store.add(hash);
  return store;
}

/** Subtree roots from a store holding at least the tree of `size` leaves; undefined when it does not. */
export function storedSubtreeRoots(auditFile: string, size: number): { roots: SubtreeRoots; leaf: (index: number) => Buffer; close: () => void } | undefined {
  const file = hashFileOf(auditFile);
  if (!existsSync(file)) return undefined;
  const fd = openSync(file, 'r');
  if (fstatSync(fd).size < storedHashCount(size) * 32) {
    closeSync(fd);
    return undefined;
  }
  const read = (index: number): Buffer => {
    const buf = Buffer.alloc(32);
    readSync(fd, buf, 0, 32, index * 32);
    return buf;
  };
  const roots: SubtreeRoots = (from, to) => {
    const n = to - from;
    // A perfect, aligned subtree is stored; any other is split as the RFC splits it.
    if ((n & (n - 1)) === 0 && n > 0 && n <= 2 ** 30 && from % n === 0) {
      const level = Math.log2(n);
      return read(storedHashIndex(level, from / n));
    }
    let k = 1;
    while (k * 2 < n) k *= 2;
    return nodeHash(roots(from, from + k), roots(from + k, to));
  };
  return { roots, leaf: (index) => read(storedHashIndex(0, index)), close: () => closeSync(fd) };
}
