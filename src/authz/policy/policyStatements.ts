// Lists a route policy's allow/deny policies in source order, so the index biscuit reports for the
// matching policy can be turned back into the Datalog text the administrator wrote.

/**
 * Splits Datalog source into statements at top-level `;`, skipping `//` and `/* *\/` comments and
 * keeping string literals intact; whitespace outside strings is collapsed so each statement is one line.
 */
export function datalogStatements(source: string): string[] {
  const statements: string[] = [];
  let current = '';
  let pendingSpace = false;
  const push = (text: string): void => {
    if (pendingSpace && current.length > 0) current += ' ';
    pendingSpace = false;
    current += text;
  };
  let i = 0;
  while (i < source.length) {
    const c = source[i] ?? '';
    const next = source[i + 1] ?? '';
    if (c === '"') {
      let end = i + 1;
      while (end < source.length && source[end] !== '"') end += source[end] === '\\' ? 2 : 1;
      push(source.slice(i, end + 1));
      i = end + 1;
    } else if (c === '/' && next === '/') {
      const end = source.indexOf('\n', i);
      i = end === -1 ? source.length : end;
      pendingSpace = true;
    } else if (c === '/' && next === '*') {
      const end = source.indexOf('*/', i + 2);
      i = end === -1 ? source.length : end + 2;
      pendingSpace = true;
    } else if (/\s/.test(c)) {
      pendingSpace = true;
      i += 1;
    } else if (c === ';') {
      if (current.length > 0) statements.push(current + ';');
      current = '';
      pendingSpace = false;
      i += 1;
    } else {
      push(c);
      i += 1;
    }
  }
  if (current.length > 0) statements.push(current);
  return statements;
}

/** The `allow if` / `deny if` statements of `source`, in the order biscuit numbers them. */
export function policyStatements(source: string): string[] {
  return datalogStatements(source).filter((s) => /^(allow|deny)\s+if\b/.test(s));
}
