// The cluster database's metrics (gatehouse_cluster_*): whether the shared revocations are stale, when the
// database was last heard from, reconnect attempts and how many shared revocations this instance holds.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ClusterObserver } from '../cluster/clusterNode.ts';

export function clusterMetrics(registry: Registry): ClusterObserver {
  const registers = [registry];
  const stale = new Gauge({ name: 'gatehouse_cluster_database_stale', help: '1 while the cluster database has not been heard from for cluster.staleSeconds (whenStale: deny refuses new authorizations meanwhile)', registers });
  const heard = new Gauge({ name: 'gatehouse_cluster_database_last_heard_timestamp_seconds', help: 'When the cluster database last answered or notified (Unix time)', registers });
  const reconnects = new Counter({ name: 'gatehouse_cluster_database_reconnects_total', help: 'Connections to the cluster database that failed or broke and were opened again', registers });
  const revocations = new Gauge({ name: 'gatehouse_cluster_revocations', help: 'Revocation ids this instance holds from the cluster database', registers });
  const remote = new Gauge({ name: 'gatehouse_cluster_remote_publishers', help: 'Publisher leases of the other instances in this instance view (requests for them are relayed there)', registers });
  const unreachable = new Counter({ name: 'gatehouse_cluster_peer_unreachable_total', help: 'Relays that could not reach the carrying instance (opened again on another carrier when there is one), by instance', labelNames: ['instance'], registers });
  stale.set(0);
  return {
    heard: (atMs) => heard.set(atMs / 1000),
    stale: (isStale) => stale.set(isStale ? 1 : 0),
    reconnect: () => reconnects.inc(),
    revocations: (count) => revocations.set(count),
    remotePublishers: (count) => remote.set(count),
    peerUnreachable: (instance) => unreachable.inc({ instance }),
  };
}
