// Drives the test IdP's own pages in headless Chromium (playwright-core, the system's build), as a user does
// with the page `gatehouse login` prints: confirm the device code, sign in, allow, until the IdP says done.
import { createHash, createPublicKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { CHROMIUM, chromiumArgs } from './browserPeers.ts';

export { CHROMIUM };
export const chromiumMissing = !existsSync(CHROMIUM);

/** base64 of the SHA-256 of a certificate's public key (SPKI): what Chromium pins with --ignore-certificate-errors-spki-list. */
function spkiPin(certPath: string): string {
  const der = createPublicKey(readFileSync(certPath)).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('base64');
}

/**
 * Starts Chromium trusting exactly the IdP's certificate (by its public key, which the test CA signed; the
 * system's store is not touched, and every other certificate error still stops the page).
 */
export function launchIdpBrowser(idpCertPath: string): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...chromiumArgs, `--ignore-certificate-errors-spki-list=${spkiPin(idpCertPath)}`] });
}

export interface Approval {
  /** The title of each page the user went through. */
  pages: string[];
  /** The text of the last page (the IdP's "done" page for the device flow). */
  finalText: string;
}

/** The button a user presses to go on: the first submit that is not an abort, cancel or deny. */
async function goOn(page: Page): Promise<boolean> {
  const buttons = page.locator('button[type="submit"], input[type="submit"], button:not([type])');
  const count = await buttons.count();
  for (let i = 0; i < count; i++) {
    const button = buttons.nth(i);
    const words = `${(await button.textContent()) ?? ''} ${(await button.getAttribute('value')) ?? ''} ${(await button.getAttribute('name')) ?? ''}`;
    if (/abort|cancel|deny/i.test(words)) continue;
    await Promise.all([page.waitForLoadState('load'), page.waitForNavigation({ timeout: 15_000 }).catch(() => undefined), button.click()]);
    return true;
  }
  return false;
}

/**
 * Opens `url` (the device flow's verification_uri_complete) and goes through the IdP's pages as `user`:
 * confirm the code, sign in, allow; stops on the first page with nothing to press (at most 10 pages).
 */
export async function approveInBrowser(browser: Browser, url: string, user: { username: string; password: string }): Promise<Approval> {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(url, { waitUntil: 'load', timeout: 15_000 });
    const pages: string[] = [];
    for (let step = 0; step < 10; step++) {
      pages.push(await page.title());
      const name = page.locator('input[name="username"]');
      if ((await name.count()) > 0) {
        await name.fill(user.username);
        await page.locator('input[name="password"]').fill(user.password);
      }
      if (!(await goOn(page))) return { pages, finalText: (await page.textContent('body')) ?? '' };
    }
    throw new Error(`the IdP did not finish in 10 pages: ${pages.join(' -> ')}`);
  } finally {
    await context.close();
  }
}
