// The laptop client as one self-contained ES module (dist/client/gatehouse-client.mjs): built by
// `npm run build:client` for release and by the benchmarks, which measure the client in this form.
import { chmodSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { build } from 'esbuild';

const root = resolve(import.meta.dirname, '..');
export const clientEntry = join(root, 'src', 'cli', 'client.ts');
export const clientBundleFile = join(root, 'dist', 'client', 'gatehouse-client.mjs');

/** Modules the client must never carry: the gateway's authorization engine and the development CA. */
const forbidden = /biscuit|@peculiar|reflect-metadata|pkijs|asn1|http-proxy|pino|prom-client|undici/;

/**
 * Node flags of the client, in the bundle's first line. A tunnel's bytes live outside V8's heap (Buffers),
 * so a small young generation costs no extra collections and keeps the resident size near the idle one.
 */
export const clientNodeFlags = ['--max-semi-space-size=1'];

/** Constants compiled into the client: the package version `gatehouse --version` prints (a bundle has no package.json). */
export const clientDefine: Record<string, string> = {
  GATEHOUSE_BUNDLED_VERSION: JSON.stringify((JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version),
};

/** Builds the bundle; returns the source files it was built from. ws's optional native add-ons are left out: ws falls back to JS. */
export async function buildClientBundle(outfile = clientBundleFile): Promise<string[]> {
  rmSync(outfile, { force: true });
  mkdirSync(dirname(outfile), { recursive: true });
  const result = await build({
    entryPoints: [clientEntry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    minify: true,
    legalComments: 'linked',
    metafile: true,
    logLevel: 'error',
    external: ['bufferutil', 'utf-8-validate'],
    define: clientDefine,
    banner: {
      // ws and other CommonJS dependencies call require(): give the ES module one.
      js: `#!/usr/bin/env -S node ${clientNodeFlags.join(' ')}\nimport { createRequire as __gatehouseRequire } from 'node:module'; const require = __gatehouseRequire(import.meta.url);`,
    },
  });
  const inputs = Object.keys(result.metafile.inputs);
  const leaked = inputs.filter((file) => forbidden.test(file));
  if (leaked.length > 0) throw new Error(`the client bundle must not contain ${leaked.join(', ')}`);
  chmodSync(outfile, 0o755);
  return inputs;
}
