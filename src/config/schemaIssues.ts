// Turns zod issues from `configSchema.safeParse` into config issues an administrator can act on:
// "missing required key", "unknown key ... (did you mean ...?)", and the schema's own messages.
import type { z } from 'zod';
import { configSchema } from './schema.ts';
import type { ConfigIssue, KeyPath } from './configError.ts';

interface SchemaDef {
  type: string;
  shape?: Record<string, { _zod: { def: SchemaDef } }>;
  element?: { _zod: { def: SchemaDef } };
  innerType?: { _zod: { def: SchemaDef } };
  in?: { _zod: { def: SchemaDef } };
}

/** The keys the schema accepts for the mapping at `path` (empty when unknown). */
function knownKeys(path: KeyPath): string[] {
  let def = (configSchema as unknown as { _zod: { def: SchemaDef } })._zod.def;
  const unwrap = (): void => {
    for (;;) {
      const inner = def.innerType ?? def.in;
      if (!inner) return;
      def = inner._zod.def;
    }
  };
  unwrap();
  for (const segment of path) {
    const next = typeof segment === 'number' ? def.element : def.shape?.[segment];
    if (!next) return [];
    def = next._zod.def;
    unwrap();
  }
  return def.shape ? Object.keys(def.shape) : [];
}

export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1]?.toLowerCase() === b[j - 1]?.toLowerCase() ? 0 : 1;
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

function unknownKeyMessage(path: KeyPath, key: string): string {
  const known = knownKeys(path);
  const close = known
    .map((k) => ({ k, d: editDistance(key, k) }))
    .filter(({ d }) => d <= 2)
    .sort((x, y) => x.d - y.d)[0];
  const hint = close ? ` (did you mean "${close.k}"?)` : known.length > 0 ? ` (expected one of: ${known.join(', ')})` : '';
  return `unknown key "${key}"${hint}`;
}

function typeName(value: unknown): string {
  if (value === null) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `a ${typeof value} (${JSON.stringify(value)})`;
}

function valueAt(data: unknown, path: KeyPath): unknown {
  let value = data;
  for (const segment of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string | number, unknown>)[segment];
  }
  return value;
}

/** One config issue per zod issue; unknown keys get one issue each. */
export function schemaIssues(issues: readonly z.core.$ZodIssue[], data: unknown): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const issue of issues) {
    const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push({ path: [...path, key], unknownKey: key, message: unknownKeyMessage(path, key) });
      continue;
    }
    if (issue.code === 'invalid_type') {
      const value = valueAt(data, path);
      const expected = issue.expected === 'object' ? 'a mapping' : issue.expected === 'array' ? 'a list' : `a ${issue.expected}`;
      const message =
        value === undefined
          ? `missing required key "${String(path[path.length - 1] ?? '')}"`
          : `expected ${expected}, got ${typeName(value)}${issue.expected === 'string' && typeof value === 'number' ? '; put it in quotes' : ''}${issue.expected === 'array' && typeof value === 'string' ? `; write it as a list: [${value}]` : ''}`;
      out.push({ path, message });
      continue;
    }
    out.push({ path, message: issue.message.replace(/^Invalid input: /, '') });
  }
  return out;
}
