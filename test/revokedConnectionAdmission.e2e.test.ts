// A connection whose certificate a CRL reload revoked is being ended (what runs on its other connections, a publisher
// say, gets a few seconds to close and write its records before every one is dropped): in that grace nothing new is admitted.
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startHarness, type Harness } from './support/gatewayHarness.ts';
import { crlPathOf, enableCrl, installCrl, makeCrl } from './support/clientCrls.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { echoService, publishedRoute, publishTop, startPublisher, type PublisherProcess } from './support/publishPeers.ts';
import { cleanEnv, gatewayFlags, writeToken } from './support/tunnelClient.ts';

let h: Harness;
let frank: TestClientCertificate;
let tokenFile: string;
let home: string;
let echo: Server;
let publisher: PublisherProcess | undefined;

beforeAll(async () => {
  h = await startHarness({ routes: publishedRoute, extraTop: publishTop });
  frank = await h.pki.client('frank');
  home = mkdtempSync(join(tmpdir(), 'gatehouse-revoked-admission-'));
  mkdirSync(join(home, 'private'), { mode: 0o700 });
  echo = await echoService(join(home, 'private', 'echo.sock'));
  tokenFile = writeToken(h, join(home, 'frank.token'), 'frank');
  await enableCrl(h);
}, 60_000);

afterAll(async () => {
  if (publisher) {
    publisher.proc.kill('SIGCONT');
    await publisher.stop('SIGKILL');
  }
  echo?.close();
  await h?.stop();
});

/** A keep-alive HTTPS connection; `ask` sends one request on it and resolves with the status line (or 'closed'). */
async function keepAlive(client: TestClientCertificate, token: string): Promise<{ socket: TLSSocket; ask(): Promise<string> }> {
  const socket = tlsConnect({ host: '127.0.0.1', port: h.port, servername: 'localhost', ca: h.pki.caCert, cert: client.cert, key: client.key });
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('secureConnect', resolve));
  const ask = () =>
    new Promise<string>((resolve) => {
      if (socket.destroyed) return resolve('closed');
      const done = (answer: string) => {
        socket.off('data', onData);
        socket.off('close', onClose);
        resolve(answer);
      };
      const onData = (d: Buffer) => done(String(d).split('\r\n')[0] ?? '');
      const onClose = () => done('closed');
      socket.on('data', onData);
      socket.once('close', onClose);
      socket.write(`GET /~frank/none/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    });
  return { socket, ask };
}

it('a request on a keep-alive connection after a CRL reload revoked its certificate is refused, with a record', async () => {
  const token = readFileSync(tokenFile, 'utf8').trim();
  publisher = startPublisher([...gatewayFlags(h, frank, tokenFile).filter((f, i, all) => f !== '--transport' && all[i - 1] !== '--transport'), `echo=unix:${join(home, 'private', 'echo.sock')}`], cleanEnv(home));
  await publisher.waitForStderr(/published as frank/);
  const idle = await keepAlive(frank, token);
  const source = `127.0.0.1:${idle.socket.localPort}`;
  expect(await idle.ask()).toMatch(/^HTTP\/1\.1 \d{3}/);
  // A publisher that answers nothing more: its close takes the whole grace, and every revoked connection waits for it.
  publisher.proc.kill('SIGSTOP');
  const reloads = h.audit().filter((r) => r.event === 'revocation.reload').length;
  installCrl(crlPathOf(h), await makeCrl(h, [frank.serial]));
  await h.waitForAudit(() => h.audit().filter((r) => r.event === 'revocation.reload').length > reloads, 10_000);
  const answer = await idle.ask();
  expect(answer === 'closed' || answer.startsWith('HTTP/1.1 403')).toBe(true);
  if (answer !== 'closed') {
    const record = await h.waitForAudit((r) => r.event === 'request' && r.source === source && r.status === 403);
    expect(record).toMatchObject({ decision: 'deny', reason: 'client certificate revoked (tls.crl)' });
  }
  publisher.proc.kill('SIGCONT');
  await h.waitForAudit((r) => r.event === 'connection.close' && r.source === source && r.reason === 'client certificate revoked (tls.crl)', 10_000);
}, 30_000);
