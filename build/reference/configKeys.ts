// Config keys, types, defaults and bounds of routes.yaml, read from the zod schema (src/config/schema.ts)
// through its JSON Schema, so the reference table and the schema editors use cannot disagree.
import { z } from 'zod';
import { configSchema } from '../../src/config/schema.ts';

/** The JSON Schema keywords this generator reads (zod's output for the config schema). */
interface SchemaNode {
  type?: string | string[];
  properties?: Record<string, SchemaNode>;
  required?: string[];
  additionalProperties?: SchemaNode | boolean;
  items?: SchemaNode;
  enum?: unknown[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minLength?: number;
  minItems?: number;
  anyOf?: SchemaNode[];
}

/** The JSON Schema (draft-07, as editors' YAML plug-ins read it) of routes.yaml as a user writes it. */
export function routesJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, { target: 'draft-07', io: 'input', unrepresentable: 'any' });
  return {
    $schema: schema.$schema,
    title: 'gatehouse routes.yaml',
    description: 'The gateway configuration. Generated from the zod schema (src/config/schema.ts) by npm run docs:reference; `gatehouse check` validates more than this schema can say (files, policies, templates).',
    ...schema,
  };
}

/** routes.schema.json as committed: two-space JSON and a final newline. */
export function routesJsonSchemaText(): string {
  return `${JSON.stringify(routesJsonSchema(), null, 2)}\n`;
}

const largestSafe = Number.MAX_SAFE_INTEGER;

function typeOf(node: SchemaNode): string {
  if (node.enum) return node.enum.map((v) => `\`${JSON.stringify(v)}\``).join(' \\| ');
  if (node.anyOf) return node.anyOf.map(typeOf).join(' \\| ');
  const type = Array.isArray(node.type) ? node.type.join(' \\| ') : (node.type ?? 'any');
  if (type === 'array') return `list of ${node.items ? typeOf(node.items) : 'any'}`;
  if (type === 'object' && typeof node.additionalProperties === 'object') return `map of name to ${typeOf(node.additionalProperties)}`;
  return type;
}

function bounds(node: SchemaNode): string {
  const said: string[] = [];
  if (node.exclusiveMinimum !== undefined) said.push(`> ${node.exclusiveMinimum}`);
  if (node.minimum !== undefined) said.push(`>= ${node.minimum}`);
  if (node.maximum !== undefined && node.maximum < largestSafe) said.push(`<= ${node.maximum}`);
  if (node.minItems !== undefined) said.push(`at least ${node.minItems}`);
  return said.join(', ');
}

function leafRow(key: string, node: SchemaNode, required: boolean): string {
  const fallback = node.default === undefined ? '' : `\`${JSON.stringify(node.default)}\``;
  return `| \`${key}\` | ${typeOf(node)} | ${required ? 'yes' : ''} | ${fallback} | ${bounds(node)} |`;
}

/** One table row per key that takes a value, in schema order; nested keys as `a.b`, list items as `a[].b`. */
function rows(node: SchemaNode, prefix: string, out: string[]): void {
  const required = new Set(node.required ?? []);
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    const key = prefix + name;
    const item = child.type === 'array' ? child.items : undefined;
    if (item?.properties) {
      out.push(leafRow(key, { ...child, items: { type: 'object' } }, required.has(name)));
      rows(item, `${key}[].`, out);
    } else if (child.properties) {
      if (!required.has(name) || child.default !== undefined) out.push(leafRow(key, { ...child, type: 'object' }, required.has(name)));
      rows(child, `${key}.`, out);
    } else out.push(leafRow(key, child, required.has(name)));
  }
}

/** The Markdown table of every key: type, whether it is required within its block, default, bounds. */
export function configKeysTable(): string {
  const out = ['| key | type | required | default | bounds |', '| --- | --- | --- | --- | --- |'];
  rows(routesJsonSchema() as SchemaNode, '', out);
  return out.join('\n');
}
