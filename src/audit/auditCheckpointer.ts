// The writer's checkpoints: the signed note over (origin, tree size, root), and its publication once
// the log's bytes up to it are on disk (the checkpoint file replaced atomically, the saved tree state).
import { replaceFileDurably, saveChainHead, type ChainHead } from './auditChain.ts';
import type { AuditSigner } from './auditCheckpoint.ts';
import type { CompactTree } from './merkleTree.ts';
import { checkpointBody } from './signedNote.ts';

export interface Checkpointer {
  /** The checkpoint note for the tree as it is now (signed when a key is configured). */
  note(tree: CompactTree): string;
  /** The checkpoint record is queued: `head`/`tree` (which include it) are published once it is durable. */
  queued(note: string, head: ChainHead, tree: CompactTree): void;
  /** The log's bytes up to the last queued checkpoint reached the disk. */
  durable(): void;
  /** Saves the head and tree now (reopen, close): a restart continues from them. */
  saveState(head: ChainHead, tree: CompactTree): void;
  /** Waits for the publications under way. */
  settled(): Promise<void>;
}

export function createCheckpointer(options: { file: string; origin: string; checkpointFile: string; signer?: AuditSigner; onError?: (err: Error) => void; onPublished?: (note: string) => void }): Checkpointer {
  let pending: { note: string; head: ChainHead; tree: CompactTree } | undefined;
  let publishing: Promise<void> = Promise.resolve();
  return {
    note(tree) {
      const body = checkpointBody(options.origin, tree.size, tree.root());
      return `${body}\n${options.signer ? `${options.signer.signatureLine(body, options.origin)}\n` : ''}`;
    },
    queued(note, head, tree) {
      pending = { note, head, tree: tree.clone() };
    },
    durable() {
      const next = pending;
      if (!next) return;
      pending = undefined;
      // One publication at a time, in order: a later checkpoint never lands before an earlier one.
      publishing = publishing
        .then(() => replaceFileDurably(options.checkpointFile, next.note))
        .then(() => saveChainHead(options.file, next.head, next.tree))
        .then(() => options.onPublished?.(next.note))
        .catch((err: unknown) => options.onError?.(err instanceof Error ? err : new Error(String(err))));
    },
    saveState(head, tree) {
      saveChainHead(options.file, head, tree);
    },
    settled() {
      return publishing;
    },
  };
}
