// `{param}` templates (route paths, host names, tunnel names, upstream addresses), parsed and compiled here
// alone, once at config load: literal text matches only itself, each capture only its alphabet, anchored.

/** One `{name}` capture: a lower case letter, then lower case letters, digits and `_`. */
const PARAM = /\{([a-z][a-z0-9_]*)\}/g;
const PIECES = /(\{[a-z][a-z0-9_]*\})/;
const REGEXP_SPECIAL = /[.*+?^${}()|[\]\\]/g;

/**
 * What one capture may match. All are lazy: with two captures in a row of text, the first ends at the first
 * place where the rest still matches (`{service}--{user}` splits `a--b--c` after `a`).
 */
const CAPTURES = {
  /** Any text of one path segment or tunnel name (the route table holds values to PARAM_VALUE afterwards). */
  segment: '(.+?)',
  /** Host name characters, never a dot: a capture stays within one label. */
  hostLabel: '([a-z0-9-]+?)',
  /** A parameter value as the route table admits one (the portal reads captures back from upstream addresses). */
  paramValue: '([A-Za-z0-9_][A-Za-z0-9._@+-]{0,127}?)',
} as const;
export type CaptureKind = keyof typeof CAPTURES;

type Piece = string | { name: string };

export interface Template {
  readonly text: string;
  /** Literal text and captures, in order. */
  readonly pieces: readonly Piece[];
  /** The capture names, in order. */
  readonly names: readonly string[];
  /** Anchored at both ends; undefined when there is no capture (the text then matches only itself). */
  readonly pattern: RegExp | undefined;
}

/** The `{name}` captures in `text`, in order (text that is not a well-formed capture is literal). */
export function templateNames(text: string): string[] {
  return [...text.matchAll(PARAM)].map((m) => m[1] as string);
}

function piecesOf(text: string): Piece[] {
  // Splitting on a pattern with one group puts the captures at the odd places.
  return text.split(PIECES).flatMap<Piece>((p, i) => (i % 2 === 1 ? [{ name: p.slice(1, -1) }] : p === '' ? [] : [p]));
}

/** Compiles `text`; each capture matches what `kind` allows, the literal text only itself (regex characters escaped). */
export function compileTemplate(text: string, kind: CaptureKind): Template {
  const pieces = piecesOf(text);
  const names = pieces.flatMap((p) => (typeof p === 'string' ? [] : [p.name]));
  if (names.length === 0) return { text, pieces, names, pattern: undefined };
  const source = pieces.map((p) => (typeof p === 'string' ? p.replace(REGEXP_SPECIAL, '\\$&') : CAPTURES[kind])).join('');
  return { text, pieces, names, pattern: new RegExp(`^${source}$`) };
}

/** The captures of `value`, or undefined when it does not match (a name captured twice must capture the same text). */
export function matchTemplate(template: Template, value: string): Record<string, string> | undefined {
  if (template.pattern === undefined) return value === template.text ? {} : undefined;
  const found = template.pattern.exec(value);
  if (!found) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < template.names.length; i++) {
    const name = template.names[i] as string;
    const text = found[i + 1] as string;
    if (Object.hasOwn(params, name) && params[name] !== text) return undefined;
    params[name] = text;
  }
  return params;
}

/** `text` with each capture replaced by its value; a capture without one stays `{name}`. */
export function fillTemplate(template: Template | string, params: Readonly<Record<string, string>>): string {
  const pieces = typeof template === 'string' ? piecesOf(template) : template.pieces;
  return pieces.map((p) => (typeof p === 'string' ? p : (params[p.name] ?? `{${p.name}}`))).join('');
}

/** The last capture of `template` that `params` has no value for, if any. */
export function missingParam(template: Template, params: Readonly<Record<string, string>>): string | undefined {
  return template.names.filter((name) => params[name] === undefined).at(-1);
}
