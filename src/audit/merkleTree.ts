// The RFC 6962 / RFC 9162 Merkle tree over the audit records: leaf and node hashing, the compact
// range the writer keeps (O(log n) hashes: the right edge), and inclusion and consistency proofs.
import { hash } from 'node:crypto';

const LEAF_PREFIX = Buffer.from([0x00]);

/** SHA-256(0x00 || line): the leaf of one record (its exact line bytes, without the LF). */
export function leafHash(line: Buffer | string): Buffer {
  return Buffer.from(leafHashHex(line), 'hex');
}

/**
 * The leaf hash in hex. A string is hashed with its prefix as one string (no Buffer copy of the line),
 * and the digest comes out as a string: crypto.hash's 'buffer' output measured at twice the cost.
 */
export function leafHashHex(line: Buffer | string): string {
  return typeof line === 'string' ? hash('sha256', `\u0000${line}`, 'hex') : hash('sha256', Buffer.concat([LEAF_PREFIX, line]), 'hex');
}

/** One buffer for every node hash (0x01 || left || right): no allocation per node. */
const NODE_INPUT = Buffer.alloc(65, 0x01);

/** SHA-256(0x01 || left || right). */
export function nodeHash(left: Buffer, right: Buffer): Buffer {
  return Buffer.from(nodeHashHex(left.toString('hex'), right.toString('hex')), 'hex');
}

/** nodeHash over hex digests: the writer's form (its leaves come as hex; no Buffer per node). */
export function nodeHashHex(left: string, right: string): string {
  NODE_INPUT.write(left, 1, 32, 'hex');
  NODE_INPUT.write(right, 33, 32, 'hex');
  return hash('sha256', NODE_INPUT, 'hex');
}

/** The root of the empty tree: SHA-256 of nothing. */
export const EMPTY_ROOT = hash('sha256', Buffer.alloc(0), 'buffer');

/**
 * The tree so far as the roots of its perfect subtrees, largest (leftmost) first: one per set bit of
 * `size`. Appending merges equal-sized neighbours (amortized one node hash per leaf). Kept as hex.
 */
export class CompactTree {
  size: number;
  private readonly edge: string[];

  constructor(size = 0, range: readonly Buffer[] = []) {
    this.size = size;
    this.edge = range.map((h) => h.toString('hex'));
  }

  append(leaf: Buffer, stored?: (hash: Buffer) => void): void {
    this.appendHex(leaf.toString('hex'), stored && ((h) => stored(Buffer.from(h, 'hex'))));
  }

  /** Adds a leaf (hex); `stored` sees the leaf and every node it completes, in that order (Go tlog's stored hashes). */
  appendHex(leaf: string, stored?: (hash: string) => void): void {
    let node = leaf;
    stored?.(node);
    // Each trailing 1 bit of the old size is a perfect subtree of the new leaf's size: merge it.
    for (let s = this.size; s % 2 === 1; s = Math.floor(s / 2)) {
      node = nodeHashHex(this.edge.pop() as string, node);
      stored?.(node);
    }
    this.edge.push(node);
    this.size += 1;
  }

  root(): Buffer {
    if (this.edge.length === 0) return EMPTY_ROOT;
    let node = this.edge[this.edge.length - 1] as string;
    for (let i = this.edge.length - 2; i >= 0; i -= 1) node = nodeHashHex(this.edge[i] as string, node);
    return Buffer.from(node, 'hex');
  }

  clone(): CompactTree {
    const copy = new CompactTree(this.size);
    copy.edge.push(...this.edge);
    return copy;
  }

  toJSON(): { size: number; range: string[] } {
    return { size: this.size, range: this.edge.map((h) => Buffer.from(h, 'hex').toString('base64')) };
  }

  /** The saved form back; undefined when it is not a consistent compact range. */
  static fromJSON(v: unknown): CompactTree | undefined {
    const o = v as { size?: unknown; range?: unknown };
    if (!o || !Number.isSafeInteger(o.size) || (o.size as number) < 0 || !Array.isArray(o.range)) return undefined;
    const range = o.range.map((h) => (typeof h === 'string' ? Buffer.from(h, 'base64') : Buffer.alloc(0)));
    const bits = (o.size as number).toString(2).replace(/0/g, '').length;
    if (range.length !== bits || range.some((h) => h.length !== 32)) return undefined;
    return new CompactTree(o.size as number, range);
  }
}

/** The largest power of two smaller than n (n > 1). */
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** Leaf hashes by index (a packed buffer read in place: an array of a million Buffers is large). */
export type LeafReader = (index: number) => Buffer;

/** MTH(D[from:to]): from leaves in memory, or from the stored hashes of perfect subtrees. */
export type SubtreeRoots = (from: number, to: number) => Buffer;

/** MTH(D[from:to]) over leaf hashes. */
export function subtreeRoot(leaves: LeafReader, from: number, to: number): Buffer {
  if (to - from === 0) return EMPTY_ROOT;
  if (to - from === 1) return leaves(from);
  const k = split(to - from);
  return nodeHash(subtreeRoot(leaves, from, from + k), subtreeRoot(leaves, from + k, to));
}

/** PATH(index, D[0:size]) of RFC 9162 2.1.3.1, leaf-side first. */
export function inclusionProof(roots: SubtreeRoots, index: number, size: number, from = 0): Buffer[] {
  const n = size - from;
  if (n <= 1) return [];
  const k = split(n);
  if (index - from < k) return [...inclusionProof(roots, index, from + k, from), roots(from + k, size)];
  return [...inclusionProof(roots, index, size, from + k), roots(from, from + k)];
}

/** PROOF(m, D[0:n]) of RFC 9162 2.1.4.1. */
export function consistencyProof(roots: SubtreeRoots, m: number, n: number): Buffer[] {
  const sub = (m0: number, from: number, to: number, whole: boolean): Buffer[] => {
    if (m0 === to - from) return whole ? [] : [roots(from, to)];
    const k = split(to - from);
    if (m0 <= k) return [...sub(m0, from, from + k, whole), roots(from + k, to)];
    return [...sub(m0 - k, from + k, to, false), roots(from, from + k)];
  };
  return m === 0 || m === n ? [] : sub(m, 0, n, true);
}

/** RFC 9162 2.1.3.2: does `proof` show leaf `index` with hash `leaf` in the tree of `size` with `root`? */
export function verifyInclusion(leaf: Buffer, index: number, size: number, proof: readonly Buffer[], root: Buffer): boolean {
  if (index < 0 || index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else r = nodeHash(r, p);
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && r.equals(root);
}

/** RFC 9162 2.1.4.2: does `proof` show the tree (m, oldRoot) is a prefix of (n, newRoot)? */
export function verifyConsistency(m: number, oldRoot: Buffer, n: number, newRoot: Buffer, proof: readonly Buffer[]): boolean {
  if (m > n) return false;
  if (m === n) return proof.length === 0 && oldRoot.equals(newRoot);
  if (m === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  const path = (m & (m - 1)) === 0 ? [oldRoot, ...proof] : [...proof];
  let fn = m - 1;
  let sn = n - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0] as Buffer;
  let sr = path[0] as Buffer;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else sr = nodeHash(sr, c);
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return fr.equals(oldRoot) && sr.equals(newRoot) && sn === 0;
}
