// Published services carried by another instance of the cluster, as the upstream stage sees them: found in
// the cluster's view of the leases, and reached by a stream relayed over the peer channel to that instance.
import type { UpstreamConnection } from './openUpstream.ts';
import type { RelayTicket, UpstreamTarget } from './upstreamTarget.ts';
import type { AuditRecord } from '../audit/auditRecord.ts';

type Published = Extract<UpstreamTarget, { kind: 'published' }>;

/** A publisher on another instance, as the view of the leases names it. */
export interface RemoteCarrier {
  instance: string;
  /** Its connection id there. */
  publisher: string;
  fingerprint: string;
}

/** What a cluster lends the published services: where else a service is carried, and a stream there. */
export interface RemoteCarriers {
  /** A live remote carrier of `target`'s service, or undefined (never waits on the database). */
  find(target: Published): RemoteCarrier | undefined;
  /** A relayed stream to the carrier `target.relay` names, carrying what admission decided. */
  open(target: Published & { relay: RelayTicket }, timeoutMs: number): Promise<UpstreamConnection>;
}

/** The `relay` field of the entry instance's records (none for a target served here). */
export function relayRecord(target: UpstreamTarget): Pick<AuditRecord, 'relay'> | undefined {
  return target.kind === 'published' && target.relay ? { relay: { id: target.relay.id, to: target.relay.instance } } : undefined;
}
