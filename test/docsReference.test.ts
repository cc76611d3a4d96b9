// The docs agree with the code: the generated reference sections (config keys, CLI help, metric names)
// are what the code generates now, the hand-written tables of metrics, facts and audit record fields name
// exactly what the code has, and every relative link in README.md and docs/ leads somewhere.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot, staleSections } from '../build/docsReference.ts';
import { beginMarker, endMarker, sectionText, withSection } from '../build/reference/markers.ts';
import { brokenLinks, linkTargets } from '../build/reference/markdownLinks.ts';
import { configKeysTable } from '../build/reference/configKeys.ts';
import { gatewayMetricNames, metricSourceFiles } from '../build/reference/metricNames.ts';
import { requestFactList } from '../src/authz/policy/requestFacts.ts';
import { gatewayFacts } from '../src/authz/policy/factVocabulary.ts';
import type { RequestFacts } from '../src/authz/types.ts';

/** Every .ts file under src/, relative to the repository root. */
function sourceFiles(dir = 'src'): string[] {
  return readdirSync(join(repoRoot, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(repoRoot, path)).isDirectory()) return sourceFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

describe('docs/reference agrees with the code', () => {
  it('has the config keys and defaults, every command\'s --help and every metric name the code generates now (else: npm run docs:reference)', async () => {
    const stale = await staleSections();
    expect(stale.map((s) => `${s.file}: ${s.marker}: ${s.problem}`), 'run npm run docs:reference (node build/docsReference.ts) and commit the result').toEqual([]);
  }, 120_000);

  it('reads the metrics of every source file that registers prom-client metrics', () => {
    const registering = sourceFiles().filter((file) => /new (Counter|Gauge|Histogram|Summary)\(/.test(readFileSync(join(repoRoot, file), 'utf8')));
    expect(registering.sort()).toEqual([...metricSourceFiles].sort());
  });

  it('names every config key of the schema in the hand-written meanings (docs/reference/config.md)', () => {
    const handWritten = readFileSync(join(repoRoot, 'docs/reference/config.md'), 'utf8').split('## JSON Schema for editors')[0] ?? '';
    const codeSpans = [...handWritten.matchAll(/`([^`\n]+)`/g)].map((m) => m[1] ?? '');
    const keys = [...configKeysTable().matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1] ?? '');
    expect(keys.length).toBeGreaterThan(50);
    // A key is named by its full path (`tls.crl`) or, in its block's row, by its own name (`count` under `authz.workers`).
    const unnamed = keys.filter((key) => {
      const leaf = key.split(/\.|\[\]\./).pop() ?? key;
      return !codeSpans.some((span) => span === key || new RegExp(`\\b${leaf}\\b`).test(span));
    });
    expect(unnamed).toEqual([]);
  });

  it('gives every metric the gateway registers its meaning in the hand-written table (docs/reference/metrics.md)', () => {
    const handWritten = readFileSync(join(repoRoot, 'docs/reference/metrics.md'), 'utf8').split('## Every metric name')[0] ?? '';
    expect(gatewayMetricNames().filter((m) => !handWritten.includes(`\`${m.name}`))).toEqual([]);
  });

  it('lists every fact the gateway gives the authorizer, and no other (docs/reference/facts.md)', () => {
    const everything: RequestFacts = {
      time: new Date(),
      route: 'r',
      protocol: 'http',
      method: 'GET',
      host: 'h',
      path: '/p',
      params: { user: 'u' },
      sourceIp: '192.0.2.1',
      client: { cn: 'c', subject: 'CN=c', issuer: 'CN=i', serial: '01', fingerprint: 'sha256:00', sans: [{ kind: 'dns', value: 'x' }], notAfter: '' },
      service: 's',
      publisherFingerprint: 'sha256:11',
      signer: 'root',
    };
    const produced = new Set<string>(requestFactList(everything).map((fact) => fact.predicate));
    // The publish decision's own facts (token_blocks, publish_granted) are built in publishChain.ts.
    for (const match of readFileSync(join(repoRoot, 'src/authz/policy/publishChain.ts'), 'utf8').matchAll(/: GatewayPredicate = '([a-z_]+)'/g)) produced.add(match[1] ?? '');
    const table = readFileSync(join(repoRoot, 'docs/reference/facts.md'), 'utf8').split('\n').filter((line) => line.startsWith('| `'));
    const documented = new Set(table.flatMap((row) => [...(row.split(' | ')[0] ?? '').matchAll(/`([a-z_]+)\(/g)].map((m) => m[1] ?? '')));
    expect([...documented].sort()).toEqual([...produced].sort());
    // The vocabulary `check` and `authz explain` read is the same list.
    expect(Object.keys(gatewayFacts).sort()).toEqual([...produced].sort());
  });

  it('names every audit record field, token block field and event of src/audit/auditRecord.ts, and no other (docs/reference/audit-records.md)', () => {
    const source = readFileSync(join(repoRoot, 'src/audit/auditRecord.ts'), 'utf8');
    /** The property names of one interface in auditRecord.ts. */
    const fieldsOf = (name: string) => [...(new RegExp(`export interface ${name} \\{([\\s\\S]*?)\\n\\}`).exec(source)?.[1] ?? '').matchAll(/^ {2}(\w+)\??:/gm)].map((m) => m[1] ?? '');
    const doc = readFileSync(join(repoRoot, 'docs/reference/audit-records.md'), 'utf8');
    /** The first column's names of the table that follows `intro` in the doc. */
    const tableAfter = (intro: string) => {
      const rows = doc.slice(doc.indexOf(intro)).split('\n\n').find((block) => block.startsWith('| field |'))?.split('\n').slice(2) ?? [];
      return [...new Set(rows.flatMap((row) => [...(row.split(' | ')[0] ?? '').matchAll(/`(\w+)`/g)].map((m) => m[1] ?? '')))].sort();
    };
    expect(tableAfter('# Audit record')).toEqual([...fieldsOf('ChainFields'), ...fieldsOf('AuditRecord')].sort());
    expect(tableAfter('`token.blocks`, one entry per block')).toEqual(fieldsOf('AuditTokenBlock').sort());
    const events = [...(/export type AuditEvent =([\s\S]*?)\n\n/.exec(source)?.[1] ?? '').matchAll(/\| '([a-z.]+)'/g)].map((m) => m[1] ?? '');
    const eventRow = doc.split('\n').find((line) => line.startsWith('| `event` |')) ?? '';
    expect([...eventRow.matchAll(/`([a-z]+\.[a-z.]+|request)`/g)].map((m) => m[1]).sort()).toEqual(events.sort());
  });

  it('replaces only the text between the markers of a generated section', () => {
    const doc = `# Title\n\nprose before\n\n${beginMarker('x')}\nold\n${endMarker('x')}\n\nprose after\n`;
    const updated = withSection(doc, 'x', 'new table');
    expect(updated.ok && updated.value).toBe(`# Title\n\nprose before\n\n${beginMarker('x')}\nnew table\n${endMarker('x')}\n\nprose after\n`);
    expect(sectionText(doc, 'missing')).toEqual({ ok: false, error: 'the markers of missing are missing' });
  });
});

describe('links in README.md and docs/', () => {
  it('keeps the README a page that fits in a head (under 400 lines): the rest belongs in docs/', () => {
    expect(readFileSync(join(repoRoot, 'README.md'), 'utf8').split('\n').length).toBeLessThan(400);
  });

  it('leads every relative link to an existing file, and every anchor to a heading of that file', () => {
    expect(brokenLinks(repoRoot)).toEqual([]);
  });

  it('finds links outside code only, and reports a link to a missing file or heading', () => {
    expect(linkTargets('see [a](a.md#x) and `[b](b.md)`\n```\n[c](c.md)\n```\n')).toEqual(['a.md#x']);
    const root = mkdtempSync(join(tmpdir(), 'gatehouse-links-'));
    try {
      mkdirSync(join(root, 'docs'));
      writeFileSync(join(root, 'docs', 'page.md'), '# Page\n\n## Two words\n');
      writeFileSync(join(root, 'README.md'), '[ok](docs/page.md#two-words) [gone](docs/gone.md) [no heading](docs/page.md#three) [web](https://example.org/x)\n');
      expect(brokenLinks(root)).toEqual(['README.md: docs/gone.md: no such file docs/gone.md', 'README.md: docs/page.md#three: no heading #three in docs/page.md']);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
