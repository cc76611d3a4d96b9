// `audit verify-proof`: checks an inclusion or consistency proof with the public key(s) alone: the
// checkpoint signatures and origin, then the audit path from the record (or old tree) to the root.
import { CONSISTENCY_PROOF_TYPE, INCLUSION_PROOF_TYPE, type ConsistencyProof, type InclusionProof } from './auditProve.ts';
import type { VerifyKey } from './auditVerifyCheckpoint.ts';
import { leafHash, verifyConsistency, verifyInclusion } from './merkleTree.ts';
import { noteSignedBy, parseCheckpointNote, type CheckpointBody } from './signedNote.ts';

export type ProofCheck = { ok: true; summary: string } | { ok: false; message: string };

function signedCheckpoint(note: unknown, keys: readonly VerifyKey[], origin: string | undefined): { ok: true; value: CheckpointBody } | { ok: false; message: string } {
  if (typeof note !== 'string') return { ok: false, message: 'the proof carries no checkpoint note' };
  const parsed = parseCheckpointNote(note);
  if (!parsed.ok) return parsed;
  const v = parsed.value;
  if (origin !== undefined && v.origin !== origin) return { ok: false, message: `the checkpoint names origin ${v.origin}, not ${origin}` };
  if (!keys.some((k) => noteSignedBy(v.body, v.signatures, v.origin, k.publicKey))) return { ok: false, message: `the checkpoint (size ${v.size}) is not signed by any given key for origin ${v.origin}` };
  return { ok: true, value: v };
}

const hashes = (list: unknown): Buffer[] | undefined => (Array.isArray(list) && list.every((h) => typeof h === 'string') ? list.map((h: string) => Buffer.from(h, 'base64')) : undefined);

function checkInclusion(p: InclusionProof, keys: readonly VerifyKey[], origin: string | undefined): ProofCheck {
  const cp = signedCheckpoint(p.checkpoint, keys, origin);
  if (!cp.ok) return cp;
  const path = hashes(p.proof);
  if (typeof p.record !== 'string' || !path) return { ok: false, message: 'the proof lacks its record or audit path' };
  let seq: unknown;
  try {
    seq = (JSON.parse(p.record) as { seq?: unknown }).seq;
  } catch {
    return { ok: false, message: 'the record is not a JSON line' };
  }
  if (seq !== p.index + 1 || p.treeSize !== cp.value.size) return { ok: false, message: `the record (seq ${String(seq)}) is not at index ${p.index} of a tree of size ${cp.value.size}` };
  if (!verifyInclusion(leafHash(p.record), p.index, cp.value.size, path, cp.value.root)) return { ok: false, message: `the record seq ${String(seq)} is not in the log the checkpoint signs (altered record or proof)` };
  return { ok: true, summary: `OK record seq ${String(seq)} is in ${cp.value.origin} at tree size ${cp.value.size} (root ${cp.value.root.toString('base64')})` };
}

function checkConsistency(p: ConsistencyProof, keys: readonly VerifyKey[], origin: string | undefined): ProofCheck {
  const from = signedCheckpoint(p.from, keys, origin);
  if (!from.ok) return from;
  const to = signedCheckpoint(p.to, keys, from.value.origin);
  if (!to.ok) return to;
  const path = hashes(p.proof);
  if (!path || !verifyConsistency(from.value.size, from.value.root, to.value.size, to.value.root, path)) {
    return { ok: false, message: `the tree of size ${to.value.size} does not extend the tree of size ${from.value.size}: the log was rewritten (or the proof altered)` };
  }
  return { ok: true, summary: `OK ${to.value.origin}: the tree of size ${to.value.size} extends the tree of size ${from.value.size}` };
}

export function checkProof(text: string, keys: readonly VerifyKey[], origin?: string): ProofCheck {
  let p: { type?: unknown };
  try {
    p = JSON.parse(text) as { type?: unknown };
  } catch {
    return { ok: false, message: 'not a proof (JSON)' };
  }
  if (p.type === INCLUSION_PROOF_TYPE) return checkInclusion(p as InclusionProof, keys, origin);
  if (p.type === CONSISTENCY_PROOF_TYPE) return checkConsistency(p as ConsistencyProof, keys, origin);
  return { ok: false, message: `unknown proof type ${JSON.stringify(p.type)}` };
}
