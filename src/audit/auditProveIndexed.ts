// `audit prove` in milliseconds: the record found by binary search in its file, the audit path read
// from the stored hashes, the checkpoint from the log's checkpoint file. Any doubt: undefined (scan).
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { storedSubtreeRoots } from './auditHashStore.ts';
import { firstSeq } from './auditFileOrder.ts';
import { linesOf } from './auditLines.ts';
import { defaultCheckpointFile } from './auditLogStart.ts';
import { INCLUSION_PROOF_TYPE, type InclusionProof } from './auditProve.ts';
import { inclusionProof, leafHash, verifyInclusion } from './merkleTree.ts';
import { parseCheckpointNote } from './signedNote.ts';

const SEQ = /^\{"seq":(\d+),/;
const seqOf = (line: Buffer): number | undefined => {
  const m = SEQ.exec(line.toString('latin1', 0, 24));
  return m ? Number(m[1]) : undefined;
};

/** The complete line starting at `start` (without its LF), or undefined at the end of the file. */
function lineFrom(fd: number, start: number, size: number): Buffer | undefined {
  let chunk = 4096;
  while (start < size) {
    const buf = Buffer.alloc(Math.min(chunk, size - start));
    readSync(fd, buf, 0, buf.length, start);
    const nl = buf.indexOf(0x0a);
    if (nl >= 0) return buf.subarray(0, nl);
    if (buf.length < chunk) return undefined;
    chunk *= 4;
  }
  return undefined;
}

/** Where the first line starting at or after `pos` begins. */
function lineStartAfter(fd: number, pos: number, size: number): number | undefined {
  if (pos === 0) return 0;
  const before = lineFrom(fd, pos - 1, size);
  return before === undefined ? undefined : pos + before.length;
}

/** Record `seq` in a plain (not compressed) file, by binary search over byte offsets. */
function findInFile(file: string, seq: number): Buffer | undefined {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    let lo = 0;
    let hi = size;
    while (lo < hi) {
      const start = lineStartAfter(fd, Math.floor((lo + hi) / 2), size);
      const line = start === undefined ? undefined : lineFrom(fd, start, size);
      const at = line && seqOf(line);
      if (start === undefined || !line || at === undefined || at > seq) hi = Math.floor((lo + hi) / 2);
      else if (at === seq) return line;
      else lo = start + line.length + 1;
    }
    const first = lineFrom(fd, 0, size);
    return first && seqOf(first) === seq ? first : undefined;
  } finally {
    closeSync(fd);
  }
}

async function findRecord(files: readonly string[], seq: number): Promise<Buffer | undefined> {
  const starts = await Promise.all(files.map(async (file) => ({ file, first: await firstSeq(file) })));
  const holder = starts.filter((s) => s.first <= seq).sort((a, b) => b.first - a.first)[0];
  if (!holder) return undefined;
  if (!holder.file.endsWith('.gz')) return findInFile(holder.file, seq);
  for await (const l of linesOf(holder.file)) if (seqOf(l.bytes) === seq) return Buffer.from(l.bytes);
  return undefined;
}

/** The inclusion proof from the stored hashes, or undefined when they (or the checkpoint file) are not there or do not agree. */
export async function proveRecordIndexed(files: readonly string[], seq: number): Promise<InclusionProof | undefined> {
  const live = [...new Set(files.map((f) => f.replace(/\.gz$/, '').replace(/\.\d+$/, '')))];
  if (live.length !== 1) return undefined;
  const logFile = live[0] as string;
  const checkpointFile = defaultCheckpointFile(logFile);
  if (!existsSync(checkpointFile)) return undefined;
  const note = readFileSync(checkpointFile, 'utf8');
  const checkpoint = parseCheckpointNote(note);
  if (!checkpoint.ok || checkpoint.value.size < seq) return undefined;
  const { size, root } = checkpoint.value;
  const stored = storedSubtreeRoots(logFile, size);
  if (!stored) return undefined;
  try {
    const record = await findRecord(files, seq);
    if (!record || !leafHash(record).equals(stored.leaf(seq - 1))) return undefined;
    const path = inclusionProof(stored.roots, seq - 1, size);
    // The path must lead to the root the checkpoint signs: a stale or damaged store never yields a proof.
    if (!verifyInclusion(leafHash(record), seq - 1, size, path, root)) return undefined;
    return { type: INCLUSION_PROOF_TYPE, record: record.toString('utf8'), seq, index: seq - 1, treeSize: size, proof: path.map((h) => h.toString('base64')), checkpoint: note };
  } finally {
    stored.close();
  }
}
