// Revocations in the database: written one transaction at a time (so `seq` order is commit order) with a
// NOTIFY per id, and read back by sequence number, which is how an instance catches up after a gap.
import type { ClientBase } from 'pg';
import { LOCK_NAMESPACE, REVOCATION_LOCK } from './migrations.ts';

/** The channel every instance LISTENs on; the payload is `<seq> <revocation id>`. */
export const REVOCATION_CHANNEL = 'gatehouse_revocations';

export interface RevokedRow {
  seq: number;
  id: string;
}

/** Adds the ids not yet revoked; returns those added. `ids` must already be valid, lower-case revocation ids. */
export async function revokeInDatabase(client: ClientBase, ids: readonly string[], revokedBy: string): Promise<RevokedRow[]> {
  await client.query('BEGIN');
  try {
    // Writers take turns: a row's seq is then never below one already committed, and readers that
    // catch up with "seq > last seen" miss nothing.
    await client.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_NAMESPACE, REVOCATION_LOCK]);
    const added = await client.query<{ seq: string; revocation_id: string }>(
      `INSERT INTO gatehouse_revocations (revocation_id, revoked_by) SELECT unnest($1::text[]), $2
       ON CONFLICT (revocation_id) DO NOTHING RETURNING seq, revocation_id`,
      [ids, revokedBy],
    );
    const rows = added.rows.map((r) => ({ seq: Number(r.seq), id: r.revocation_id }));
    // Delivered at COMMIT, to every session listening then.
    for (const row of rows) await client.query('SELECT pg_notify($1, $2)', [REVOCATION_CHANNEL, `${row.seq} ${row.id}`]);
    await client.query('COMMIT');
    return rows;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/** Every revocation after `afterSeq`, in order. */
export async function revokedSince(client: ClientBase, afterSeq: number): Promise<RevokedRow[]> {
  const result = await client.query<{ seq: string; revocation_id: string }>('SELECT seq, revocation_id FROM gatehouse_revocations WHERE seq > $1 ORDER BY seq', [afterSeq]);
  return result.rows.map((r) => ({ seq: Number(r.seq), id: r.revocation_id }));
}

/** How many revocations the database holds. */
export async function revocationCount(client: ClientBase): Promise<number> {
  const result = await client.query<{ count: string }>('SELECT count(*) AS count FROM gatehouse_revocations');
  return Number(result.rows[0]?.count ?? 0);
}

/** A notification's payload, or undefined when it is not one of ours. */
export function parseRevocationNotice(payload: string | undefined): RevokedRow | undefined {
  const match = /^(\d{1,18}) ([0-9a-f]{64,512})$/.exec(payload ?? '');
  return match ? { seq: Number(match[1]), id: match[2] as string } : undefined;
}
