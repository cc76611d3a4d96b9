// `npm run build:client`: the laptop client as release artifacts in dist/client/: gatehouse-client.mjs (one
// self-contained ES module for the user's Node) and gatehouse-client-linux-x64 (a Node single-executable application).
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
run(process.execPath, [join(root, 'node_modules', 'postject', 'dist', 'cli.js'), binary, 'NODE_SEA_BLOB', join(seaDir, 'sea-prep.blob'), '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2']);
chmodSync(binary, 0o755);
rmSync(seaDir, { recursive: true, force: true });
console.log(`${binary}: ${(statSync(binary).size / 1048576).toFixed(0)} MiB`);
