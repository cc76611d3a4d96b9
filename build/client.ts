// `npm run build:client`: the laptop client as release artifacts in dist/client/: gatehouse-client.mjs (one
// self-contained ES module for the user's Node) and gatehouse-client-linux-x64 (a Node single-executable application).
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import { buildClientBundle, clientBundleFile, clientDefine, clientEntry, clientNodeFlags } from './clientBundle.ts';

const root = resolve(import.meta.dirname, '..');
const out = join(root, 'dist', 'client');
const bundle = clientBundleFile;
const binary = join(out, 'gatehouse-client-linux-x64');

function run(cmd: string, args: string[]): void {
  const result = spawnSync(cmd, args, { stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${result.status ?? result.signal})`);
}

/** postject's API (CommonJS, untyped): injects `data` as resource `name` into the executable `file`. */
const postject = createRequire(import.meta.url)('postject') as { inject(file: string, name: string, data: Buffer, options: { sentinelFuse: string }): Promise<void> };

/**
 * LIEF, inside postject, warns once per note section it rewrites when it adds the blob's note to Node's ELF
 * binary ("Can't find string offset for section name '.note.100'", lief-project/LIEF#816, nodejs/postject#83):
 * the binary is sound (the client tests run it). Those lines alone are dropped; any other warning is shown.
 */
async function injectQuietly(file: string, name: string, data: Buffer, sentinelFuse: string): Promise<void> {
  const warn = console.warn;
  const harmless = /^(?:warning: )?Can't find string offset for section name '\.note(?:\.\d+)?'$/;
  console.warn = (...args: unknown[]) => {
    if (!(args.length === 1 && typeof args[0] === 'string' && harmless.test(args[0]))) warn(...args);
  };
  try {
    await postject.inject(file, name, data, { sentinelFuse });
  } finally {
    console.warn = warn;
  }
}

rmSync(binary, { force: true });
mkdirSync(out, { recursive: true });

// 1. The bundle.
const inputs = await buildClientBundle(bundle);
console.log(`${bundle}: ${(statSync(bundle).size / 1024).toFixed(0)} KiB from ${inputs.length} modules`);

// 2. The single binary: a copy of this Node (the pinned one) with the client injected (Node's SEA, which
// runs one CommonJS script: the same entry bundled as CommonJS), started with the bundle's Node flags.
const seaDir = mkdtempSync(join(tmpdir(), 'gatehouse-sea-'));
const seaMain = join(seaDir, 'gatehouse-client.cjs');
await build({
  entryPoints: [clientEntry],
  outfile: seaMain,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node24',
  minify: true,
  external: ['bufferutil', 'utf-8-validate'],
  define: clientDefine,
});
writeFileSync(join(seaDir, 'sea-config.json'), JSON.stringify({ main: seaMain, output: join(seaDir, 'sea-prep.blob'), disableExperimentalSEAWarning: true, useCodeCache: false, execArgv: clientNodeFlags }));
copyFileSync(process.execPath, binary);
run(process.execPath, ['--experimental-sea-config', join(seaDir, 'sea-config.json')]);
await injectQuietly(binary, 'NODE_SEA_BLOB', readFileSync(join(seaDir, 'sea-prep.blob')), 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2');
chmodSync(binary, 0o755);
rmSync(seaDir, { recursive: true, force: true });
console.log(`${binary}: ${(statSync(binary).size / 1048576).toFixed(0)} MiB`);
