// A long value cut for a record or a message: its start kept, its size and hash named, so what was cut
// stays identifiable without storing it (audit records, biscuit error texts).
import { hash } from 'node:crypto';

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;

/**
 * `text` if at most `keepChars` long; else its first `keepChars` characters and
 * `…[cut <n> bytes sha256:<hex>]`: n UTF-8 bytes were cut, the hash is of the whole value's UTF-8 bytes.
 */
export function cutText(text: string, keepChars: number): string {
  if (text.length <= keepChars) return text;
  // Never split a surrogate pair: the kept part stays valid UTF-16.
  const end = keepChars > 0 && isHighSurrogate(text.charCodeAt(keepChars - 1)) ? keepChars - 1 : keepChars;
  const kept = text.slice(0, end);
  const cutBytes = Buffer.byteLength(text) - Buffer.byteLength(kept);
  return `${kept}…[cut ${cutBytes} bytes sha256:${hash('sha256', text, 'hex')}]`;
}

