// `audit prove`: an inclusion proof of one record, or a consistency proof from an earlier checkpoint,
// against the last checkpoint in the files. Reads the files once, keeping 32 bytes per record.
import { orderAuditFiles, overlappingInputs } from './auditFileOrder.ts';
import { linesOfFiles } from './auditLines.ts';
import { consistencyProof, inclusionProof, leafHash, subtreeRoot, verifyConsistency, verifyInclusion, type LeafReader } from './merkleTree.ts';
import { parseCheckpointNote, type CheckpointBody } from './signedNote.ts';

export const INCLUSION_PROOF_TYPE = 'gatehouse audit inclusion proof v1';
export const CONSISTENCY_PROOF_TYPE = 'gatehouse audit consistency proof v1';

/** One record, where it sits in the tree, the audit path, and the checkpoint it leads to. */
export interface InclusionProof {
  type: typeof INCLUSION_PROOF_TYPE;
  record: string;
  seq: number;
  /** Leaf index: seq - 1. */
  index: number;
  treeSize: number;
  /** Base64 hashes, leaf side first (RFC 9162 2.1.3). */
  proof: string[];
  checkpoint: string;
}

/** The tree of `from` is a prefix of the tree of `to` (two checkpoint notes). */
export interface ConsistencyProof {
  type: typeof CONSISTENCY_PROOF_TYPE;
  from: string;
  to: string;
  proof: string[];
}

export type ProveResult<T> = { ok: true; value: T } | { ok: false; message: string };

const SEQ = /^\{"seq":(\d+),"prev":"/;
const CHECKPOINT_MARK = Buffer.from('"event":"audit.checkpoint"');

interface Scan {
  leaves: LeafReader;
  count: number;
  wanted?: string;
  last?: { note: string; body: CheckpointBody };
}

/** Every record's leaf hash (packed), the record `seq` asked for, and the last checkpoint. */
async function scan(files: string[], seq?: number): Promise<ProveResult<Scan>> {
  const overlap = overlappingInputs(files);
  if (overlap) return { ok: false, message: overlap };
  let packed = Buffer.alloc(32 * 65536);
  let count = 0;
  const result: Omit<Scan, 'leaves' | 'count'> = {};
  for await (const l of linesOfFiles(await orderAuditFiles(files))) {
    const m = SEQ.exec(l.bytes.toString('latin1', 0, 32));
    if (!m || !l.terminated) return { ok: false, message: `${l.file}:${l.line}: not a chained record (run audit verify)` };
    if (Number(m[1]) !== count + 1) return { ok: false, message: `${l.file}:${l.line}: seq ${m[1]} where ${count + 1} was expected: the files do not hold the whole log from seq 1 (run audit verify)` };
    if (packed.length < (count + 1) * 32) packed = Buffer.concat([packed, Buffer.alloc(packed.length)]);
    leafHash(l.bytes).copy(packed, count * 32);
    count += 1;
    if (count === seq) result.wanted = l.bytes.toString('utf8');
    if (l.bytes.indexOf(CHECKPOINT_MARK) >= 0) {
      const note = (JSON.parse(l.bytes.toString('utf8')) as { checkpoint?: { note?: string } }).checkpoint?.note;
      const parsed = note === undefined ? undefined : parseCheckpointNote(note);
      if (note !== undefined && parsed?.ok) result.last = { note, body: parsed.value };
    }
  }
  const final = packed;
  return { ok: true, value: { ...result, count, leaves: (i) => final.subarray(i * 32, i * 32 + 32) } };
}

export async function proveRecord(files: string[], seq: number): Promise<ProveResult<InclusionProof>> {
  const overlap = overlappingInputs(files);
  if (overlap) return { ok: false, message: overlap };
  // The stored hashes beside the log answer in milliseconds; without them (or in doubt) the files are read.
  const { proveRecordIndexed } = await import('./auditProveIndexed.ts');
  const fast = await proveRecordIndexed(files, seq);
  if (fast) return { ok: true, value: fast };
  const scanned = await scan(files, seq);
  if (!scanned.ok) return scanned;
  const { leaves, wanted, last } = scanned.value;
  if (wanted === undefined) return { ok: false, message: `no record seq ${seq} in the files` };
  if (!last || last.body.size < seq) return { ok: false, message: `no checkpoint after seq ${seq} in the files yet: wait for the next one` };
  const path = inclusionProof((a, b) => subtreeRoot(leaves, a, b), seq - 1, last.body.size);
  // The proof must lead to the root the checkpoint signs: else the files are not the log it signed.
  if (!verifyInclusion(leaves(seq - 1), seq - 1, last.body.size, path, last.body.root)) return { ok: false, message: `the files do not hash to their last checkpoint's root (run audit verify)` };
  return { ok: true, value: { type: INCLUSION_PROOF_TYPE, record: wanted, seq, index: seq - 1, treeSize: last.body.size, proof: path.map((h) => h.toString('base64')), checkpoint: last.note } };
}

export async function proveConsistency(files: string[], fromNote: string): Promise<ProveResult<ConsistencyProof>> {
  const from = parseCheckpointNote(fromNote);
  if (!from.ok) return { ok: false, message: `the earlier checkpoint: ${from.message}` };
  const scanned = await scan(files);
  if (!scanned.ok) return scanned;
  const { leaves, last } = scanned.value;
  if (!last) return { ok: false, message: 'no checkpoint in the files' };
  if (last.body.origin !== from.value.origin) return { ok: false, message: `the files are the log ${last.body.origin}, the checkpoint names ${from.value.origin}` };
  if (last.body.size < from.value.size) return { ok: false, message: `the files' last checkpoint (size ${last.body.size}) is older than the one given (size ${from.value.size})` };
  const path = consistencyProof((a, b) => subtreeRoot(leaves, a, b), from.value.size, last.body.size);
  if (!verifyConsistency(from.value.size, from.value.root, last.body.size, last.body.root, path)) return { ok: false, message: `the files do not extend the checkpoint given (size ${from.value.size}): the log was rewritten` };
  return { ok: true, value: { type: CONSISTENCY_PROOF_TYPE, from: fromNote, to: last.note, proof: path.map((h) => h.toString('base64')) } };
}
