// What the browser tests run besides the gateway: headless Chromium's launch arguments and a Jupyter
// notebook server for alice on a UNIX socket (the notebook `check.ipynb` holds one cell, `1+1`).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const JUPYTER = '/usr/bin/jupyter-notebook';

/** Launch arguments for a quiet, self-contained headless Chromium (no network of its own, no GPU). */
export const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A Jupyter notebook server for alice on a UNIX socket, under the route's prefix, its own auth off (the gateway is the door). */
export async function startJupyter(dir: string, socket: string): Promise<ChildProcess> {
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
    // Reached under its service's own host name (not localhost), which Jupyter refuses unless told.
    '--NotebookApp.allow_remote_access=True',
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


/** Runs the open notebook's first cell once its kernel is idle; the cell's output text (`check.ipynb`: `2`). */
export async function runFirstCell(page: Page): Promise<string | undefined> {
  await page.waitForSelector('#kernel_indicator_icon.kernel_idle_icon', { timeout: 60_000 });
  await page.click('.cell .CodeMirror');
  await page.keyboard.press('Shift+Enter');
  const output = page.locator('.output_area .output_subarea').first();
  await output.waitFor({ timeout: 60_000 });
  return (await output.textContent())?.trim();
}
