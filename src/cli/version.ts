// The version `gatehouse --version` prints: package.json's, found above the started script (a checkout or
// the installed package), or the one the client bundle was built with (it carries no package.json).
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Set by the client bundle's build (esbuild `define`); undefined when running from sources or dist/lib. */
declare const GATEHOUSE_BUNDLED_VERSION: string | undefined;

/** From the script that was started (bin/gatehouse.js, or dist/lib/cli/gatehouse.js behind the installed command's link) upwards. */
function packageVersion(): string {
  let dir: string;
  try {
    dir = dirname(realpathSync(process.argv[1] ?? '.'));
  } catch {
    return 'unknown';
  }
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
