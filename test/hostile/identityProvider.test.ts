// The site's identity provider as a faulty peer of the issuer: frozen (SIGSTOP), killed, or resetting every
// connection in the TLS handshake. Each time the login is refused 503 with its record, in bounded time, the
// gateway lives and keeps serving tokens it issued before, and logins work again once the provider is back.
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curl } from '../support/gatewayHarness.ts';
import { deviceLogin, postLogin, startIssuedNotebook, type IssuedNotebook, type IssuerGateway } from '../support/issuerGateway.ts';
import { testAccounts } from '../support/oidcProvider.ts';
import type { TestAccount } from '../support/oidcProviderAccounts.ts';
import type { TestClientCertificate } from '../support/pki.ts';

let site: IssuedNotebook;
let gw: IssuerGateway;
let aliceCert: TestClientCertificate;
let issuedBefore: string;
const [alice] = testAccounts as [TestAccount, ...TestAccount[]];

beforeAll(async () => {
  // The issuer waits 3 s for the provider (issuer.provider.timeoutSeconds), well inside curl's 10 s.
  site = await startIssuedNotebook({ providerTimeoutSeconds: 3 });
  ({ gw, aliceCert } = site);
  // A login while the provider is well: discovery done, a token to use while it is not.
  const answer = await deviceLogin(gw, aliceCert, alice);
  expect(answer.status).toBe(200);
  issuedBefore = (answer.json as { token: string }).token;
}, 60_000);

afterAll(async () => {
  gw?.idp.proc.kill('SIGCONT');
  await site?.stop();
});

/** A device start while the provider is faulty: refused 503 with its record, in bounded time; the gateway still serves. */
async function refusedWhileFaulty(what: string): Promise<void> {
  const refusedBefore = gw.h.audit().filter((r) => r.path === '/.well-known/gatehouse/login/device' && r.status === 503).length;
  const started = performance.now();
  const answer = await postLogin(gw.h, aliceCert, '/device', {});
  const tookMs = performance.now() - started;
  expect(answer.status, `${what}: ${answer.body}`).toBe(503);
  expect(answer.json).toMatchObject({ code: 'GH_ISSUE_PROVIDER_UNAVAILABLE' });
  // Bounded by the issuer's timeout to the provider (3 s here), not openid-client's 30 s.
  expect(tookMs).toBeLessThan(9_000);
  await gw.h.waitForAudit(() => gw.h.audit().filter((r) => r.path === '/.well-known/gatehouse/login/device' && r.status === 503).length > refusedBefore);
  const record = gw.h.audit().filter((r) => r.path === '/.well-known/gatehouse/login/device' && r.status === 503).at(-1) ?? expect.unreachable('no record');
  expect(record.reason).toMatch(/^(device authorization at the provider failed|the identity provider cannot be reached)/);
  // The gateway lives, and a token it issued before still works: the provider is not on the request path.
  expect((await curl(gw.h, '/~alice/notebook/', { client: aliceCert, token: issuedBefore })).status).toBe(200);
}

describe('the identity provider as a faulty peer', () => {
  it('frozen (SIGSTOP): the login is refused 503 within the timeout, and works again after SIGCONT', async () => {
    gw.idp.proc.kill('SIGSTOP');
    try {
      await refusedWhileFaulty('frozen');
    } finally {
      gw.idp.proc.kill('SIGCONT');
    }
    expect((await deviceLogin(gw, aliceCert, alice)).status).toBe(200);
  }, 60_000);

  it('resetting every connection in the TLS handshake, then gone: refused 503 each time, the gateway lives', async () => {
    const { port, proc } = gw.idp;
    // Killed, not stopped: the file's end stops the provider (and its client) once.
    await new Promise<void>((resolve) => (proc.exitCode !== null ? resolve() : (proc.once('exit', () => resolve()), proc.kill('SIGKILL'))));
    // Something answers on the provider's port and resets each connection as soon as the ClientHello arrives.
    const sockets = new Set<Socket>();
    const resetter: Server = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.once('data', () => socket.resetAndDestroy());
    });
    await new Promise<void>((resolve) => resetter.listen(port, '127.0.0.1', resolve));
    try {
      await refusedWhileFaulty('reset in the handshake');
    } finally {
      await new Promise<void>((resolve) => resetter.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
    }
    // Nothing listening at all.
    await refusedWhileFaulty('gone');
  }, 90_000);
});
