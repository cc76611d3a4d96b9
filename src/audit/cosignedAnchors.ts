// The checkpoints the witnesses cosigned, as the gateway kept them beside its log: read at start so
// that a log cut back (with its own checkpoint and state removed) is refused while one of them stands.
import { existsSync, readFileSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { cosignedBy, parseWitnessVerifierKey } from './cosignature.ts';
import { noteSignedBy, parseCheckpointNote } from './signedNote.ts';

/** A size and root the log must reach and agree with, and what says so (for the refusal message). */
export interface StartAnchor {
  size: number;
  root: string;
  source: string;
}

/** Where the note cosigned by `witnessName` is kept: `audit.checkpoint` -> `audit.checkpoint.<name, URL-encoded>`. */
export function cosignedCheckpointFile(checkpointFile: string, witnessName: string): string {
  return `${checkpointFile}.${encodeURIComponent(witnessName)}`;
}

/**
 * Every kept cosigned note of this origin: its witness's cosignature must verify with the configured
 * vkey, and the log's own signature with `logKey` (when the log signs); a note that does not is refused
 * (fail closed: move it away on purpose after a key rotation). Notes of another origin are not this log's.
 */
export function readCosignedAnchors(checkpointFile: string, origin: string, witnesses: readonly { name: string; vkey: string }[], logKey: KeyObject | undefined): { ok: true; value: StartAnchor[] } | { ok: false; message: string } {
  const anchors: StartAnchor[] = [];
  for (const witness of witnesses) {
    const file = cosignedCheckpointFile(checkpointFile, witness.name);
    if (!existsSync(file)) continue;
    const key = parseWitnessVerifierKey(witness.vkey);
    if (!key.ok) return { ok: false, message: `audit.witnesses ${witness.name}: ${key.message}` };
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      return { ok: false, message: `${file}: ${err instanceof Error ? err.message : String(err)}` };
    }
    const cp = parseCheckpointNote(text);
    if (!cp.ok) return { ok: false, message: `${file}: not a checkpoint note (${cp.message})` };
    if (cp.value.origin !== origin) continue;
    if (cosignedBy(cp.value.body, cp.value.signatures, key.value) === undefined) return { ok: false, message: `${file}: no valid cosignature by witness ${witness.name} (its configured vkey)` };
    if (logKey && !noteSignedBy(cp.value.body, cp.value.signatures, origin, logKey)) return { ok: false, message: `${file}: not signed by the log's signing key as ${origin}` };
    anchors.push({ size: cp.value.size, root: cp.value.root.toString('base64'), source: `the checkpoint witness ${witness.name} cosigned (${file})` });
  }
  return { ok: true, value: anchors };
}
