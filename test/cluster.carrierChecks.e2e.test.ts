// What the carrying instance checks itself: a relayed token against its own revocations (an open relayed tunnel
// ends when it hears, a new one is refused), and the entry instance's certificate against tls.crl on the peer port.
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import { X509Certificate } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curl, inOneHour, makeRootKey, mintRaw } from './support/gatewayHarness.ts';
import { crlPathOf, enableCrl, installCrl, makeCrl } from './support/clientCrls.ts';
import { carriersOf, leasesUntil, publishedHome, startClusterInstance, type ClusterInstance } from './support/clusterPeers.ts';
import { makeTestPki, type TestClientCertificate } from './support/pki.ts';
import { postgresSkipReason, startMigratedPostgres, type TestPostgres } from './support/postgres.ts';
import { startPublisher, type PublisherProcess } from './support/publishPeers.ts';
import { cleanEnv } from './support/tunnelClient.ts';
import { connectTunnel } from './support/tunnelPeers.ts';

let db: TestPostgres;
let alice: TestClientCertificate;
let publisher: PublisherProcess;
let carrier: ClusterInstance;
let entry: ClusterInstance;
let work: string;
const servers: Server[] = [];
const rootKey = makeRootKey();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  if (postgresSkipReason) return;
  db = await startMigratedPostgres();
  work = mkdtempSync(join(tmpdir(), 'gatehouse-carrier-revocation-'));
  const pki = await makeTestPki(join(work, 'pki'));
  alice = await pki.client('alice');
  carrier = await startClusterInstance('gw1', { db, pki, dir: work, rootKey, leaseSeconds: 3 });
  entry = await startClusterInstance('gw2', { db, pki, dir: work, rootKey, leaseSeconds: 3 });
  const home = await publishedHome(work, carrier.h, 'alice');
  servers.push(...home.servers);
  // Connected to gw1 only: through gw2, alice's services are relayed to gw1.
  publisher = startPublisher(['--gateway', `https://localhost:${carrier.h.port}`, '--ca', pki.caCertPath, '--cert', alice.certPath, '--key', alice.keyPath, '--token-file', home.tokenFile, ...home.services], cleanEnv(home.home));
  await publisher.waitForStderr(/published as alice through/);
  await leasesUntil(join(entry.h.dir, 'routes.yaml'), (all) => carriersOf(all, 'alice', 'echo').length === 1);
  await sleep(1000);
}, 120_000);

afterAll(async () => {
  await publisher?.stop('SIGKILL');
  for (const i of [carrier, entry]) await i?.h.stop();
  for (const s of servers) s.close();
  await db?.remove();
});

const rootPublic = () => biscuit.PublicKey.fromString(rootKey.publicKey.replace(/^ed25519\//, ''), biscuit.SignatureAlgorithm.Ed25519);
const idsOf = (token: string) => biscuit.Biscuit.fromBase64(token, rootPublic()).getRevocationIdentifiers().map(String);

describe.skipIf(postgresSkipReason !== '')(`the carrier re-checks revocation${postgresSkipReason}`, () => {
  it('a token revoked on the carrier only: its open relayed tunnel is ended there with a record, and a new relayed stream is refused there', async () => {
    // A token of alice's own for the client (the publisher's token stays valid).
    const token = mintRaw(rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
    const headers = { 'Proxy-Authorization': `Bearer ${token}` };
    const opened = await connectTunnel(entry.h, alice, 'echo.alice:443', headers);
    if (!opened.ok) throw new Error(`refused: ${opened.status} ${opened.body}`);
    const echoed = new Promise<string>((resolve) => opened.end.onData((d) => resolve(d.toString())));
    await opened.end.write(Buffer.from('before'));
    expect(await echoed).toBe('before');
    const relayed = await entry.h.waitForAudit((r) => r.event === 'tunnel.open' && r.relay?.to === 'gw1');
    expect(relayed.relay?.id).toBeDefined();

    // Only the carrier's revocation list names it: the entry instance has not heard.
    appendFileSync(carrier.h.revocationList, `${idsOf(token)[0]}\n`);
    const ended = await carrier.h.waitForAudit((r) => r.event === 'relay.close' && r.relay?.id === relayed.relay?.id);
    expect(ended).toMatchObject({ decision: 'allow', reason: 'token revoked', token: { user: 'alice', revocationIds: idsOf(token) } });
    await opened.end.closed;

    const again = await connectTunnel(entry.h, alice, 'echo.alice:443', headers);
    expect(again.ok).toBe(false);
    const refused = await carrier.h.waitForAudit((r) => r.event === 'relay.close' && r.decision === 'deny' && r.status === 403);
    expect(refused.reason).toBe('relayed stream from instance gw2: the token is revoked (as this instance knows)');
    expect(refused.relay?.from).toBe('gw2');
  }, 60_000);

  it('the peer port applies tls.crl: a CRL revoking the entry instance\'s certificate ends its session and refuses its next handshake (tls.reject)', async () => {
    const token = mintRaw(rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
    await enableCrl(carrier.h);
    expect((await curl(entry.h, '/~alice/web/before', { client: alice, token })).status).toBe(200);
    const serial = new X509Certificate(readFileSync(join(work, 'gw2.crt'))).serialNumber;
    installCrl(crlPathOf(carrier.h), await makeCrl(carrier.h, [serial]));
    const ended = await carrier.h.waitForAudit((r) => r.event === 'tls.reject' && /^peer channel: instance certificate revoked \(tls\.crl\): session ended$/.test(r.reason ?? ''));
    expect(ended.client?.cn).toBe('gw2');
    const after = await curl(entry.h, '/~alice/web/after', { client: alice, token });
    expect(after.status).toBeGreaterThanOrEqual(500);
    const refused = await carrier.h.waitForAudit((r) => r.event === 'tls.reject' && /^peer channel: client certificate revoked \(tls\.crl\)/.test(r.reason ?? ''));
    expect(refused.decision).toBe('deny');
    // Users are unaffected: alice reaches her service through the carrier itself.
    expect((await curl(carrier.h, '/~alice/web/direct', { client: alice, token })).status).toBe(200);
  }, 60_000);
});
