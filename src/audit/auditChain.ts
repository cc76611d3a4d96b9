// The hash chain of the audit log: what is hashed (a record's exact line bytes), the state saved
// beside the log (head and Merkle tree) and the durable replacement of the checkpoint file.
import { hash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { renameSync, writeFileSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { leafHashHex } from './merkleTree.ts';

/** The `prev` of the very first record of a chain. */
export const GENESIS_HASH = `sha256:${'0'.repeat(64)}`;

/**
 * The hash of one record as the next record's `prev` names it: its Merkle leaf hash, SHA-256 over
 * 0x00 and the exact bytes of its line (without the LF). Hashing bytes (not a re-serialization) means
 * any change to the line, even whitespace, is seen; one hash serves both the chain and the tree.
 */
export function lineHash(line: Buffer | string): string {
  return `sha256:${leafHashHex(line)}`;
}

/** The `prev` of a version 1 chain (before the Merkle tree): SHA-256 of the line bytes alone. */
export function legacyLineHash(line: Buffer | string): string {
  return `sha256:${hash('sha256', line, 'hex')}`;
}

/** The last record of the chain so far: the next record gets `seq + 1` and `prev = hash`. */
export interface ChainHead {
  seq: number;
  hash: string;
}

/**
 * Where the head is saved when the file is reopened or closed: found again if the next file starts
 * empty. A hidden name beside the log, so `audit.log*` (what one hands to verify) does not match it.
 */
export function headFileOf(auditFile: string): string {
  return join(dirname(auditFile), `.${basename(auditFile)}.head`);
}

/** Saves the head and tree (write to a temporary file, then rename: never half-written). Best effort. */
export function saveChainHead(auditFile: string, head: ChainHead, tree: { toJSON(): unknown }): void {
  const target = headFileOf(auditFile);
  const temporary = `${target}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, JSON.stringify({ ...head, tree: tree.toJSON() }) + '\n', { mode: 0o640 });
    renameSync(temporary, target);
  } catch {
    // The saved state lets a restart continue the tree; a failed save is seen then (and refused).
  }
}

/**
 * Replaces `target` with `text` atomically and durably: a temporary file written and fsynced, renamed
 * over the target, then the directory fsynced (so the rename survives a crash).
 */
export async function replaceFileDurably(target: string, text: string): Promise<void> {
  const temporary = `${target}.${process.pid}.tmp`;
  const file = await open(temporary, 'w', 0o644);
  try {
    await file.writeFile(text);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temporary, target);
  const dir = await open(dirname(target), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
