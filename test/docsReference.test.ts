// The docs agree with the code: the generated reference sections (config keys, CLI help, metric names)
// are what the code generates now, and every relative link in README.md and docs/ leads somewhere.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot, staleSections } from '../build/docsReference.ts';
import { beginMarker, endMarker, sectionText, withSection } from '../build/reference/markers.ts';
import { brokenLinks, linkTargets } from '../build/reference/markdownLinks.ts';
import { metricSourceFiles } from '../build/reference/metricNames.ts';

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

  it('replaces only the text between the markers of a generated section', () => {
    const doc = `# Title\n\nprose before\n\n${beginMarker('x')}\nold\n${endMarker('x')}\n\nprose after\n`;
    const updated = withSection(doc, 'x', 'new table');
    expect(updated.ok && updated.value).toBe(`# Title\n\nprose before\n\n${beginMarker('x')}\nnew table\n${endMarker('x')}\n\nprose after\n`);
    expect(sectionText(doc, 'missing')).toEqual({ ok: false, error: 'the markers of missing are missing' });
  });
});

describe('links in README.md and docs/', () => {
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
