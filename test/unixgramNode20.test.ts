// The datagram UNIX socket addon under the oldest Node `engines` allows (the system's Node 20): the module as
// the gateway and the tunnel load it, talking to a socat datagram echo, answers taken by their sender's path.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import ts from 'typescript';
import { afterAll, expect, it } from 'vitest';
import { which } from './support/localServices.ts';
import { startUnixgramEcho, type UnixgramEcho } from './support/unixgramPeers.ts';

const repoRoot = resolve(import.meta.dirname, '..');
/** The system's Node: the first on PATH outside node_modules (where the pinned Node 24 lives). */
const systemNode = (process.env.PATH ?? '').split(delimiter).filter((dir) => !dir.includes('node_modules')).map((dir) => join(dir, 'node')).find((file) => spawnSync(file, ['--version']).status === 0);
const systemVersion = systemNode ? spawnSync(systemNode, ['--version'], { encoding: 'utf8' }).stdout.trim() : '';
const skip = !systemNode ? 'no system Node' : !systemVersion.startsWith('v20.') ? `system Node is ${systemVersion}, not 20` : !which('socat') ? 'socat not installed' : '';

let dir: string | undefined;
let echo: UnixgramEcho | undefined;
afterAll(async () => {
  await echo?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it.skipIf(skip !== '')(`loads node-unix-socket and carries datagrams both ways under Node 20 (${skip || systemVersion})`, async () => {
  dir = mkdtempSync(join(tmpdir(), 'gh-ug20-'));
  // Node 20 does not strip types: the loader module, transpiled as the build would.
  const source = readFileSync(join(repoRoot, 'src', 'upstream', 'unixgramModule.ts'), 'utf8');
  writeFileSync(join(dir, 'unixgramModule.mjs'), ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText);
  echo = await startUnixgramEcho(join(dir, 'echo.sock'));
  const script = `
    import { unixDatagramModule } from ${JSON.stringify(join(dir, 'unixgramModule.mjs'))};
    const addon = unixDatagramModule();
    if (!addon.ok) { console.log(JSON.stringify(addon)); process.exit(1); }
    const socket = addon.create();
    socket.bind(${JSON.stringify(join(dir, 'flow.sock'))});
    const answers = [];
    socket.on('data', (payload, from) => {
      answers.push({ payload: String(payload), from });
      if (answers.length === 2) { socket.close(); console.log(JSON.stringify({ ok: true, version: process.version, answers })); }
    });
    for (const text of ['one', 'two']) socket.sendTo(Buffer.from(text), 0, text.length, ${JSON.stringify(echo.path)}, (err) => err && console.log(JSON.stringify({ ok: false, reason: err.message })));
    setTimeout(() => { console.log(JSON.stringify({ ok: false, reason: 'no answers', answers })); process.exit(1); }, 5000).unref();
  `;
  // The gateway resolves the addon from its own node_modules; the transpiled copy lives elsewhere, so NODE_PATH says where.
  const run = spawnSync(systemNode as string, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, NODE_PATH: join(repoRoot, 'node_modules') }, timeout: 15_000 });
  const result = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as { ok: boolean; version?: string; answers?: unknown };
  expect(result, run.stderr).toMatchObject({ ok: true, version: systemVersion });
  expect(result.answers).toEqual([
    { payload: 'one', from: echo.path },
    { payload: 'two', from: echo.path },
  ]);
}, 30_000);
