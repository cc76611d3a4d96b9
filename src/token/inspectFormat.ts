// Human-readable rendering of a token inspection for `gatehouse token inspect`
// (the --json form is the TokenInspection object itself).
import type { TokenInspection } from './inspectToken.ts';
import { displayDatalog, displaySafe } from '../text/displayText.ts';
import { publishableServices } from './publishRight.ts';

function indent(text: string, prefix: string): string {
  return text
    .trimEnd()
    .split('\n')
    .map((line) => (line.length > 0 ? prefix + line : line))
    .join('\n');
}

export function formatInspection(inspection: TokenInspection): string {
  const out: string[] = [];
  out.push(`verified:  ${inspection.verified ? 'yes, against the root public key' : 'NO (no --pubkey given): contents not shown'}`);
  if (inspection.verified) {
    out.push(`user:      ${displaySafe(inspection.user ?? '(none)')}`);
    out.push(`groups:    ${inspection.groups.length > 0 ? displaySafe(inspection.groups.join(', ')) : '(none)'}`);
    out.push(`expires:   ${displaySafe(inspection.expiresAt ?? '(no expiry check found)')}`);
    const publishable = publishableServices(inspection.blocks.map((b) => b.source ?? ''));
    out.push(`publish:   ${publishable.length === 0 ? 'no (no right to publish, or a block does not pass it on)' : displaySafe(publishable.join(', ').replace(/^\*$/, 'any service'))}`);
  }
  out.push(`blocks:    ${inspection.blocks.length}`);
  for (const block of inspection.blocks) {
    out.push('');
    out.push(`block ${block.index}${block.index === 0 ? ' (authority)' : ''}`);
    out.push(`  revocation id: ${block.revocationId}`);
    // The block's Datalog keeps its own lines; anything inside a string literal is escaped.
    if (block.source !== undefined) out.push(indent(displayDatalog(block.source), '  '));
  }
  return out.join('\n') + '\n';
}
