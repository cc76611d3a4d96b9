// The gateway's part in a cluster: joins (membership + shared revocations) with the cluster's metrics
// and audit records, and says whether the instance is fit to take traffic.
import type { IdentityLimits, LimitShares } from '../admission/identityLimits.ts';
import { createSharedLimits, LIMITS_CHANNEL, REPORT_INTERVAL_MS } from './limitShares.ts';
import type { AuditLog } from '../audit/auditLog.ts';
import type { GatewayConfig } from '../config/schema.ts';
import { clusterMetrics } from '../metrics/clusterMetrics.ts';
import type { Registry } from 'prom-client';
import { gatehouseVersion } from '../cli/version.ts';
import { startClusterNode, type ClusterHealthEvent, type ClusterNode } from './clusterNode.ts';
import { memberIdentity } from './membership.ts';
import { databaseHandoffStore } from './sharedHandoffs.ts';
import { checkpointRecorder } from './checkpointRecorder.ts';
import type { HandoffStore } from '../portal/handoffCodes.ts';

/** Start-up waits this long at most for the first read of the shared revocations; requests never wait. */
const FIRST_SYNC_MS = 3000;

function auditHealth(audit: AuditLog, instance: string, event: ClusterHealthEvent): void {
  switch (event.kind) {
    case 'connected':
      audit.write({ event: 'cluster.database', decision: 'allow', detail: { instance, state: 'connected', database: event.database, caughtUp: event.caughtUp, ...(event.staleForMs !== undefined && { staleForMs: event.staleForMs }) } });
      return;
    case 'lost':
      audit.write({ event: 'cluster.database', decision: 'deny', reason: `connection lost: ${event.reason}`, detail: { instance, state: 'lost' } });
      return;
    case 'stale':
      audit.write({ event: 'cluster.database', decision: 'deny', reason: `${event.reason}: ${event.whenStale === 'deny' ? 'refusing new authorizations until it answers' : 'serving with the revocations last heard (cluster.whenStale: serve)'}`, detail: { instance, state: 'stale', whenStale: event.whenStale } });
  }
}

export interface GatewayCluster {
  node: ClusterNode;
  /** One-time sign-in codes any instance can redeem, once. */
  handoffs: HandoffStore;
  /** This instance's shares of the per-identity limits the instances hold together. */
  limitShares: LimitShares;
  /** Records a durable checkpoint of this instance's audit log in the database (in the background). */
  recordCheckpoint(note: string): void;
  /** Starts reporting `limits`' demand to the other instances, once a second. */
  shareLimits(limits: Pick<IdentityLimits, 'takeDemand'>): void;
  /** /readyz: with whenStale: deny, an instance with stale revocations refuses, so it is not ready either. */
  readiness(): Record<string, boolean>;
  close(): Promise<void>;
}

export async function joinCluster(config: GatewayConfig, audit: AuditLog, registry: Registry): Promise<GatewayCluster | undefined> {
  const settings = config.cluster;
  if (!settings) return undefined;
  const me = memberIdentity({ ...config, cluster: settings }, gatehouseVersion());
  const node = startClusterNode(settings, me, { ...clusterMetrics(registry), health: (event) => auditHealth(audit, settings.instance, event) });
  await node.firstSync(Math.min(FIRST_SYNC_MS, settings.staleSeconds * 1000));
  const handoffs = databaseHandoffStore(settings);
  const shared = createSharedLimits(settings.instance, Date.now, () => node.fresh());
  node.listen(LIMITS_CHANNEL, shared.reported);
  let reporting: NodeJS.Timeout | undefined;
  const checkpoints = checkpointRecorder(node, settings.instance, audit);
  return {
    recordCheckpoint: checkpoints.record,
    node,
    handoffs,
    limitShares: shared,
    shareLimits(limits) {
      clearInterval(reporting);
      reporting = setInterval(() => {
        for (const part of shared.local(limits.takeDemand())) node.notify(LIMITS_CHANNEL, part);
      }, REPORT_INTERVAL_MS);
      reporting.unref();
    },
    readiness: (): Record<string, boolean> => (settings.whenStale === 'deny' ? { clusterDatabase: node.fresh() } : {}),
    async close() {
      clearInterval(reporting);
      checkpoints.close();
      await handoffs.close();
      await node.close();
    },
  };
}
