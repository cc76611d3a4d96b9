// The version `gatehouse --version` prints: package.json's, read beside the running code (a checkout or
// the installed package), or the one the client bundle was built with (it carries no package.json).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Set by the client bundle's build (esbuild `define`); undefined when running from sources or dist/lib. */
declare const GATEHOUSE_BUNDLED_VERSION: string | undefined;

function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'gatehouse' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // no package.json here (or not ours): look one level up
    }
    const parent = dirname(dir);
    if (parent === dir) return 'unknown';
    dir = parent;
  }
}

export function gatehouseVersion(): string {
  return typeof GATEHOUSE_BUNDLED_VERSION === 'string' ? GATEHOUSE_BUNDLED_VERSION : packageVersion();
}
