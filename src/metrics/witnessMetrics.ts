// The witnesses' metrics (gatehouse_audit_witness_*): cosignatures, failures by reason, the last
// cosignature's time and the round trip per checkpoint, per witness.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { WitnessPushObserver } from '../audit/witnessPusher.ts';

export function witnessMetrics(registry: Registry): WitnessPushObserver {
  const registers = [registry];
  const cosigned = new Counter({ name: 'gatehouse_audit_witness_cosigned_total', help: 'Checkpoints a witness cosigned', labelNames: ['witness'], registers });
  const failures = new Counter({ name: 'gatehouse_audit_witness_failures_total', help: 'Failed pushes of a checkpoint to a witness, by reason (unreachable, refused, bad-cosignature, no-proof); each is retried with backoff', labelNames: ['witness', 'reason'], registers });
  const last = new Gauge({ name: 'gatehouse_audit_witness_last_cosigned_timestamp_seconds', help: 'When a witness last cosigned a checkpoint (Unix time)', labelNames: ['witness'], registers });
  const roundTrip = new Histogram({ name: 'gatehouse_audit_witness_round_trip_seconds', help: 'Round trip of one add-checkpoint request that was cosigned', labelNames: ['witness'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers });
  return {
    cosigned(witness, ms, atMs) {
      cosigned.inc({ witness });
      last.set({ witness }, atMs / 1000);
      roundTrip.observe({ witness }, ms / 1000);
    },
    failed(witness, reason) {
      failures.inc({ witness, reason });
    },
  };
}
