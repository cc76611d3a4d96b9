// Real Jupyter (Debian's jupyter-notebook) on a UNIX socket in a 0700 directory, published by
// `gatehouse publish`: list kernels, start one, and run 1+1 over the kernel's WebSocket through the gateway.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { curl, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { cleanEnv, gatewayFlags, writeToken } from './support/tunnelClient.ts';
import { publishedRoute, publishTop, startPublisher, type PublisherProcess } from './support/publishPeers.ts';

const hasJupyter = spawnSync('jupyter-notebook', ['--version'], { stdio: 'ignore' }).status === 0;

let h: Harness;
let alice: TestClientCertificate;
let aliceToken: string;
let jupyter: ChildProcess | undefined;
let publisher: PublisherProcess | undefined;

/** Sends `1+1` to the kernel over its channels WebSocket and resolves with the text/plain result. */
function runOnePlusOne(kernelId: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://localhost:${h.port}/~alice/jupyter/api/kernels/${kernelId}/channels`, {
      ca: h.pki.caCert,
      cert: alice.cert,
      key: alice.key,
      headers: { authorization: `Bearer ${aliceToken}` },
    });
    const msgId = randomUUID();
    const timer = setTimeout(() => reject(new Error('no execute_result within 30 s')), 30_000);
    ws.on('open', () => {
      ws.send(
        JSON.stringify({
          header: { msg_id: msgId, username: 'test', session: randomUUID(), msg_type: 'execute_request', version: '5.3', date: new Date().toISOString() },
          parent_header: {},
          metadata: {},
          content: { code: '1+1', silent: false, store_history: false, user_expressions: {}, allow_stdin: false, stop_on_error: true },
          channel: 'shell',
          buffers: [],
        }),
      );
    });
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString()) as { msg_type?: string; parent_header?: { msg_id?: string }; content?: { data?: Record<string, string> } };
      if (msg.msg_type === 'execute_result' && msg.parent_header?.msg_id === msgId) {
        clearTimeout(timer);
        resolve(msg.content?.data?.['text/plain'] ?? '');
        ws.close();
      }
    });
    ws.on('unexpected-response', (_req, res) => reject(new Error(`kernel WebSocket refused: ${res.statusCode}`)));
    ws.on('error', reject);
  });
}

describe.skipIf(!hasJupyter)('Jupyter published from a UNIX socket (skipped where jupyter-notebook is missing)', () => {
  beforeAll(async () => {
    h = await startHarness({ routes: publishedRoute, extraTop: publishTop });
    alice = await h.pki.client('alice');
    const home = mkdtempSync(join(tmpdir(), 'gatehouse-jupyter-'));
    const sockets = join(home, '.gatehouse');
    mkdirSync(sockets, { mode: 0o700 });
    const socket = join(sockets, 'jupyter.sock');
    // Everything Jupyter writes stays in the temp home.
    const env = { ...cleanEnv(home), JUPYTER_CONFIG_DIR: join(home, '.jupyter'), JUPYTER_DATA_DIR: join(home, '.local'), JUPYTER_RUNTIME_DIR: join(home, 'runtime'), IPYTHONDIR: join(home, '.ipython') };
    // Jupyter's own token and XSRF check are off: the socket is in a private directory, and the gateway authenticates.
    jupyter = spawn('jupyter-notebook', ['--no-browser', `--sock=${socket}`, '--sock-mode=0600', '--NotebookApp.token=', '--NotebookApp.password=', '--NotebookApp.disable_check_xsrf=True', `--notebook-dir=${home}`, ...(process.getuid?.() === 0 ? ['--allow-root'] : [])], { env, stdio: 'ignore' });
    const until = Date.now() + 30_000;
    while (!existsSync(socket)) {
      if (Date.now() > until || jupyter.exitCode !== null) throw new Error('jupyter-notebook did not create its socket');
      await new Promise((r) => setTimeout(r, 100));
    }
    const tokenFile = writeToken(h, join(home, 'token'), 'alice');
    aliceToken = readFileSync(tokenFile, 'utf8').trim();
    publisher = startPublisher([...gatewayFlags(h, alice, tokenFile).slice(0, -2), `jupyter=unix:${socket}`], cleanEnv(home));
    await publisher.waitForStderr(/published as alice/);
  }, 60_000);

  afterAll(async () => {
    await publisher?.stop('SIGKILL');
    jupyter?.kill('SIGTERM');
    await h?.stop();
  });

  it('lists kernels, starts one and runs 1+1 over the kernel WebSocket', async () => {
    const listed = await curl(h, '/~alice/jupyter/api/kernels', { client: alice, token: aliceToken });
    expect(listed.status).toBe(200);
    expect(Array.isArray(JSON.parse(listed.body))).toBe(true);
    const started = await curl(h, '/~alice/jupyter/api/kernels', { client: alice, token: aliceToken, args: ['-X', 'POST', '-H', 'content-type: application/json', '--data', '{"name":"python3"}'] });
    expect(started.status).toBe(201);
    const kernel = JSON.parse(started.body) as { id: string; name: string };
    expect(kernel.name).toBe('python3');
    expect(await runOnePlusOne(kernel.id)).toBe('2');
    const closed = await h.waitForAudit((r) => r.event === 'tunnel.close' && r.protocol === 'websocket' && r.upstream === 'published:alice/jupyter');
    expect(closed.publisher).toBeDefined();
  }, 60_000);
});
