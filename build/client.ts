// `npm run build:client`: the laptop client as release artifacts in dist/client/: gatehouse-client.mjs (one
// self-contained ES module for the user's Node) and gatehouse-client-linux-x64 (a Node single-executable application).
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

const root = resolve(import.meta.dirname, '..');
const out = join(root, 'dist', 'client');
const bundle = join(out, 'gatehouse-client.mjs');
const binary = join(out, 'gatehouse-client-linux-x64');
/** Modules the client must never carry: the gateway's authorization engine and the development CA. */
const forbidden = /biscuit|@peculiar|reflect-metadata|pkijs|asn1|http-proxy|pino|prom-client/;

function run(cmd: string, args: string[]): void {
  const result = spawnSync(cmd, args, { stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${result.status ?? result.signal})`);
}

for (const artifact of [bundle, binary]) rmSync(artifact, { force: true });
mkdirSync(out, { recursive: true });

// 1. The bundle. ws's optional native helpers (bufferutil, utf-8-validate) are left out: ws falls back to JS.
const result = await build({
  entryPoints: [join(root, 'src', 'cli', 'client.ts')],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minify: true,
  legalComments: 'linked',
  metafile: true,
  external: ['bufferutil', 'utf-8-validate'],
  banner: {
    // ws and other CommonJS dependencies call require(): give the ES module one.
    js: "#!/usr/bin/env node\nimport { createRequire as __gatehouseRequire } from 'node:module'; const require = __gatehouseRequire(import.meta.url);",
  },
});
const inputs = Object.keys(result.metafile.inputs);
const leaked = inputs.filter((file) => forbidden.test(file));
if (leaked.length > 0) throw new Error(`the client bundle must not contain ${leaked.join(', ')}`);
chmodSync(bundle, 0o755);
console.log(`${bundle}: ${(statSync(bundle).size / 1024).toFixed(0)} KiB from ${inputs.length} modules`);

// 2. The single binary: a copy of this Node (the pinned one) with the client injected (Node's SEA, which
// runs one CommonJS script: the same entry bundled as CommonJS).
const seaDir = mkdtempSync(join(tmpdir(), 'gatehouse-sea-'));
const seaMain = join(seaDir, 'gatehouse-client.cjs');
await build({
  entryPoints: [join(root, 'src', 'cli', 'client.ts')],
  outfile: seaMain,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node24',
  minify: true,
  external: ['bufferutil', 'utf-8-validate'],
});
writeFileSync(join(seaDir, 'sea-config.json'), JSON.stringify({ main: seaMain, output: join(seaDir, 'sea-prep.blob'), disableExperimentalSEAWarning: true, useCodeCache: false }));
copyFileSync(process.execPath, binary);
run(process.execPath, ['--experimental-sea-config', join(seaDir, 'sea-config.json')]);
run(process.execPath, [join(root, 'node_modules', 'postject', 'dist', 'cli.js'), binary, 'NODE_SEA_BLOB', join(seaDir, 'sea-prep.blob'), '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2']);
chmodSync(binary, 0o755);
rmSync(seaDir, { recursive: true, force: true });
console.log(`${binary}: ${(statSync(binary).size / 1048576).toFixed(0)} MiB`);
