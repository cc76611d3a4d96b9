// Every Node that package.json's `engines` allows must run what npm installs: a dependency that declares
// a newer Node (npm's EBADENGINE warning) is either one the docs name, tested under the oldest Node, or a decision to make.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const repoRoot = resolve(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(join(repoRoot, 'package-lock.json'), 'utf8')) as { packages: Record<string, { engines?: { node?: string } | string[]; dev?: boolean }> };

type Version = [number, number, number];
const version = (text: string): Version => {
  const [a = 0, b = 0, c = 0] = text.replace(/\.x$/, '').split('.').map(Number);
  return [a, b, c];
};
const compare = (x: Version, y: Version) => x[0] - y[0] || x[1] - y[1] || x[2] - y[2];

/** Whether `v` satisfies one npm range in the forms the lockfile holds (>=, ^, ~, N, N.x; || between them). */
function satisfies(v: Version, range: string): boolean {
  return range.split('||').some((alternative) => {
    const text = alternative.trim().replace(/\s+/g, '');
    const ge = /^>=(\d+(?:\.\d+){0,2}(?:\.x)?)$/.exec(text);
    if (ge) return compare(v, version(ge[1] ?? '0')) >= 0;
    const caret = /^\^(\d+(?:\.\d+){0,2})$/.exec(text);
    if (caret) return v[0] === version(caret[1] ?? '0')[0] && compare(v, version(caret[1] ?? '0')) >= 0;
    const tilde = /^~(\d+(?:\.\d+){0,2})$/.exec(text);
    if (tilde) {
      const t = version(tilde[1] ?? '0');
      return v[0] === t[0] && v[1] === t[1] && compare(v, t) >= 0;
    }
    const major = /^(\d+)(?:\.x)?$/.exec(text);
    if (major) return v[0] === Number(major[1]);
    throw new Error(`engines range not understood: ${range}`);
  });
}

/** The oldest Node our `engines` allows (">=20.19" → 20.19.0). */
const floor = version(/^>=\s*(\S+)$/.exec(pkg.engines.node)?.[1] ?? 'unparsed');

describe('engines', () => {
  it('reads the ranges it meets', () => {
    expect(satisfies([20, 19, 0], '^20.19.0 || >=22.12.0')).toBe(true);
    expect(satisfies([20, 19, 0], '>=22')).toBe(false);
    expect(satisfies([20, 19, 0], '^16 || ^18 || >=20')).toBe(true);
    expect(satisfies([20, 19, 0], '20 || >=22')).toBe(true);
    expect(satisfies([20, 19, 0], '^20.0.0 || ^22.0.0 || >=24.0.0')).toBe(true);
    expect(satisfies([20, 18, 0], '^20.19.0 || >=22.12.0')).toBe(false);
  });

  it(`finds only the documented dependencies that declare a Node newer than ${pkg.engines.node} (EBADENGINE)`, () => {
    const newer = Object.entries(lock.packages)
      .filter(([name, entry]) => name !== '' && !Array.isArray(entry.engines) && entry.engines?.node !== undefined && !satisfies(floor, entry.engines.node))
      .map(([name, entry]) => `${name.replace(/^node_modules\//, '')}${entry.dev ? ' (dev)' : ''}`);
    // Both run under the oldest Node: the package test runs the installed gateway under it, and the
    // forwarding-designs bench (the only user of http-proxy-3) is not part of the package.
    expect(newer.sort()).toEqual(['@biscuit-auth/biscuit-wasm', 'http-proxy-3 (dev)']);
    const install = readFileSync(join(repoRoot, 'docs/admin/install.md'), 'utf8');
    const development = readFileSync(join(repoRoot, 'docs/development.md'), 'utf8');
    expect(install).toContain('`@biscuit-auth/biscuit-wasm`');
    expect(development).toContain('EBADENGINE');
  });
});
