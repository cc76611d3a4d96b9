// A real browser through a real gateway: headless Chromium (the system's build, driven by playwright-core,
// presenting a client certificate) signs in with a token, sees the portal, opens a Jupyter notebook
// server behind a UNIX-socket route and runs a cell, so the kernel's WebSocket crosses the gateway.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';

const CHROMIUM = '/usr/bin/chromium';
const JUPYTER = '/usr/bin/jupyter-notebook';
const missing = [existsSync(CHROMIUM) ? '' : 'chromium', existsSync(JUPYTER) ? '' : 'jupyter-notebook'].filter(Boolean);
const suite = missing.length === 0 ? describe : describe.skip;
const title = missing.length === 0 ? 'Jupyter in a real browser through the gateway' : `Jupyter in a real browser (skipped: ${missing.join(' and ')} not installed)`;

/** Launch arguments for a quiet, self-contained headless Chromium (no network of its own, no GPU). */
export const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const routes = `  - name: jupyter
    path: /~{user}/jupyter/
    protocols: [http, websocket]
    stripPrefix: false
    upstream: unix:run/{user}-jupyter.sock
    policy: |
      allow if user($u), param("user", $u);
`;

let h: Harness;
let alice: TestClientCertificate;
let jupyter: ChildProcess | undefined;
let browser: Browser | undefined;
let shots: string;

/** A Jupyter notebook server for alice on a UNIX socket, under the route's prefix, its own auth off (the gateway is the door). */
async function startJupyter(dir: string, socket: string): Promise<ChildProcess> {
  const home = join(dir, 'jupyter-home');
  const notebooks = join(dir, 'notebooks');
  mkdirSync(home, { recursive: true });
  mkdirSync(notebooks, { recursive: true });
  const cell = { cell_type: 'code', execution_count: null, metadata: {}, outputs: [], source: ['1+1'] };
  writeFileSync(join(notebooks, 'check.ipynb'), JSON.stringify({ cells: [cell], metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } }, nbformat: 4, nbformat_minor: 5 }));
  const env = { ...process.env, HOME: home, JUPYTER_CONFIG_DIR: join(home, 'config'), JUPYTER_DATA_DIR: join(home, 'data'), JUPYTER_RUNTIME_DIR: join(home, 'runtime'), IPYTHONDIR: join(home, 'ipython') };
  const proc = spawn(JUPYTER, [
    '--no-browser', '--allow-root', `--sock=${socket}`, '--sock-mode=0600', `--notebook-dir=${notebooks}`,
    '--NotebookApp.base_url=/~alice/jupyter/', '--NotebookApp.token=', '--NotebookApp.password=',
  ], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  const until = Date.now() + 60_000;
  while (!existsSync(socket)) {
    if (proc.exitCode !== null || Date.now() > until) throw new Error(`jupyter-notebook did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return proc;
}

suite(title, () => {
  beforeAll(async () => {
    h = await startHarness({ routes });
    alice = await h.pki.client('alice');
    mkdirSync(join(h.dir, 'run'), { recursive: true });
    jupyter = await startJupyter(h.dir, join(h.dir, 'run', 'alice-jupyter.sock'));
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs });
    shots = join(h.dir, 'screenshots');
    mkdirSync(shots, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    jupyter?.kill('SIGTERM');
    await h?.stop();
  });

  it('signs in with a token, shows the user, opens a notebook and runs 1+1 through the kernel WebSocket', async () => {
    if (!browser) throw new Error('no browser');
    // playwright-core presents the certificate from a local relay that also terminates the browser's TLS:
    // the gateway's certificate is checked by that relay, hence ignoreHTTPSErrors here.
    const context = await browser.newContext({ clientCertificates: [{ origin: h.base, certPath: alice.certPath, keyPath: alice.keyPath }], ignoreHTTPSErrors: true });
    const page = await context.newPage();
    try {
      await page.goto(`${h.base}/.well-known/gatehouse/`);
      expect(await page.textContent('#client-cn')).toBe('alice');
      await page.screenshot({ path: join(shots, '1-sign-in.png') });

      const token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
      await page.fill('#token', token);
      await Promise.all([page.waitForURL(`${h.base}/.well-known/gatehouse/`), page.click('#sign-in')]);
      expect(await page.$('#user'), 'the portal after signing in').not.toBeNull();
      expect(await page.textContent('#user')).toBe('alice');
      await page.screenshot({ path: join(shots, '2-portal.png') });
      const cookies = await context.cookies();
      expect(cookies.find((c) => c.name === '__Host-gatehouse-session')).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict', path: '/' });

      await page.goto(`${h.base}/~alice/jupyter/notebooks/check.ipynb`);
      await page.waitForSelector('#kernel_indicator_icon.kernel_idle_icon', { timeout: 60_000 });
      await page.click('.cell .CodeMirror');
      await page.keyboard.press('Shift+Enter');
      const output = page.locator('.output_area .output_subarea').first();
      await output.waitFor({ timeout: 60_000 });
      expect((await output.textContent())?.trim()).toBe('2');
      await page.screenshot({ path: join(shots, '3-notebook.png') });
    } finally {
      await context.close();
    }
    // The kernel channel is a WebSocket authorized by the session cookie, from the route's own origin.
    const kernel = await h.waitForAudit((r) => r.event === 'tunnel.open' && r.route === 'jupyter');
    expect(kernel).toMatchObject({ protocol: 'websocket', auth: 'session', decision: 'allow', token: { user: 'alice' } });
    expect(kernel.path).toMatch(/^\/~alice\/jupyter\/api\/kernels\/[0-9a-f-]+\/channels$/);
    process.stderr.write(`screenshots: ${shots}\n`);
  }, 180_000);
});
