// Spellings of the gateway's reserved paths (/.well-known/gatehouse/: portal, sign-in, tunnel and publish
// endpoints) against a catch-all route: each must reach what its normalized form reaches, or be refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostileGateway, type HostileGateway } from './support/hostileGateway.ts';
import type { RawExchange } from './support/rawClient.ts';
import { upgradeRequest } from './support/wsRaw.ts';

/** A route that would take any path the reserved-path decision lets through, for requests and upgrades. */
const catchAll = `  - name: everything
    path: /
    stripPrefix: false
    protocols: [http, websocket]
    upstream: unix:run/recorder.sock
    policy: |
      allow if user($u);
`;

let g: HostileGateway;
beforeAll(async () => {
  g = await startHostileGateway({ extraRoutes: catchAll });
});
afterAll(async () => {
  await g?.stop();
});

type Method = 'GET' | 'POST' | 'UPGRADE';

function bytes(method: Method, target: string): string {
  if (method === 'UPGRADE') return upgradeRequest(target, g.auth(), { protocol: null });
  const body = method === 'POST' ? 'Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n' : '';
  return `${method} ${target} HTTP/1.1\r\nHost: localhost\r\n${g.auth()}${body}\r\n`;
}

/** Who answered: the upstream (it parsed a request), else the gateway's status and content type. */
interface Answer {
  handler: string;
  status: number;
}

async function answerTo(method: Method, target: string): Promise<Answer> {
  g.resetUpstreams();
  const x: RawExchange = await g.send(bytes(method, target), { expectResponses: 1 });
  const status = x.finals[0]?.status ?? x.responses[0]?.status ?? 0;
  if (g.recorder.requests.length > 0) return { handler: 'upstream', status };
  const type = (x.finals[0]?.header('content-type') ?? '').split(';')[0];
  return { handler: `gateway ${status} ${type}`, status };
}

/** [method, variant spelling, its normalized form] */
const variants: Array<[Method, string, string]> = [
  ['GET', '//.well-known/gatehouse/', '/.well-known/gatehouse/'],
  ['GET', '/.well-known/./gatehouse/', '/.well-known/gatehouse/'],
  ['GET', '/.well-known/%2e/gatehouse/', '/.well-known/gatehouse/'],
  ['GET', '/.well-known/x/../gatehouse/', '/.well-known/gatehouse/'],
  ['GET', '/%2ewell-known/gatehouse/', '/.well-known/gatehouse/'],
  ['GET', '/.well-known/gatehouse/tunnel/../', '/.well-known/gatehouse/'],
  ['GET', '/.well-known/gatehouse/tunnel/%2e%2e/', '/.well-known/gatehouse/'],
  ['GET', '/.well-known/gatehouse?next=/web/', '/.well-known/gatehouse'],
  ['GET', '/.well-known/gatehouse/%2e%2e/', '/.well-known/'],
  ['GET', '/.well-known/gatehouse//session/handoff', '/.well-known/gatehouse/session/handoff'],
  ['POST', '//.well-known/gatehouse/session', '/.well-known/gatehouse/session'],
  ['POST', '/.well-known/./gatehouse/session/end', '/.well-known/gatehouse/session/end'],
  ['POST', '/.well-known/gatehouse/tunnel/../session', '/.well-known/gatehouse/session'],
  ['GET', '//.well-known/gatehouse/tunnel/tcp', '/.well-known/gatehouse/tunnel/tcp'],
  ['GET', '/.well-known/gatehouse/./publish', '/.well-known/gatehouse/publish'],
  ['GET', '/.well-known%2Fgatehouse/', '/.well-known/gatehouse/'],
  ['GET', '/.well-known/gatehouse%2F', '/.well-known/gatehouse/'],
  ['UPGRADE', '//.well-known/gatehouse/', '/.well-known/gatehouse/'],
  ['UPGRADE', '/.well-known/./gatehouse/session', '/.well-known/gatehouse/session'],
];

describe('reserved paths are decided on the normalized path', () => {
  for (const [method, variant, normal] of variants) {
    it(`${method} ${variant} reaches what ${normal} reaches, or is refused`, async () => {
      const expected = await answerTo(method, normal);
      const got = await answerTo(method, variant);
      if (got.handler !== expected.handler) {
        expect(got.handler, `${variant} answered differently from ${normal} (${expected.handler})`).not.toBe('upstream');
        expect([400, 404]).toContain(got.status);
      }
    });
  }

  // Every way in sees the same decision: the gateway's pages take no upgrade, and a route never gets them.
  for (const target of ['/.well-known/gatehouse/', '/.well-known/gatehouse/session', '/.well-known/gatehouse', '/.well-known/gatehouse/anything']) {
    it(`a WebSocket upgrade to ${target} never reaches a route`, async () => {
      const got = await answerTo('UPGRADE', target);
      expect(got.handler).not.toBe('upstream');
      expect(got.status).toBe(404);
    });
  }

  it('the catch-all route still takes everything else (the test would notice a route that took nothing)', async () => {
    expect((await answerTo('GET', '/.well-known/other')).handler).toBe('upstream');
    expect((await answerTo('GET', '/anything/else')).handler).toBe('upstream');
  });
});
