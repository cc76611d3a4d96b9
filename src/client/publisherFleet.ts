// `gatehouse publish` to several gateway instances: one publisher (connection, registration, reconnects)
// per instance, so whichever instance a request lands on can reach the service. A gateway given by a name
// that resolves to several addresses gets one connection per address, re-resolved as instances come and go.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { GatewayEndpoint } from './gatewayEndpoint.ts';
import { runPublisher, type PublisherOptions, type RunningPublisher } from './publisher.ts';

export interface FleetOptions extends Omit<PublisherOptions, 'endpoint'> {
  endpoints: readonly GatewayEndpoint[];
  /** How often names are looked up again (instances added or removed behind one name). */
  resolveEveryMs?: number;
  /** The resolver (tests and odd sites): every address of `host`. */
  resolveAll?: (host: string) => Promise<string[]>;
}

const RESOLVE_EVERY_MS = 60_000;

async function systemResolveAll(host: string): Promise<string[]> {
  const found = await lookup(host, { all: true });
  return [...new Set(found.map((a) => a.address))];
}

/** The instances behind one endpoint: itself when given as an address; undefined when the name does not resolve now. */
async function instancesOf(endpoint: GatewayEndpoint, resolveAll: (host: string) => Promise<string[]>): Promise<GatewayEndpoint[] | undefined> {
  if (isIP(endpoint.host) !== 0) return [endpoint];
  const addresses = await resolveAll(endpoint.host).catch(() => [] as string[]);
  if (addresses.length === 0) return undefined;
  return addresses.map((address) => ({ ...endpoint, address, label: `${endpoint.label} (${address})` }));
}

/** Runs one publisher per gateway instance; stops them all on a refusal that retrying cannot fix (same token everywhere). */
export function runPublisherFleet(options: FleetOptions): RunningPublisher {
  const { endpoints, resolveEveryMs = RESOLVE_EVERY_MS, resolveAll = systemResolveAll, ...publisherOptions } = options;
  const running = new Map<string, RunningPublisher>();
  let stopped = false;
  let finish!: (code: number) => void;
  const done = new Promise<number>((resolve) => (finish = resolve));
  let exitCode = 0;

  const stopAll = () => {
    stopped = true;
    clearInterval(refresher);
    for (const p of running.values()) p.stop();
  };
  const settleWhenAllDone = () => {
    if (stopped && [...running.values()].length === 0) finish(exitCode);
  };

  const start = (endpoint: GatewayEndpoint) => {
    const publisher = runPublisher({ ...publisherOptions, endpoint });
    running.set(endpoint.label, publisher);
    void publisher.done.then((code) => {
      if (running.get(endpoint.label) === publisher) running.delete(endpoint.label);
      if (code !== 0 && !stopped) {
        exitCode = code;
        stopAll();
      }
      settleWhenAllDone();
    });
  };

  /** Starts publishers for instances not yet connected; stops those whose address a name no longer has. */
  const reconcile = async () => {
    const found = await Promise.all(endpoints.map((e) => instancesOf(e, resolveAll)));
    if (stopped) return;
    const wanted: GatewayEndpoint[] = [];
    const keep = new Set<string>();
    endpoints.forEach((endpoint, i) => {
      const instances = found[i];
      if (instances) return wanted.push(...instances);
      // The name does not resolve now: keep the connections it had; with none, dial the name (its retries say why).
      const had = [...running.keys()].filter((label) => label.startsWith(`${endpoint.label} (`));
      if (had.length > 0) had.forEach((label) => keep.add(label));
      else wanted.push(endpoint);
    });
    for (const endpoint of wanted) {
      keep.add(endpoint.label);
      if (!running.has(endpoint.label)) start(endpoint);
    }
    for (const [label, publisher] of running) {
      if (keep.has(label)) continue;
      publisherOptions.say(`${label} is no longer among the gateway's addresses; leaving it`);
      running.delete(label);
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
  };
}
