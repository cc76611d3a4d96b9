// The JSON Schema of routes.yaml (schema/routes.schema.json, generated from the zod schema), checked by a
// validator other than its generator: it accepts the shipped routes.yaml and the docs' examples, and
// rejects broken configurations where they are broken.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { repoRoot, routesSchemaFile } from '../build/docsReference.ts';
import { routesJsonSchemaText } from '../build/reference/configKeys.ts';
import { projectMarkdownFiles } from '../build/reference/markdownLinks.ts';
import { jsonSchemaValidatorMissing, validateWithJsonSchema } from './support/jsonSchemaValidator.ts';

const schemaText = readFileSync(join(repoRoot, routesSchemaFile), 'utf8');
const schema = JSON.parse(schemaText) as { properties: Record<string, { items?: unknown }>; required: string[] };
const shipped = readFileSync(join(repoRoot, 'routes.yaml'), 'utf8');

/** The shipped routes.yaml with one change made by `edit`. */
function broken(edit: (config: Record<string, unknown> & { routes: Record<string, unknown>[]; limits?: Record<string, unknown> }) => void): unknown {
  const config = parse(shipped) as Parameters<typeof edit>[0];
  edit(config);
  return config;
}

/** The yaml blocks of README.md and docs/ that show routes.yaml: whole or in part (some top-level keys, or a list of routes). */
function documentedExamples(): { configs: Record<string, unknown>; routes: Record<string, unknown> } {
  const configs: Record<string, unknown> = {};
  const routes: Record<string, unknown> = {};
  for (const file of projectMarkdownFiles(repoRoot)) {
    const text = readFileSync(join(repoRoot, file), 'utf8');
    // Fenced blocks, also those indented inside a list item (their indent is removed).
    for (const [index, match] of [...text.matchAll(/^( *)```yaml\n([\s\S]*?)^\1```$/gm)].entries()) {
      const indent = match[1] ?? '';
      const value: unknown = parse((match[2] ?? '').replace(new RegExp(`^${indent}`, 'gm'), ''));
      const name = `${file} yaml block ${index + 1}`;
      if (value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).every((key) => key in schema.properties)) configs[name] = value;
      else if (Array.isArray(value) && value.every((route) => route && typeof route === 'object' && 'name' in route && 'policy' in route)) routes[name] = value;
    }
  }
  return { configs, routes };
}

it('schema/routes.schema.json is what the zod schema generates now (else: npm run docs:reference)', () => {
  expect(schemaText).toBe(routesJsonSchemaText());
});

it('the shipped routes.yaml names the schema for editors (yaml-language-server)', () => {
  expect(shipped.split('\n')[0]).toBe('# yaml-language-server: $schema=./schema/routes.schema.json');
});

const missing = jsonSchemaValidatorMissing();
describe.skipIf(missing !== undefined)(`routes.yaml JSON Schema with an independent validator${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('accepts the shipped routes.yaml and the site\'s first one (systemd/routes.yaml)', () => {
    const site = readFileSync(join(repoRoot, 'systemd', 'routes.yaml'), 'utf8');
    expect(validateWithJsonSchema(schema, { 'routes.yaml': parse(shipped), 'systemd/routes.yaml': parse(site) })).toEqual({ 'routes.yaml': [], 'systemd/routes.yaml': [] });
  });

  it('accepts every routes.yaml example in README.md and docs/, for the keys each shows', () => {
    const { configs, routes } = documentedExamples();
    // Every such block there is today (the witness's own witness.yaml is not a routes.yaml).
    expect(Object.keys(configs).length).toBeGreaterThanOrEqual(10);
    expect(Object.keys(routes).length).toBeGreaterThanOrEqual(4);
    const results = {
      ...validateWithJsonSchema({ ...schema, required: [] }, configs),
      ...validateWithJsonSchema({ ...schema, properties: undefined, required: [], type: 'array', items: schema.properties.routes?.items }, routes),
    };
    // A block shows the keys it is about (tls.crl, not all of tls): a key it leaves out is not an error.
    const wrong = Object.entries(results).map(([name, errors]) => [name, errors.filter((e) => !e.endsWith('is a required property'))] as const);
    expect(wrong.filter(([, errors]) => errors.length > 0)).toEqual([]);
  });

  it('rejects a misspelt key, protocols as a string, a number as text and a missing block, saying where', () => {
    const results = validateWithJsonSchema(schema, {
      misspelt: broken((c) => ((c.routes[0] as Record<string, unknown>).polcy = 'allow if true;')),
      protocolsString: broken((c) => ((c.routes[0] as Record<string, unknown>).protocols = 'http')),
      numberAsText: broken((c) => (c.limits = { connections: 'many' })),
      noTls: broken((c) => delete c.tls),
    });
    expect(results.misspelt).toEqual([expect.stringMatching(/^routes\/0: Additional properties are not allowed \('polcy' was unexpected\)/)]);
    expect(results.protocolsString).toEqual(["routes/0/protocols: 'http' is not of type 'array'"]);
    expect(results.numberAsText).toEqual(["limits/connections: 'many' is not of type 'integer'"]);
    expect(results.noTls).toEqual([": 'tls' is a required property"]);
  });
});
