// An instance's audit checkpoints on their way into the cluster database: in order, in the background,
// kept (a bounded few) while the database is away; a fork or a rewound log is said in the audit log itself.
import type { AuditLog } from '../audit/auditLog.ts';
import type { ClusterNode } from './clusterNode.ts';
import { recordCheckpoint } from './sharedCheckpoints.ts';

/** Checkpoints kept while the database cannot take them; beyond, the oldest go (the newest anchors the log). */
const MAX_PENDING = 64;

/** How long to wait before trying again after a failed write. */
const RETRY_MS = 1000;

export function checkpointRecorder(node: Pick<ClusterNode, 'run'>, instance: string, audit: Pick<AuditLog, 'write'>) {
  const pending: string[] = [];
  let writing = false;
  let retry: NodeJS.Timeout | undefined;

  const flush = async (): Promise<void> => {
    if (writing) return;
    writing = true;
    try {
      while (pending.length > 0) {
        const note = pending[0] as string;
        const outcome = await node.run((client) => recordCheckpoint(client, instance, note));
        pending.shift();
        if (outcome.kind === 'fork' || outcome.kind === 'rewound' || outcome.kind === 'malformed') {
          const size = /\n(\d+)\n/.exec(note)?.[1];
          const reason =
            outcome.kind === 'fork'
              ? `another log under this origin has a different checkpoint at size ${outcome.recorded.size} (recorded by instance ${outcome.recorded.instance} at ${outcome.recorded.recordedAt.toISOString()})`
              : outcome.kind === 'rewound'
                ? `this log's checkpoint at size ${size} is behind size ${outcome.recorded.size} recorded by instance ${outcome.recorded.instance} at ${outcome.recorded.recordedAt.toISOString()}: the log was cut back or started again under its old origin`
                : `not a checkpoint note: ${outcome.reason}`;
          audit.write({ event: 'cluster.checkpoint', decision: 'deny', reason, detail: { instance, kind: outcome.kind } });
        }
      }
    } catch {
      // The database is away: keep them, and try again (a new checkpoint also tries).
      clearTimeout(retry);
      retry = setTimeout(() => void flush(), RETRY_MS);
      retry.unref();
    } finally {
      writing = false;
    }
  };

  return {
    record(note: string): void {
      pending.push(note);
      if (pending.length > MAX_PENDING) pending.splice(0, pending.length - MAX_PENDING);
      void flush();
    },
    close: () => clearTimeout(retry),
  };
}
