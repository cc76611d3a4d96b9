// Finds where a key path lives in a parsed YAML document, so every config error names a line.
// Missing keys point at the mapping that should hold them; unknown keys point at the key itself.
import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';
import type { KeyPath } from './configError.ts';

export interface Position {
  line: number;
  column: number;
}

type AnyNode = Node | null | undefined;

function deref(doc: Document, node: unknown): AnyNode {
  if (isAlias(node)) return node.resolve(doc) ?? undefined;
  return node as AnyNode;
}

function keyName(key: unknown): string | undefined {
  return isScalar(key) ? String(key.value) : undefined;
}

/** The deepest node along `path`, and the mapping pair key for the last step when there is one. */
function walk(doc: Document, path: KeyPath): { node: AnyNode; key: AnyNode } {
  let node: AnyNode = deref(doc, doc.contents);
  let key: AnyNode;
  for (const segment of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => keyName(p.key) === String(segment));
      if (!pair) return { node, key: undefined };
      key = pair.key as AnyNode;
      // `upstream:` with nothing after it has a null value node; point at the key then.
      const value = deref(doc, pair.value);
      node = value && value.range ? value : key;
    } else if (isSeq(node) && typeof segment === 'number') {
      const item = deref(doc, node.items[segment]);
      if (!item) return { node, key: undefined };
      node = item;
      key = undefined;
    } else {
      return { node, key: undefined };
    }
  }
  return { node, key };
}

function at(lines: LineCounter, offset: number | undefined): Position {
  if (offset === undefined) return { line: 1, column: 1 };
  const { line, col } = lines.linePos(offset);
  return { line, column: col };
}

/** Where the value at `path` is written (or the nearest enclosing node that exists). */
export function positionOf(doc: Document, lines: LineCounter, path: KeyPath): Position {
  return at(lines, walk(doc, path).node?.range?.[0]);
}

/** Where the key `name` is written inside the mapping at `path` (for unknown keys). */
export function positionOfKey(doc: Document, lines: LineCounter, path: KeyPath, name: string): Position {
  const found = walk(doc, [...path, name]);
  if (found.key?.range) return at(lines, found.key.range[0]);
  return at(lines, found.node?.range?.[0]);
}

/**
 * Where line `lineInValue` (0-based) of a multi-line value is written. Exact for literal block
 * scalars (`policy: |`); for other styles, the line where the value starts.
 */
export function positionInValue(
  doc: Document,
  lines: LineCounter,
  source: string,
  path: KeyPath,
  lineInValue: number,
): Position {
  const { node } = walk(doc, path);
  const start = positionOf(doc, lines, path);
  if (!isScalar(node) || node.type !== 'BLOCK_LITERAL') return start;
  const line = start.line + 1 + lineInValue;
  const text = source.split(/\r?\n/)[line - 1];
  if (text === undefined) return start;
  return { line, column: text.length - text.trimStart().length + 1 };
}
