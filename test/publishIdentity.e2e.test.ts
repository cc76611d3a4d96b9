// A publisher is (user, publisher id, client certificate): another holder of a publish token for the same user who
// learns the id (and a connection id from the portal) can neither take the place of that publisher nor lock it out.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { registerPublisher, type Registration } from '../src/client/publishConnection.ts';
import { startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { publishedRoute, publishTop } from './support/publishPeers.ts';
import { writeToken } from './support/tunnelClient.ts';

let h: Harness;
let alice: TestClientCertificate;
let mallory: TestClientCertificate;
/** A token for alice with the right to publish: alice's own, and the one mallory was lent (or took). */
let aliceToken: string;
const held: Registration[] = [];

beforeAll(async () => {
  h = await startHarness({ routes: publishedRoute, extraTop: publishTop });
  alice = await h.pki.client('alice');
  mallory = await h.pki.client('mallory');
  aliceToken = readFileSync(writeToken(h, join(mkdtempSync(join(tmpdir(), 'gatehouse-publish-identity-')), 'alice.token'), 'alice'), 'utf8').trim();
}, 60_000);

afterAll(async () => {
  for (const t of held) if (t.ok) t.session.destroy();
  await h?.stop();
});

async function registerAs(client: TestClientCertificate, identity: string): Promise<Registration> {
  const endpoint = { host: 'localhost', port: h.port, label: 'gw', cert: Buffer.from(client.cert), key: Buffer.from(client.key), ca: readFileSync(h.pki.caCertPath), token: aliceToken };
  const t = await registerPublisher(endpoint, ['web'], { identity });
  if (t.ok) t.session.on('error', () => undefined);
  held.push(t);
  return t;
}

const newId = () => randomBytes(16).toString('base64url');

it("another certificate with alice's publisher id and replaces= her connection does not retire it", async () => {
  const id = newId();
  const hers = await registerAs(alice, id);
  if (!hers.ok) throw new Error(`alice refused: ${JSON.stringify(hers.failure)}`);
  const theirs = await registerAs(mallory, `${id}; replaces=${hers.publisherId}`);
  expect(theirs.ok).toBe(true);
  // Whatever became of the other one, alice's connection stays: no close record, its session open.
  await new Promise((resolve) => setTimeout(resolve, 500));
  expect(h.audit().filter((r) => r.event === 'publish.close' && r.publisher === hers.publisherId)).toEqual([]);
  expect(hers.session.closed || hers.session.destroyed).toBe(false);
});

it("another certificate that connects first with alice's publisher id does not lock her out", async () => {
  const id = newId();
  const theirs = await registerAs(mallory, id);
  expect(theirs.ok).toBe(true);
  const hers = await registerAs(alice, id);
  expect(hers.ok ? 101 : hers.failure).toBe(101);
});
