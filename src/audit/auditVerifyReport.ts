// The text `gatehouse audit verify` prints: OK with counts, seq and time range and what the
// signatures cover, or the first bad record (file, line, seq) and what is wrong with it.
import type { VerifyReport } from './auditVerify.ts';
import { displaySafe } from '../cli/displayText.ts';

export function formatVerifyReport(r: VerifyReport, files: readonly string[]): string {
  const out: string[] = [];
  const range = r.firstSeq === undefined ? 'no records' : `seq ${r.firstSeq}..${r.lastSeq}`;
  const times = r.firstTime ? `, ${r.firstTime} .. ${r.lastTime}` : '';
  if (r.failure) {
    const f = r.failure;
    out.push(`FAIL ${displaySafe(f.file)}:${f.line}${f.seq === undefined ? '' : ` seq ${f.seq}`}: ${f.problem}: ${displaySafe(f.message)}`);
    out.push(`  read up to the failure: ${r.records} records (${range}), ${r.checkpoints} checkpoint(s)`);
    return out.join('\n') + '\n';
  }
  out.push(`OK ${r.files} file(s), ${r.records} records, ${range}${times}`);
  out.push(`  order: ${files.map(displaySafe).join(' ')}`);
  if (r.firstSeq !== undefined) out.push(r.startsChain ? '  starts the chain (seq 1)' : `  starts at seq ${r.firstSeq}: earlier records are in files not given`);
  if (r.unchained > 0) out.push(`  ${r.unchained} line(s) before seq 1 were written before the chain existed: not protected`);
  const signed = r.keyId ? `${r.signaturesChecked} signatures good (key ${r.keyId})` : 'signatures NOT checked (no --key)';
  out.push(`  ${r.checkpoints} checkpoint(s), ${signed}${r.lastCheckpointSeq === undefined ? '' : `, last at seq ${r.lastCheckpointSeq}`}`);
  if (r.afterLastCheckpoint > 0) out.push(`  ${r.afterLastCheckpoint} record(s) after the last checkpoint: chained, not yet signed (a truncation there is seen only against a checkpoint kept elsewhere)`);
  return out.join('\n') + '\n';
}
