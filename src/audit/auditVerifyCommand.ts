// `gatehouse audit verify` from its options: the keys (with validity), the anchor (given, or the log's
// own checkpoint file beside the files), the origin, the file order; returns the report's text.
import { existsSync, readFileSync } from 'node:fs';
import { readAuditPublicKey } from './auditCheckpoint.ts';
import { orderAuditFiles, overlappingInputs } from './auditFileOrder.ts';
import { defaultCheckpointFile } from './auditLogStart.ts';
import { verifyAuditFiles, type VerifyOptions } from './auditVerify.ts';
import { parseKeySpec, type VerifyKey } from './auditVerifyCheckpoint.ts';
import { formatVerifyReport } from './auditVerifyReport.ts';
import { noteSignedBy, parseCheckpointNote, type NoteSignature } from './signedNote.ts';
import { cosignedBy, parseWitnessVerifierKey, type WitnessKey } from './cosignature.ts';
import { cosignedCheckpointFile } from './cosignedAnchors.ts';

export interface VerifyCliOptions {
  key?: string[];
  keyring?: string;
  origin?: string;
  anchor?: string;
  live?: string | boolean;
  partial?: boolean;
  unsigned?: boolean;
  /** Witness verifier keys (or files holding them): the anchor must carry a valid cosignature by each. */
  witnessKey?: string[];
}

export type VerifyCommandResult = { ok: true; text: string; failed: boolean } | { ok: false; message: string };

export function readKeys(specs: readonly string[]): { ok: true; keys: VerifyKey[] } | { ok: false; message: string } {
  const keys: VerifyKey[] = [];
  for (const spec of specs) {
    const { file, from, until } = parseKeySpec(spec);
    if ((from !== undefined && Number.isNaN(from)) || (until !== undefined && Number.isNaN(until))) return { ok: false, message: `--key ${spec}: not a date or UTC time` };
    const read = readAuditPublicKey(file);
    if (!read.ok) return { ok: false, message: read.error.message };
    keys.push({ publicKey: read.value, label: spec, ...(from !== undefined && { from }), ...(until !== undefined && { until }) });
  }
  return { ok: true, keys };
}

/** The log's own checkpoint file beside the files (`audit.log.2.gz` -> `audit.checkpoint`), if there is exactly one. */
function ownCheckpointFile(files: readonly string[]): string | undefined {
  const found = new Set(files.map((f) => defaultCheckpointFile(f.replace(/\.gz$/, '').replace(/\.\d+$/, ''))).filter((f) => existsSync(f)));
  return found.size === 1 ? [...found][0] : undefined;
}

/** The anchor note, parsed; its signature must verify with one of the keys when keys are given. */
function readAnchor(file: string, keys: readonly VerifyKey[]): { ok: true; value: NonNullable<VerifyOptions['anchor']> & { body: string; signatures: NoteSignature[] } } | { ok: false; message: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { ok: false, message: `anchor ${file}: ${err instanceof Error ? err.message : String(err)}` };
  }
  const note = parseCheckpointNote(text);
  if (!note.ok) return { ok: false, message: `anchor ${file}: ${note.message}` };
  const { origin, body, signatures } = note.value;
  if (keys.length > 0 && !keys.some((k) => noteSignedBy(body, signatures, origin, k.publicKey))) return { ok: false, message: `anchor ${file}: not signed by any given key for origin ${origin}` };
  return { ok: true, value: { ...note.value, source: file } };
}

export async function runVerify(files: string[], opts: VerifyCliOptions): Promise<VerifyCommandResult> {
  const overlap = overlappingInputs(files);
  if (overlap) return { ok: false, message: overlap };
  const specs = [...(opts.key ?? [])];
  if (opts.keyring) {
    try {
      specs.push(...readFileSync(opts.keyring, 'utf8').split('\n').map((l) => l.replace(/#.*/, '').trim()).filter((l) => l !== ''));
    } catch (err) {
      return { ok: false, message: `keyring ${opts.keyring}: ${err instanceof Error ? err.message : String(err)}` };
    }
  }
  if (specs.length === 0 && !opts.unsigned) return { ok: false, message: 'give the audit public key (--key, --keyring), or --unsigned to check the chain and the tree only' };
  const keys = readKeys(specs);
  if (!keys.ok) return keys;
  const witnesses: WitnessKey[] = [];
  for (const spec of opts.witnessKey ?? []) {
    const witness = parseWitnessVerifierKey(spec);
    if (!witness.ok) return { ok: false, message: `--witness-key: ${witness.message}` };
    witnesses.push(witness.value);
  }
  const own = ownCheckpointFile(files);
  // With a witness key and no anchor: the note that witness cosigned, kept beside the log by the gateway.
  const cosignedBeside = own && witnesses[0] ? cosignedCheckpointFile(own, witnesses[0].name) : undefined;
  const anchorFile = opts.anchor ?? (cosignedBeside && existsSync(cosignedBeside) ? cosignedBeside : own);
  let anchor: VerifyOptions['anchor'];
  let anchorNote: { body: string; signatures: NoteSignature[]; source: string } | undefined;
  if (anchorFile) {
    const read = readAnchor(anchorFile, keys.keys);
    if (!read.ok) return read;
    anchor = read.value;
    anchorNote = read.value;
  }
  for (const witness of witnesses) {
    if (!anchorNote) return { ok: false, message: '--witness-key needs the checkpoint the witness cosigned (--anchor)' };
    if (cosignedBy(anchorNote.body, anchorNote.signatures, witness) === undefined) return { ok: true, text: `FAIL anchor ${anchorNote.source}: no valid cosignature by witness ${witness.name}: not the checkpoint that witness saw\n`, failed: true };
  }
  const liveMaxAgeSeconds = opts.live === undefined || opts.live === false ? undefined : opts.live === true ? 300 : Number(opts.live);
  if (liveMaxAgeSeconds !== undefined && !(liveMaxAgeSeconds >= 0)) return { ok: false, message: `--live ${String(opts.live)}: not a number of seconds` };
  const ordered = await orderAuditFiles(files);
  const report = await verifyAuditFiles(ordered, { keys: keys.keys, ...(opts.origin && { origin: opts.origin }), ...(anchor && { anchor }), ...(liveMaxAgeSeconds !== undefined && { liveMaxAgeSeconds }), ...(opts.partial && { partial: true }) });
  return { ok: true, text: formatVerifyReport(report, ordered), failed: report.failure !== undefined };
}
