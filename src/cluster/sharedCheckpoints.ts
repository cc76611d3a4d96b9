// The audit checkpoints every instance records in the cluster database: what the database saw of each
// log (by origin), so any instance's files can be checked against it, and where two logs under one origin
// (a fork) or a log cut back (a new log under an old name) show.
import type { ClientBase } from 'pg';
import { parseCheckpointNote } from '../audit/signedNote.ts';

export interface RecordedCheckpoint {
  origin: string;
  size: number;
  instance: string;
  note: string;
  recordedAt: Date;
}

export type CheckpointOutcome =
  | { kind: 'recorded' }
  /** The same checkpoint, recorded before (a restart publishing its last one again). */
  | { kind: 'known' }
  /** Another note for this origin and size: two different logs claim the same name. */
  | { kind: 'fork'; recorded: RecordedCheckpoint }
  /** Smaller than what this origin reached before: the log was cut back or started again under its old name. */
  | { kind: 'rewound'; recorded: RecordedCheckpoint }
  | { kind: 'malformed'; reason: string };

interface Row {
  origin: string;
  size: string;
  instance: string;
  note: string;
  recorded_at: Date;
}

const recordOf = (row: Row): RecordedCheckpoint => ({ origin: row.origin, size: Number(row.size), instance: row.instance, note: row.note, recordedAt: row.recorded_at });

export async function latestCheckpoint(client: ClientBase, origin: string): Promise<RecordedCheckpoint | undefined> {
  const { rows } = await client.query<Row>('SELECT origin, size, instance, note, recorded_at FROM gatehouse_audit_checkpoints WHERE origin = $1 ORDER BY size DESC LIMIT 1', [origin]);
  return rows[0] && recordOf(rows[0]);
}

/** Every origin's newest checkpoint, and how many each has. */
export async function checkpointOrigins(client: ClientBase): Promise<Array<RecordedCheckpoint & { count: number }>> {
  const { rows } = await client.query<Row & { count: string }>(
    `SELECT DISTINCT ON (origin) origin, size, instance, note, recorded_at, count(*) OVER (PARTITION BY origin) AS count
       FROM gatehouse_audit_checkpoints ORDER BY origin, size DESC`,
  );
  return rows.map((row) => ({ ...recordOf(row), count: Number(row.count) }));
}

/** Records `note` (a signed checkpoint of this instance's log), judged against what its origin reached before. */
export async function recordCheckpoint(client: ClientBase, instance: string, note: string): Promise<CheckpointOutcome> {
  const parsed = parseCheckpointNote(note);
  if (!parsed.ok) return { kind: 'malformed', reason: parsed.message };
  const { origin, size, body } = parsed.value;
  const inserted = await client.query('INSERT INTO gatehouse_audit_checkpoints (origin, size, body, note, instance) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (origin, size) DO NOTHING', [origin, size, body, note, instance]);
  if (inserted.rowCount === 0) {
    const { rows } = await client.query<Row & { body: string }>('SELECT origin, size, body, instance, note, recorded_at FROM gatehouse_audit_checkpoints WHERE origin = $1 AND size = $2', [origin, size]);
    const existing = rows[0];
    // Signatures may differ (a key rotated, cosignatures added): the body (origin, size, root) is what must agree.
    if (existing !== undefined && existing.body !== body) return { kind: 'fork', recorded: recordOf(existing) };
    return { kind: 'known' };
  }
  const latest = await latestCheckpoint(client, origin);
  if (latest !== undefined && latest.size > size) return { kind: 'rewound', recorded: latest };
  return { kind: 'recorded' };
}
