// The text `gatehouse audit verify` prints: OK with counts, seq and time range, the tree, origin and
// what the signatures and the anchor cover, or the first bad record (file, line, seq) and what is wrong.
import type { VerifyReport } from './auditVerify.ts';
import { displaySafe } from '../text/displayText.ts';

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
  if (r.origin) out.push(`  origin: ${displaySafe(r.origin)}`);
  if (r.treeSize !== undefined) out.push(`  tree: size ${r.treeSize}, root ${r.root}`);
  if (r.uncovered > 0) out.push(`  starts at seq ${r.firstSeq} (--partial): ${r.uncovered} record(s) before the first checkpoint with a range are chained but not covered by a checked root`);
  const signed = r.keys.length > 0 ? `${r.signaturesChecked} signatures good (${r.keys.join(', ')})` : 'signatures NOT checked (--unsigned)';
  out.push(`  ${r.checkpoints} checkpoint(s), ${signed}${r.lastCheckpointSeq === undefined ? '' : `, last at seq ${r.lastCheckpointSeq}`}`);
  if (r.anchor) out.push(`  anchor ${r.anchor.source}: size ${r.anchor.size} reached, roots agree`);
  if (r.afterLastCheckpoint > 0) out.push(`  live: ${r.afterLastCheckpoint} record(s) after the last checkpoint, since ${r.unsealedSince}: chained, not yet signed`);
  return out.join('\n') + '\n';
}
