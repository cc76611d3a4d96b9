// `gatehouse serve --processes 2` and signing in to a service on its own origin: the one-time hand-off
// code is issued by one gateway process and redeemed on a new connection, which the cluster gives to
// either process; every code works once, whichever process sees it.
import { mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEchoService } from '../src/demo/echoService.ts';
import { curlReply, inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';

const routes = `  - name: services
    host: "{service}--{user}.apps.test"
    upstream: unix:run/{user}-{service}.sock
    policy: |
      allow if user($u), param("user", $u);
`;

describe('serve --processes 2: sign-in hand-off to a service\'s own origin', () => {
  let h: Harness;
  let echo: Server;
  let alice: TestClientCertificate;
  let service: string;

  beforeAll(async () => {
    h = await startHarness({ routes, extraTop: 'browser:\n  portalHost: localhost\n', serverNames: ['*.apps.test'], serveArgs: ['--processes', '2'] });
    mkdirSync(join(h.dir, 'run'), { recursive: true });
    echo = await startEchoService(join(h.dir, 'run', 'alice-app.sock'));
    alice = await h.pki.client('alice');
    service = `app--alice.apps.test:${h.port}`;
  }, 60_000);
  afterAll(async () => {
    await h?.stop('SIGKILL');
    echo?.close();
  });

  const resolve = () => ['--resolve', `${service}:127.0.0.1`];
  /** Signs in on the gateway's origin for alice's service; returns the hand-off URL. */
  async function handoffUrl(): Promise<string> {
    const token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
    const reply = await curlReply(h, alice, '/.well-known/gatehouse/session', ['--data-urlencode', `token=${token}`, '--data-urlencode', `next=https://${service}/x`]);
    expect(reply.status).toBe(303);
    const location = reply.headers.location?.[0] ?? '';
    expect(location).toMatch(new RegExp(`^https://${service.replace(/\./g, '\\.')}/\\.well-known/gatehouse/session/handoff\\?code=`));
    return location;
  }

  it('redeems 10 of 10 hand-offs, each on a new connection, across both processes', async () => {
    let redeemed = 0;
    for (let i = 0; i < 10; i++) {
      const landed = await curlReply(h, alice, await handoffUrl(), resolve());
      if (landed.status === 200 && landed.headers['set-cookie']?.[0]?.startsWith('__Host-gatehouse-session=')) redeemed++;
    }
    expect(redeemed).toBe(10);
    // The audit says which process issued each code and which redeemed it (in order, one at a time):
    // codes were redeemed by the process that did not issue them.
    await h.waitForAudit(() => h.audit().filter((r) => r.event === 'session.start' && r.method === 'GET').length >= 10);
    const starts = h.audit().filter((r) => r.event === 'session.start' && r.decision === 'allow');
    const issued = starts.filter((r) => r.method === 'POST').map((r) => r.pid);
    const taken = starts.filter((r) => r.method === 'GET').map((r) => r.pid);
    expect(taken).toHaveLength(10);
    expect(issued.filter((pid, i) => pid !== taken[i]).length).toBeGreaterThan(0);
  }, 120_000);

  it('a code works once, whichever process sees it again', async () => {
    const url = await handoffUrl();
    expect((await curlReply(h, alice, url, resolve())).status).toBe(200);
    // Replays on new connections until both processes have refused it (the cluster hands connections out
    // in turn, so two or three suffice; which process gets which depends on timing, so keep trying).
    const replays: number[] = [];
    const refusedBy = () => new Set(h.audit().filter((r) => r.event === 'session.start' && r.method === 'GET' && r.decision === 'deny').map((r) => r.pid));
    while (replays.length < 20 && refusedBy().size < 2) {
      replays.push((await curlReply(h, alice, url, resolve())).status);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(refusedBy().size).toBe(2);
    expect(replays.every((status) => status === 403)).toBe(true);
    const refusals = h.audit().filter((r) => r.event === 'session.start' && r.method === 'GET' && r.decision === 'deny');
    expect(new Set(refusals.map((r) => r.reason))).toEqual(new Set(['unknown or already used sign-in code']));
  }, 60_000);

  it('the session a hand-off set works on the service in either process', async () => {
    const landed = await curlReply(h, alice, await handoffUrl(), resolve());
    const cookie = (landed.headers['set-cookie']?.[0] ?? '').split(';')[0] as string;
    for (let i = 0; i < 2; i++) {
      const page = await curlReply(h, alice, `https://${service}/x`, [...resolve(), '-H', `Cookie: ${cookie}`]);
      expect(page.status).toBe(200);
    }
  }, 60_000);
});
