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
import { readFile } from 'node:fs/promises';
import { identityFromPem } from '../tls/peerIdentity.ts';
import { INSTANCE_URI_PREFIX, instanceOf } from '../upstream/relayWire.ts';
import { DEFAULT_PUBLISHER_LEASE_SECONDS } from '../config/clusterSettings.ts';
import type { PublishedServices } from '../upstream/publishedServices.ts';
import { createRelayWayIn, type RelayDeps } from '../forward/relayWayIn.ts';
import type { RefusalRecords } from '../audit/refusalRecords.ts';
import type { TlsMaterial } from '../tls/tlsMaterial.ts';
import { listenForPeers, type PeerCrl, type PeerListener, type PeerTls } from './peerChannel.ts';
import { createRelayClient, type RelayClient } from './relayClient.ts';

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
  /** Opens the peer channel (cluster.peerListen) once the stages a relayed stream goes through exist; `crl`: tls.crl as it is now. */
  openPeers(deps: Omit<RelayDeps, 'published' | 'refusals'> & { refusals: RelayDeps['refusals'] & Pick<RefusalRecords, 'write'> }, tls: ClientCrlSource): Promise<void>;
  /** tls.crl changed (or became unusable): the peer port applies it as the user listener does. */
  peersCrl(tls: ClientCrlSource): void;
  close(): Promise<void>;
}

/** The instance certificate and the site CA, when the config names them (else this instance neither relays nor carries for others). */
async function peerTls(config: GatewayConfig): Promise<PeerTls | undefined> {
  const { peerCert, peerKey } = config.cluster ?? {};
  if (peerCert === undefined || peerKey === undefined) return undefined;
  const [cert, key, ca] = await Promise.all([readFile(peerCert, 'utf8'), readFile(peerKey, 'utf8'), readFile(config.tls.clientCa, 'utf8')]);
  // Fail at start, not at the first relay: the other instances accept this certificate only as this instance.
  const named = instanceOf(identityFromPem(cert));
  if (named !== config.cluster?.instance) throw new Error(`cluster.peerCert ${peerCert} names ${named === undefined ? 'no instance' : `instance ${named}`}, not ${config.cluster?.instance}: it needs the URI name ${INSTANCE_URI_PREFIX}${config.cluster?.instance}`);
  return { cert, key, ca };
}

/** The listeners' TLS material, as far as the peer port reads it: the client CRL now and its check. */
type ClientCrlSource = Pick<TlsMaterial, 'settings' | 'revocationCheck'>;

function peerCrlOf(material: ClientCrlSource): PeerCrl {
  const { crl, refuseClients } = material.settings();
  const isRevoked = material.revocationCheck();
  return { ...(crl !== undefined && { crl: [crl].flat().map(String) }), ...(refuseClients !== undefined && { refuseClients }), ...(isRevoked && { isRevoked }) };
}

export async function joinCluster(config: GatewayConfig, audit: AuditLog, registry: Registry, published: PublishedServices): Promise<GatewayCluster | undefined> {
  const settings = config.cluster;
  if (!settings) return undefined;
  const tls = await peerTls(config);
  const me = memberIdentity({ ...config, cluster: settings }, gatehouseVersion());
  const carrying = { carried: () => published.carried(), leaseSeconds: settings.publisherLeaseSeconds ?? DEFAULT_PUBLISHER_LEASE_SECONDS, leasesRead: published.settleAcross };
  const metrics = clusterMetrics(registry);
  const node = startClusterNode(settings, me, { ...metrics, health: (event) => auditHealth(audit, settings.instance, event) }, carrying);
  // A publisher arriving or leaving here is written to the database soon after; nobody waits for it.
  published.onCarriedChange(() => node.publishersChanged());
  // The publishers and services per user count what the other instances lease (within a read of the leases).
  published.countRemote((user) => node.publishers.usageOf(user));
  const relays: RelayClient | undefined = tls && createRelayClient(settings.instance, tls, node.publishers, metrics.peerUnreachable);
  if (relays) published.useRemote(relays);
  let peers: PeerListener | undefined;
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
    peersCrl: (material) => peers?.setCrl(peerCrlOf(material)),
    async openPeers(deps, material) {
      if (settings.peerListen === undefined) return;
      if (!tls) {
        audit.write({ event: 'cluster.database', decision: 'deny', reason: 'cluster.peerListen is set without peerCert and peerKey: no peer channel, nothing is relayed to this instance', detail: { instance: settings.instance, state: 'no peer channel' } });
        return;
      }
      peers = await listenForPeers(settings.peerListen, tls, createRelayWayIn({ ...deps, published }), audit, deps.refusals, peerCrlOf(material));
    },
    async close() {
      clearInterval(reporting);
      checkpoints.close();
      await peers?.close();
      relays?.close();
      await handoffs.close();
      await node.close();
    },
  };
}
