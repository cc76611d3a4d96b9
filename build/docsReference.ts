// `npm run docs:reference`: writes what the docs take from the code (config keys and defaults, every
// command's --help, metric names, refusal codes, routes.yaml's JSON Schema); `--check` only reports what is out of date.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { cliHelpMarkdown } from './reference/cliHelp.ts';
import { configKeysTable, routesJsonSchemaText } from './reference/configKeys.ts';
import { type GeneratedSection, sectionText, withSection } from './reference/markers.ts';
import { metricNamesTable } from './reference/metricNames.ts';
import { refusalCodesTable } from './reference/refusalCodes.ts';

export const repoRoot = resolve(import.meta.dirname, '..');

/** Every generated section, as the code says it should read now. */
export async function generatedSections(root: string = repoRoot): Promise<GeneratedSection[]> {
  return [
    { file: 'docs/reference/config.md', marker: 'config-keys', content: configKeysTable() },
    { file: 'docs/reference/cli.md', marker: 'cli-help', content: await cliHelpMarkdown(root) },
    { file: 'docs/reference/metrics.md', marker: 'metric-names', content: metricNamesTable() },
    { file: 'docs/reference/exit-codes.md', marker: 'refusal-codes', content: refusalCodesTable() },
  ];
}

/** Files generated whole: the JSON Schema of routes.yaml, for editors (see docs/reference/config.md). */
export function generatedFiles(): { file: string; content: string }[] {
  return [{ file: routesSchemaFile, content: routesJsonSchemaText() }];
}

export const routesSchemaFile = 'schema/routes.schema.json';

/** The sections (and whole files, marker `file`) whose committed text differs from what the code generates. */
export async function staleSections(root: string = repoRoot): Promise<{ file: string; marker: string; problem: string }[]> {
  const stale: { file: string; marker: string; problem: string }[] = [];
  for (const generated of generatedFiles()) {
    const path = join(root, generated.file);
    if (!existsSync(path)) stale.push({ file: generated.file, marker: 'file', problem: 'missing' });
    else if (readFileSync(path, 'utf8') !== generated.content) stale.push({ file: generated.file, marker: 'file', problem: 'differs from what the code generates' });
  }
  for (const section of await generatedSections(root)) {
    const committed = sectionText(readFileSync(join(root, section.file), 'utf8'), section.marker);
    if (!committed.ok) stale.push({ ...section, problem: committed.error });
    else if (committed.value !== section.content) stale.push({ ...section, problem: 'differs from what the code generates' });
  }
  return stale;
}

/** Writes every section between its markers; the files' hand-written text stays as it is. */
export async function writeSections(root: string = repoRoot): Promise<string[]> {
  const written: string[] = [];
  for (const generated of generatedFiles()) {
    const path = join(root, generated.file);
    if (existsSync(path) && readFileSync(path, 'utf8') === generated.content) continue;
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, generated.content);
    written.push(generated.file);
  }
  for (const section of await generatedSections(root)) {
    const path = join(root, section.file);
    const before = readFileSync(path, 'utf8');
    const after = withSection(before, section.marker, section.content);
    if (!after.ok) throw new Error(`${section.file}: ${after.error}`);
    if (after.value !== before) {
      writeFileSync(path, after.value);
      written.push(`${section.file} (${section.marker})`);
    }
  }
  return written;
}

if (import.meta.main) {
  if (process.argv.includes('--check')) {
    const stale = await staleSections();
    for (const s of stale) process.stderr.write(`${s.file}: ${s.marker}: ${s.problem}\n`);
    if (stale.length > 0) process.stderr.write('run npm run docs:reference and commit the result\n');
    process.exitCode = stale.length > 0 ? 1 : 0;
  } else {
    const written = await writeSections();
    process.stdout.write(written.length > 0 ? `wrote ${written.join(', ')}\n` : 'docs/reference is up to date\n');
  }
}
