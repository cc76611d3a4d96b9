// A real browser through a real gateway: headless Chromium (the system's build, driven by playwright-core,
// presenting a client certificate) signs in with a token, sees the portal, opens a Jupyter notebook
// server behind a UNIX-socket route and runs a cell, so the kernel's WebSocket crosses the gateway.
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect as connectTcp, createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { CHROMIUM, chromiumArgs, JUPYTER, runFirstCell, startJupyter } from './support/browserPeers.ts';
import { inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';

const missing = [existsSync(CHROMIUM) ? '' : 'chromium', existsSync(JUPYTER) ? '' : 'jupyter-notebook'].filter(Boolean);
const suite = missing.length === 0 ? describe : describe.skip;
const title = missing.length === 0 ? 'Jupyter in a real browser through the gateway' : `Jupyter in a real browser (skipped: ${missing.join(' and ')} not installed)`;

const routes = `  - name: jupyter
    path: /~{user}/jupyter/
    protocols: [http, websocket]
    stripPrefix: false
    upstream: unix:run/{user}-jupyter.sock
    policy: |
      allow if user($u), param("user", $u);
  - name: services
    host: "{service}--{user}.apps.test"
    protocols: [http, websocket]
    stripPrefix: false
    upstream: unix:run/{user}-{service}.sock
    policy: |
      allow if user($u), param("user", $u);
      allow if user($u), param("service", "app");
`;

let h: Harness;
let alice: TestClientCertificate;
let jupyter: ChildProcess | undefined;
let browser: Browser | undefined;
let shots: string;
let resolver: TcpServer | undefined;
let bobApp: Server | undefined;
const bobSaw: IncomingHttpHeaders[] = [];

/**
 * Stands in for wildcard DNS: an HTTP CONNECT proxy that sends every host name to the gateway's port on
 * 127.0.0.1, so the browser can use *.apps.test names (certificates and TLS stay end to end).
 */
async function startResolver(port: number): Promise<TcpServer> {
  const server = createTcpServer((client) => {
    client.once('data', (head: Buffer) => {
      if (!/^CONNECT [^ ]+ HTTP\/1\.[01]\r\n/.test(head.toString('latin1'))) return void client.destroy();
      const upstream = connectTcp(port, '127.0.0.1', () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        client.pipe(upstream).pipe(client);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return server;
}

/** bob's service: a page of bob's own, the kind that could try to use a visitor's session elsewhere. */
async function startBobApp(socket: string): Promise<Server> {
  rmSync(socket, { force: true });
  const server = createHttpServer((req, res) => {
    bobSaw.push(req.headers);
    res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><title>bob's app</title><h1 id="bob">bob's app for ${req.headers['x-gatehouse-user']}</h1>`);
  });
  await new Promise<void>((resolve) => server.listen(socket, () => resolve()));
  return server;
}

suite(title, () => {
  beforeAll(async () => {
    h = await startHarness({ routes, extraTop: 'browser:\n  portalHost: localhost\n' });
    alice = await h.pki.client('alice');
    mkdirSync(join(h.dir, 'run'), { recursive: true });
    jupyter = await startJupyter(h.dir, join(h.dir, 'run', 'alice-jupyter.sock'));
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: chromiumArgs });
    resolver = await startResolver(h.port);
    bobApp = await startBobApp(join(h.dir, 'run', 'bob-app.sock'));
    shots = join(h.dir, 'screenshots');
    mkdirSync(shots, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    resolver?.close();
    bobApp?.close();
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
      // This gateway runs no issuer: nothing to sign in with but a token.
      expect(await page.$('#sign-in-provider')).toBeNull();
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
      expect(await runFirstCell(page)).toBe('2');
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

  it('signs in to a service on its own origin through the gateway\'s origin with a one-time code; bob\'s page cannot use alice\'s session', async () => {
    if (!browser || !resolver) throw new Error('no browser');
    const port = h.port;
    const origin = (host: string) => `https://${host}:${port}`;
    const alicesService = origin('jupyter--alice.apps.test');
    const bobsService = origin('app--bob.apps.test');
    const certificate = { certPath: alice.certPath, keyPath: alice.keyPath };
    const context = await browser.newContext({
      clientCertificates: [h.base, alicesService, bobsService].map((o) => ({ origin: o, ...certificate })),
      ignoreHTTPSErrors: true,
      proxy: { server: `http://127.0.0.1:${(resolver.address() as AddressInfo).port}` },
    });
    const page = await context.newPage();
    const visited: string[] = [];
    page.on('request', (r) => visited.push(r.url()));
    const token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
    try {
      // Straight to alice's service: sent to sign in on the gateway's own origin, and back with a code.
      await page.goto(`${alicesService}/~alice/jupyter/tree`);
      expect(page.url()).toBe(`${h.base}/.well-known/gatehouse/?next=${encodeURIComponent(`${alicesService}/~alice/jupyter/tree`)}`);
      await page.fill('#token', token);
      await Promise.all([page.waitForURL(`${alicesService}/~alice/jupyter/tree`), page.click('#sign-in')]);
      await page.waitForSelector('#notebook_list', { timeout: 60_000 });
      await page.screenshot({ path: join(shots, '4-service-origin.png') });
      const handoffs = visited.filter((u) => u.includes('/session/handoff?code='));
      expect(handoffs).toHaveLength(1);
      expect(visited.some((u) => u.includes(token.slice(0, 40)))).toBe(false);
      // The code worked once: replaying it is refused.
      const replay = await page.request.get(handoffs[0] as string);
      expect(replay.status()).toBe(403);
      const serviceCookies = await context.cookies(alicesService);
      expect(serviceCookies.find((c) => c.name === '__Host-gatehouse-session')).toMatchObject({ domain: 'jupyter--alice.apps.test', httpOnly: true, sameSite: 'Strict' });
      expect(await context.cookies(bobsService)).toEqual([]);

      // alice opens bob's app (bob shares it): the gateway's origin asks before handing her session over.
      await page.goto(bobsService + '/');
      await Promise.all([page.waitForURL(`${bobsService}/`), page.click('#continue')]);
      expect(await page.textContent('#bob')).toBe("bob's app for alice");
      // What a script of bob's page can do with alice's session at alice's service: nothing.
      const attempt = await page.evaluate(async (target) => {
        // The page's own view of cookies (the test's TypeScript has no DOM types).
        const results: Record<string, string> = { cookie: (globalThis as unknown as { document: { cookie: string } }).document.cookie };
        try {
          await fetch(`${target}/~alice/jupyter/api/contents`, { credentials: 'include' });
          results.read = 'read';
        } catch (error) {
          results.read = String(error);
        }
        await fetch(`${target}/~alice/jupyter/api/kernels`, { method: 'POST', mode: 'no-cors', credentials: 'include', body: '{}' }).catch(() => undefined);
        results.websocket = await new Promise<string>((resolve) => {
          const ws = new WebSocket(`${target.replace('https:', 'wss:')}/~alice/jupyter/api/kernels/any/channels`);
          ws.onopen = () => resolve('open');
          ws.onerror = () => resolve('error');
        });
        return results;
      }, alicesService);
      expect(attempt).toEqual({ cookie: '', read: 'TypeError: Failed to fetch', websocket: 'error' });
      await page.screenshot({ path: join(shots, '5-bob-app.png') });
    } finally {
      await context.close();
    }
    const post = await h.waitForAudit((r) => r.method === 'POST' && (r.target ?? r.path) === '/~alice/jupyter/api/kernels');
    const socket = await h.waitForAudit((r) => r.protocol === 'websocket' && (r.target ?? r.path) === '/~alice/jupyter/api/kernels/any/channels');
    for (const refused of [post, socket]) expect(refused).toMatchObject({ decision: 'deny', status: 403, auth: 'session' });
    expect(post.reason).toContain('app--bob.apps.test');
    expect(h.audit().some((r) => r.event === 'tunnel.open' && r.path === '/~alice/jupyter/api/kernels/any/channels')).toBe(false);
    // bob's service never saw a gateway cookie.
    expect(JSON.stringify(bobSaw)).not.toContain('gatehouse-session');
  }, 180_000);

  it('a `next` a browser could read as another site lands on the service\'s own origin or is refused (no open redirect)', async () => {
    if (!browser || !resolver) throw new Error('no browser');
    const alicesService = `https://jupyter--alice.apps.test:${h.port}`;
    const evil = `https://evil.example:${h.port}`;
    const context = await browser.newContext({
      clientCertificates: [h.base, alicesService, evil].map((o) => ({ origin: o, certPath: alice.certPath, keyPath: alice.keyPath })),
      ignoreHTTPSErrors: true,
      proxy: { server: `http://127.0.0.1:${(resolver.address() as AddressInfo).port}` },
    });
    const page = await context.newPage();
    const visited: string[] = [];
    page.on('request', (r) => visited.push(r.url()));
    try {
      // The landing page on the service's origin once carried a scheme-relative refresh to //evil.example/phish.
      await page.goto(`${h.base}/.well-known/gatehouse/?next=${encodeURIComponent(`${alicesService}//evil.example/phish`)}`);
      await page.fill('#token', mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`));
      await Promise.all([page.waitForURL(`${alicesService}/evil.example/phish`), page.click('#sign-in')]);
      // Another host, on a route without host: (which serves any Host): refused, nothing offered.
      const refused = await page.goto(`${h.base}/.well-known/gatehouse/?next=${encodeURIComponent(`${evil}/~alice/jupyter/`)}`);
      expect(refused?.status()).toBe(400);
    } finally {
      await context.close();
    }
    expect(visited.filter((u) => new URL(u).hostname === 'evil.example')).toEqual([]);
  }, 120_000);
});
