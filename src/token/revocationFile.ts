// The revocation list: one lowercase hex revocation id per line, `#` comments and blank lines
// allowed. Reading is strict (the gateway fails closed on any bad line); appends never interleave.
import fs from 'node:fs';
import { fail, ok, type TokenResult } from './tokenErrors.ts';

/** Ed25519 signatures give 128 hex digits, ECDSA ones ~140-144; anything shorter is a truncated line. */
const revocationId = /^(?:[0-9a-f]{2}){32,256}$/;

/** Lowercased id, or an error naming it. */
export function validRevocationId(id: string): TokenResult<string> {
  const lower = id.trim().toLowerCase();
  if (revocationId.test(lower)) return ok(lower);
  return fail('invalid-input', `invalid revocation id ${JSON.stringify(id)}: expected an even number (64 to 512) of hex digits`);
}

/** Parses the list's text; `file` is only used in messages. */
export function parseRevocationList(text: string, file: string): TokenResult<Set<string>> {
  const ids = new Set<string>();
  const lines = text.split('\n');
  for (const [index, raw] of lines.entries()) {
    const hash = raw.indexOf('#');
    const content = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
    if (content.length === 0) continue;
    const id = content.toLowerCase();
    if (!revocationId.test(id)) {
      const shown = content.length > 40 ? `${content.slice(0, 40)}...` : content;
      return fail('malformed', `${file}:${index + 1}: not a revocation id: ${JSON.stringify(shown)}`, { file, line: index + 1 });
    }
    ids.add(id);
  }
  return ok(ids);
}

export function readRevocationList(file: string): TokenResult<Set<string>> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return fail('missing', `revocation list ${file} does not exist`, { file });
    return fail('unreadable', `cannot read revocation list ${file}: ${(error as Error).message}`, { file });
  }
  return parseRevocationList(text, file);
}

/**
 * Appends the ids not yet in the list (creating it, mode 0644, when missing) with a single
 * O_APPEND write, so concurrent writers never interleave partial lines. Returns the ids added.
 * Two writers racing on the same id may both add it; duplicates are harmless to readers.
 */
export function appendRevokedIds(file: string, ids: readonly string[]): TokenResult<string[]> {
  const wanted: string[] = [];
  for (const id of ids) {
    const valid = validRevocationId(id);
    if (!valid.ok) return valid;
    if (!wanted.includes(valid.value)) wanted.push(valid.value);
  }
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o644);
  } catch (error) {
    return fail('unwritable', `cannot open revocation list ${file}: ${(error as Error).message}`, { file });
  }
  try {
    const text = fs.readFileSync(fd, 'utf8');
    // Another writer's append may be half visible to this read (a write is atomic against other
    // writes, not against reads): its last line is then a fragment, so judge complete lines only.
    const complete = text.slice(0, text.lastIndexOf('\n') + 1);
    const existing = parseRevocationList(complete, file);
    if (!existing.ok) return existing;
    const added = wanted.filter((id) => !existing.value.has(id));
    if (added.length === 0) return ok([]);
    // A hand-edited list may lack its final newline; never glue an id onto its last line (when the
    // fragment was a concurrent append instead, this leaves a blank line, which readers skip).
    const separator = text.length > 0 && !text.endsWith('\n') ? '\n' : '';
    const data = Buffer.from(separator + added.map((id) => `${id}\n`).join(''));
    const written = fs.writeSync(fd, data);
    if (written !== data.length) {
      return fail('unwritable', `short write to revocation list ${file} (${written} of ${data.length} bytes)`, { file });
    }
    fs.fsyncSync(fd);
    return ok(added);
  } catch (error) {
    return fail('unwritable', `cannot update revocation list ${file}: ${(error as Error).message}`, { file });
  } finally {
    fs.closeSync(fd);
  }
}
