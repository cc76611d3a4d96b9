// Instances of a cluster for tests: an instance certificate from the test CA (the role is a URI name
// `gatehouse-instance:<name>`, serverAuth + clientAuth, as `gatehouse pki instance` issues it), a
// real `gatehouse serve` per instance on one PostgreSQL, and the publisher leases `cluster status` lists.
import { mkdirSync, readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { join } from 'node:path';
import { issueInstanceCertificate } from '../../src/pki/index.ts';
import { runGatehouse, startHarness, type Harness } from './gatewayHarness.ts';
import { freePort } from './localServices.ts';
import type { TestPki } from './pki.ts';
import { echoService, httpAndWebSocketService, publishedRoute, publishedUdpRoute, publishTop } from './publishPeers.ts';
import { writeToken } from './tunnelClient.ts';

/**
 * The instances hold alice's request rate together (cluster-wide limits): the failover tests put more load
 * through three instances than one instance's 1,000 req/s, so their limit is far above what they send.
 */
const clusterTop = publishTop.replace('requestsPerSecond: 1000', 'requestsPerSecond: 100000').replace('requestBurst: 2000', 'requestBurst: 200000');

export interface InstanceCertificate {
  certPath: string;
  keyPath: string;
}

/** Issues `name`'s certificate into `dir` as `gatehouse pki instance NAME --host 127.0.0.1` does. */
export async function instanceCertificate(pki: TestPki, dir: string, name: string): Promise<InstanceCertificate> {
  const issued = await issueInstanceCertificate({ dir: pki.dir, name, hosts: ['127.0.0.1'], out: dir, force: true });
  return { certPath: issued.cert, keyPath: issued.key };
}

export interface ClusterInstance {
  name: string;
  h: Harness;
  peerPort: number;
}

export interface InstanceOptions {
  db: { url: string };
  pki: TestPki;
  /** Where the instance certificates are written. */
  dir: string;
  rootKey: { privateKey: string; publicKey: string };
  leaseSeconds: number;
  /** cluster.staleSeconds (default 4). */
  staleSeconds?: number;
  /** The instance certificate to use (default: one naming this instance). */
  cert?: InstanceCertificate;
  /** More keys of the publish block (e.g. `  publishersPerUser: 2\n`). */
  publishLimits?: string;
}

/** An instance with the published routes (and the udp one), a peer channel on a free port and its own instance certificate. */
export async function startClusterInstance(name: string, o: InstanceOptions): Promise<ClusterInstance> {
  const peerPort = await freePort();
  const cert = o.cert ?? (await instanceCertificate(o.pki, o.dir, name));
  const cluster = `cluster:\n  postgres: ${o.db.url}\n  instance: ${name}\n  peerListen: 127.0.0.1:${peerPort}\n  peerCert: ${cert.certPath}\n  peerKey: ${cert.keyPath}\n  publisherLeaseSeconds: ${o.leaseSeconds}\n  staleSeconds: ${o.staleSeconds ?? 4}\n`;
  const h = await startHarness({ routes: publishedRoute + publishedUdpRoute, rootKey: o.rootKey, pki: o.pki, extraTop: cluster + clusterTop.replace('  streamsPerPublisher: 400\n', `  streamsPerPublisher: 400\n${o.publishLimits ?? ''}`) });
  return { name, h, peerPort };
}

export interface Lease {
  user: string;
  service: string;
  instance: string;
  publisher: string;
  /** The publisher's key (its process's id, or `connection:` and its connection id). */
  identity: string;
  fingerprint: string;
}

/** The live publisher leases, as `gatehouse cluster status --json` run with `config` lists them. */
export async function leases(config: string): Promise<Lease[]> {
  const out = await runGatehouse(['cluster', 'status', '--json', '--config', config]);
  return (JSON.parse(out.stdout) as { publishers: Lease[] }).publishers;
}

/** Polls the leases until `done` holds (up to `ms`); returns the last read. */
export async function leasesUntil(config: string, done: (all: Lease[]) => boolean, ms = 15_000): Promise<Lease[]> {
  const until = Date.now() + ms;
  for (;;) {
    const all = await leases(config);
    if (done(all) || Date.now() > until) return all;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** The instances carrying `user`'s `service`, sorted. */
export const carriersOf = (all: readonly Lease[], user: string, service: string): string[] => [...new Set(all.filter((l) => l.user === user && l.service === service).map((l) => l.instance))].sort();

export interface PublishedHome {
  home: string;
  tokenFile: string;
  token: string;
  /** `web=` (HTTP and WebSocket echo) and `echo/tcp=` (raw echo) on UNIX sockets in the home's private directory. */
  services: string[];
  servers: Server[];
}

/** `user`'s home under `dir` with the two services a publisher publishes in these tests, and a publishing token. */
export async function publishedHome(dir: string, h: Harness, user: string): Promise<PublishedHome> {
  const home = join(dir, `home-${user}`);
  mkdirSync(join(home, 'private'), { recursive: true, mode: 0o700 });
  const web = join(home, 'private', 'web.sock');
  const echo = join(home, 'private', 'echo.sock');
  const servers = [(await httpAndWebSocketService(web)) as unknown as Server, await echoService(echo)];
  const tokenFile = writeToken(h, join(home, `${user}.token`), user);
  return { home, tokenFile, token: readFileSync(tokenFile, 'utf8').trim(), services: [`web=unix:${web}`, `echo/tcp=unix:${echo}`], servers };
}
