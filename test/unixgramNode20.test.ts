// The datagram UNIX socket addon under the oldest Node `engines` allows (the system's Node 20): loaded as the
// gateway and the tunnel load it, a flow's receiver and senders (boundDatagramSocket.ts) with a socat datagram
// echo, a burst larger than the echo's socket holds included.
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
  // Node 20 does not strip types: the modules transpiled as the build would (their imports of each other are types only).
  for (const name of ['unixgramModule', 'boundDatagramSocket']) {
    const source = readFileSync(join(repoRoot, 'src', 'upstream', `${name}.ts`), 'utf8');
    writeFileSync(join(dir, `${name}.mjs`), ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true } }).outputText);
  }
  echo = await startUnixgramEcho(join(dir, 'echo.sock'));
  const script = `
    import { unixDatagramModule } from ${JSON.stringify(join(dir, 'unixgramModule.mjs'))};
    import { bindReceiverWithSenders } from ${JSON.stringify(join(dir, 'boundDatagramSocket.mjs'))};
    const addon = unixDatagramModule();
    if (!addon.ok) { console.log(JSON.stringify(addon)); process.exit(1); }
    const socket = bindReceiverWithSenders({ create: addon.create, path: ${JSON.stringify(join(dir, 'flow.sock'))}, mode: 0o622, bufferBytes: 1 << 20 });
    const answers = new Map();
    const queue = Array.from({ length: 30 }, (_, i) => Buffer.from('d-' + i));
    const flush = () => {
      while (queue.length > 0) {
        let dropped;
        socket.send(queue[0], ${JSON.stringify(echo.path)}, (reason) => (dropped = reason));
        if (dropped === "the receiver's queue is full") return void setTimeout(flush, 5);
        if (dropped) return console.log(JSON.stringify({ ok: false, reason: dropped }));
        queue.shift();
      }
    };
    socket.onDatagram((payload, from) => {
      answers.set(String(payload), from);
      if (answers.size === 30) { socket.close(); console.log(JSON.stringify({ ok: true, version: process.version, answers: answers.size, from: [...new Set(answers.values())] })); }
    });
    flush();
    setTimeout(() => { console.log(JSON.stringify({ ok: false, reason: 'not all answered', answers: answers.size })); process.exit(1); }, 8000).unref();
  `;
  // The gateway resolves the addon from its own node_modules; the transpiled copy lives elsewhere, so NODE_PATH says where.
  const run = spawnSync(systemNode as string, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, NODE_PATH: join(repoRoot, 'node_modules') }, timeout: 15_000 });
  const result = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as { ok: boolean; version?: string };
  expect(result, run.stderr).toEqual({ ok: true, version: systemVersion, answers: 30, from: [echo.path] });
}, 30_000);
