// `gatehouse publish` to several gateway instances: one publisher (connection, registration, reconnects) per
// instance given or resolved, and in a cluster (instances relay to each other) up to k connections to distinct
// instances through one balancer name. A name's addresses are re-resolved as instances come and go.
import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { GatewayEndpoint } from './gatewayEndpoint.ts';
import { DEFAULT_CONNECTIONS } from './publishSpec.ts';
import { runPublisher, type Landing, type PublisherOptions, type RunningPublisher } from './publisher.ts';

export interface FleetOptions extends Omit<PublisherOptions, 'endpoint'> {
  endpoints: readonly GatewayEndpoint[];
  /** How often names are looked up again (instances added or removed behind one name). */
  resolveEveryMs?: number;
  /** The resolver (tests and odd sites): every address of `host`. */
  resolveAll?: (host: string) => Promise<string[]>;
  /**
   * In a cluster (the gateway names its instance), connections to distinct instances to keep (k of N): when
   * fewer instances are given or resolved, more connections go through the first endpoint that named one.
   */
  connections?: number;
}


const RESOLVE_EVERY_MS = 60_000;

async function systemResolveAll(host: string): Promise<string[]> {
  const found = await lookup(host, { all: true });
  return [...new Set(found.map((a) => a.address))];
}

interface Instance {
  /** Stable while the address stays: the gateway as given, and the address dialled. */
  key: string;
  endpoint: GatewayEndpoint;
}

/**
 * The instances behind one endpoint: itself when given as an address; undefined when the name does not
 * resolve now. One family only (IPv4 when the name has any): a dual-stack instance has an address in each,
 * and two connections to one instance would count twice against the publisher limits.
 */
async function instancesOf(endpoint: GatewayEndpoint, resolveAll: (host: string) => Promise<string[]>): Promise<Instance[] | undefined> {
  if (isIP(endpoint.host) !== 0) return [{ key: endpoint.label, endpoint }];
  const found = await resolveAll(endpoint.host).catch(() => [] as string[]);
  const v4 = found.filter((address) => isIP(address) === 4);
  const addresses = v4.length > 0 ? v4 : found;
  if (addresses.length === 0) return undefined;
  return addresses.map((address) => ({ key: `${endpoint.label} (${address})`, endpoint: { ...endpoint, address, label: addresses.length > 1 ? `${endpoint.label} (${address})` : endpoint.label } }));
}

/** Runs one publisher per gateway instance; stops them all on a refusal that retrying cannot fix (same token everywhere). */
export function runPublisherFleet(options: FleetOptions): RunningPublisher {
  const { endpoints, resolveEveryMs = RESOLVE_EVERY_MS, resolveAll = systemResolveAll, connections = DEFAULT_CONNECTIONS, ...given } = options;
  // One id for the process, on every connection: the gateways count this publisher once against publishersPerUser.
  const publisherOptions = { ...given, identity: given.identity ?? randomBytes(16).toString('base64url') };
  const running = new Map<string, RunningPublisher>();
  /** The instance each connection holds now (by its key), as its gateway named it in the 101. */
  const holding = new Map<string, string>();
  /** Connections added to reach k distinct instances through a balancer (not in `running`: reconcile leaves them). */
  const extras = new Map<string, RunningPublisher>();
  let stopped = false;
  let finish!: (code: number) => void;
  const done = new Promise<number>((resolve) => (finish = resolve));
  let exitCode = 0;

  const stopAll = () => {
    stopped = true;
    clearInterval(refresher);
    for (const p of [...running.values(), ...extras.values()]) p.stop();
  };
  const settleWhenAllDone = () => {
    if (stopped && running.size === 0 && extras.size === 0) finish(exitCode);
  };

  /** The endpoint each connection dials (extras reuse the one whose gateway named an instance). */
  const endpointOf = new Map<string, GatewayEndpoint>();

  /**
   * Where connection `key` may land: elsewhere than the others. An address may be a balancer's (one name, one
   * address): a connection that lost its instance must not come back to one another connection holds.
   */
  const landingOf = (key: string): Landing => ({
    taken: () => new Set([...holding].filter(([k, instance]) => k !== key && instance !== '').map(([, instance]) => instance)),
    holds(instance) {
      holding.set(key, instance);
      if (instance !== '') addExtras(endpointOf.get(key));
    },
  });

  const track = (key: string, endpoint: GatewayEndpoint, into: Map<string, RunningPublisher>) => {
    endpointOf.set(key, endpoint);
    const publisher = runPublisher({ ...publisherOptions, endpoint, landing: landingOf(key) });
    into.set(key, publisher);
    void publisher.done.then((code) => {
      if (into.get(key) === publisher) into.delete(key);
      holding.delete(key);
      if (code !== 0 && !stopped) {
        exitCode = code;
        stopAll();
      }
      settleWhenAllDone();
    });
    return publisher;
  };

  /** A cluster answered: connections through `endpoint` up to k in all (each must land on an instance of its own). */
  const addExtras = (endpoint: GatewayEndpoint | undefined) => {
    if (stopped || endpoint === undefined) return;
    for (let n = running.size + extras.size; n < connections; n++) track(`${endpoint.label} +${extras.size + 1}`, endpoint, extras);
  };

  const start = ({ key, endpoint }: Instance) => track(key, endpoint, running);

  /** Starts publishers for instances not yet connected; stops those whose address a name no longer has. */
  const reconcile = async () => {
    const found = await Promise.all(endpoints.map((e) => instancesOf(e, resolveAll)));
    if (stopped) return;
    const wanted: Instance[] = [];
    const keep = new Set<string>();
    endpoints.forEach((endpoint, i) => {
      const instances = found[i];
      if (instances) return wanted.push(...instances);
      // The name does not resolve now: keep the connections it had; with none, dial the name (its retries say why).
      const had = [...running.keys()].filter((key) => key.startsWith(`${endpoint.label} (`));
      if (had.length > 0) had.forEach((key) => keep.add(key));
      else wanted.push({ key: endpoint.label, endpoint });
    });
    for (const instance of wanted) {
      keep.add(instance.key);
      if (!running.has(instance.key)) start(instance);
    }
    for (const [key, publisher] of running) {
      if (keep.has(key)) continue;
      publisherOptions.say(`${key} is no longer among the gateway's addresses; leaving it`);
      running.delete(key);
      publisher.stop();
    }
  };

  const refresher = setInterval(() => void reconcile(), resolveEveryMs);
  refresher.unref();
  void reconcile();

  return {
    done,
    stop() {
      stopAll();
      settleWhenAllDone();
    },
    tokenRenewed() {
      for (const p of running.values()) p.tokenRenewed();
    },
  };
}
