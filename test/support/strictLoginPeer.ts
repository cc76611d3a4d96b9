// A login endpoint for client tests that is stricter than the gateway's (RFC 8628 3.5 to the letter): it
// tells `gatehouse login` to slow down at its first poll and counts every later poll that comes too soon.
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { TestPki } from './pki.ts';

/**
 * A login endpoint stricter than the gateway's: it tells the client to slow down at its first poll and
 * counts every later poll that comes sooner than the interval it set (RFC 8628 3.5). A real TLS listener
 * with the site's certificate and mTLS, speaking the gateway's login contract.
 */
export async function startStrictLoginPeer(pki: TestPki): Promise<{ server: HttpsServer; port: number; early: number; polls: number }> {
  const state = { early: 0, polls: 0, interval: 1, last: 0 };
  const server = createHttpsServer({ cert: pki.serverCert, key: pki.serverKey, ca: pki.caCert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    req.resume();
    const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
    if (req.url === '/.well-known/gatehouse/login/device') return json(200, { login: 'a'.repeat(22), userCode: 'WDJB-MJHT', verificationUri: 'https://localhost/device', expiresIn: 120, interval: state.interval });
    const now = Date.now();
    const sooner = state.last !== 0 && now - state.last < state.interval * 1000 - 50;
    state.last = now;
    state.polls += 1;
    if (state.polls === 1 || sooner) {
      if (sooner) state.early += 1;
      state.interval = state.polls === 1 ? 2 : state.interval + 5;
      return json(429, { error: 'slow_down', interval: state.interval });
    }
    if (state.polls < 3) return json(202, { error: 'authorization_pending', interval: state.interval });
    json(200, { token: 'En0KEwoFYWxpY2UYAyIICgYIBBIC', user: 'alice', expiresAt: new Date(now + 3600_000).toISOString(), refreshUntil: new Date(now + 7200_000).toISOString(), revocationId: 'ab'.repeat(32) });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const peer = { server, port: typeof address === 'object' && address ? address.port : 0, get early() { return state.early; }, get polls() { return state.polls; } };
  return peer;
}
