// Relative links in the project's Markdown: each must lead to a file that exists and, with an anchor,
// to a heading of that file (GitHub's heading ids).
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/** GitHub's id of a heading: lower case, punctuation dropped, spaces to hyphens. */
export function headingSlug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\- _]/gu, '')
    .replace(/ /g, '-');
}

/** The lines of a Markdown text outside fenced code blocks. */
function proseLines(text: string): string[] {
  let fenced = false;
  return text.split('\n').filter((line) => {
    if (line.startsWith('```')) {
      fenced = !fenced;
      return false;
    }
    return !fenced;
  });
}

/** Every anchor a Markdown file offers: its headings' ids, with GitHub's -1, -2 for repeats. */
export function anchorsOf(text: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const line of proseLines(text)) {
    const heading = /^#{1,6} (.+)$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const slug = headingSlug(heading);
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return anchors;
}

/** Link targets in a Markdown text, outside code blocks and code spans. */
export function linkTargets(text: string): string[] {
  const targets: string[] = [];
  for (const line of proseLines(text)) {
    const withoutCode = line.replace(/`[^`]*`/g, '``');
    for (const match of withoutCode.matchAll(/\]\(([^)\s]+)\)/g)) targets.push(match[1] ?? '');
  }
  return targets;
}

/** README.md and every .md file under docs/, relative to the repository root. */
export function projectMarkdownFiles(root: string): string[] {
  const found = ['README.md'];
  const walk = (dir: string): void => {
    for (const name of readdirSync(join(root, dir)).sort()) {
      const path = join(dir, name);
      if (statSync(join(root, path)).isDirectory()) walk(path);
      else if (name.endsWith('.md')) found.push(path);
    }
  };
  if (existsSync(join(root, 'docs'))) walk('docs');
  return found;
}

/** Every relative link of those files that leads nowhere, as `file: target: why`. */
export function brokenLinks(root: string): string[] {
  const broken: string[] = [];
  for (const file of projectMarkdownFiles(root)) {
    const text = readFileSync(join(root, file), 'utf8');
    for (const target of linkTargets(text)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto: ...
      const [path = '', anchor] = target.split('#', 2);
      const resolved = path === '' ? join(root, file) : resolve(root, dirname(file), decodeURIComponent(path));
      if (!resolved.startsWith(root)) broken.push(`${file}: ${target}: outside the repository`);
      else if (!existsSync(resolved)) broken.push(`${file}: ${target}: no such file ${relative(root, resolved)}`);
      else if (anchor !== undefined && resolved.endsWith('.md') && !anchorsOf(readFileSync(resolved, 'utf8')).has(anchor)) {
        broken.push(`${file}: ${target}: no heading #${anchor} in ${relative(root, resolved)}`);
      }
    }
  }
  return broken;
}
