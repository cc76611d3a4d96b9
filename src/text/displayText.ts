// Text shown to people (terminal output of every command, the portal's pages): what a client, token,
// record or gateway put into it is printed with every character that could move the cursor, recolour,
// reorder or split a line written as a visible escape, so no one can forge what an auditor reads.

/**
 * C0 controls (tab and line feed included), DEL, C1 controls (U+0080–U+009F: a terminal may take
 * U+009B as CSI), the bidirectional marks, embeddings, overrides and isolates (U+061C, U+200E/F,
 * U+202A–U+202E, U+2066–U+2069) and the line and paragraph separators (U+2028/9).
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeOne(char: string): string {
  const code = char.charCodeAt(0);
  return NAMED[char] ?? (code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`);
}

/** One value on one line: every such character becomes an escape (`\r`, `\x1b`, `\u202e`); other text is unchanged. */
export function displaySafe(value: string): string {
  return value.replace(UNSAFE, escapeOne);
}

/** A block the program composed of lines: the same, except its own line breaks stay. */
export function displayLines(text: string): string {
  return text.split('\n').map(displaySafe).join('\n');
}

/** Columns padded to their widest cell, two spaces apart; every cell (the header too) goes through displaySafe. */
export function textColumns(head: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const cells = [head, ...rows].map((row) => row.map(displaySafe));
  const widths = head.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)));
  return cells.map((row) => row.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n');
}

/**
 * Datalog as biscuit prints it (one statement a line): its own line breaks stay, a line break inside
 * a string literal is escaped like any other control, so a token's text cannot start a line of its own.
 */
export function displayDatalog(source: string): string {
  let inString = false;
  let out = '';
  let from = 0;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '"' && source[i - 1] !== '\\') inString = !inString;
    else if (c === '\n' && !inString) {
      out += displaySafe(source.slice(from, i)) + '\n';
      from = i + 1;
    }
  }
  return out + displaySafe(source.slice(from));
}
