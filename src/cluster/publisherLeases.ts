// The publisher registry in the database: each instance writes the (user, service) publishers it carries
// with a lease it renews at every heartbeat, and reads everyone's live leases back (a dead instance's lapse).
import type { ClientBase } from 'pg';

/** The channel an instance NOTIFYs on when what it carries changed; the others read the leases again. */
export const PUBLISHER_CHANNEL = 'gatehouse_publishers';

/** One service one publisher connection carries, as its instance registers it. */
export interface CarriedPublisher {
  /** The publisher's connection id on the carrying instance. */
  publisher: string;
  /** The publisher's key: the id its process sent, or `connection:<id>` for one that sends none. */
  identity: string;
  user: string;
  service: string;
  /** sha256 fingerprint of the publisher's client certificate (policies decide on it). */
  fingerprint: string;
}

/** A live lease as read back: who carries it and where that instance is reached. */
export interface PublisherLease extends CarriedPublisher {
  instanceId: string;
  instance: string;
  peerAddress: string | null;
  /** Seconds the lease has left, by the database's clock. */
  remainingSeconds: number;
  /** When the row was first written (Unix ms, the database's clock): the instances rank a user's publishers by it. */
  registeredAt: number;
}

/**
 * Makes the rows of instance `instanceId` exactly `carried`, each leased for `leaseSeconds` from the
 * database's now. One transaction: a reader sees the old set or the new one. True when the set changed.
 */
export async function renewLeases(client: ClientBase, instanceId: string, carried: readonly CarriedPublisher[], leaseSeconds: number): Promise<boolean> {
  const publishers = carried.map((c) => c.publisher);
  const services = carried.map((c) => c.service);
  await client.query('BEGIN');
  try {
    const dropped = await client.query(
      `DELETE FROM gatehouse_publishers p WHERE p.instance_id = $1
         AND NOT EXISTS (SELECT 1 FROM unnest($2::text[], $3::text[]) AS c(publisher, service) WHERE c.publisher = p.publisher_id AND c.service = p.service)`,
      [instanceId, publishers, services],
    );
    // xmax = 0 marks a row inserted by this statement, not updated: a new lease, which the others must hear of.
    const written = await client.query<{ inserted: boolean }>(
      `INSERT INTO gatehouse_publishers (instance_id, publisher_id, username, service, fingerprint, publisher_identity, lease_until)
       SELECT $1, c.publisher, c.username, c.service, c.fingerprint, c.identity, now() + make_interval(secs => $6)
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $7::text[]) AS c(publisher, username, service, fingerprint, identity)
       ON CONFLICT (instance_id, publisher_id, service) DO UPDATE SET lease_until = EXCLUDED.lease_until
       RETURNING (xmax = 0) AS inserted`,
      [instanceId, publishers, carried.map((c) => c.user), services, carried.map((c) => c.fingerprint), leaseSeconds, carried.map((c) => c.identity)],
    );
    const changed = (dropped.rowCount ?? 0) > 0 || written.rows.some((r) => r.inserted);
    if (changed) await client.query('SELECT pg_notify($1, $2)', [PUBLISHER_CHANNEL, instanceId]);
    await client.query('COMMIT');
    return changed;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/** Every lease not yet run out, with its instance's name and peer address (`withIdentity` false: a schema before 5). */
export async function liveLeases(client: ClientBase, withIdentity = true): Promise<PublisherLease[]> {
  const result = await client.query<{ instance_id: string; name: string | null; peer_address: string | null; publisher_id: string; publisher_identity: string; username: string; service: string; fingerprint: string; remaining: number; registered: number }>(
    `SELECT p.instance_id, i.name, i.peer_address, p.publisher_id, ${withIdentity ? 'p.publisher_identity' : "''::text AS publisher_identity"}, p.username, p.service, p.fingerprint,
            extract(epoch FROM p.lease_until - now())::float8 AS remaining, (extract(epoch FROM p.registered_at) * 1000)::float8 AS registered
       FROM gatehouse_publishers p LEFT JOIN gatehouse_instances i ON i.id = p.instance_id
      WHERE p.lease_until > now()
      ORDER BY p.username, p.service, i.name, p.publisher_id`,
  );
  return result.rows.map((r) => ({ instanceId: r.instance_id, instance: r.name ?? '?', peerAddress: r.peer_address, publisher: r.publisher_id, identity: r.publisher_identity || `connection:${r.publisher_id}`, user: r.username, service: r.service, fingerprint: r.fingerprint, remainingSeconds: r.remaining, registeredAt: r.registered }));
}

/** Rows whose lease ran out a while ago (an instance that died): swept by whichever instance comes by. */
export async function sweepLapsed(client: ClientBase): Promise<void> {
  await client.query(`DELETE FROM gatehouse_publishers WHERE lease_until < now() - interval '1 minute'`);
}

/** This instance's rows, at a clean shutdown (the others hear of it at once). */
export async function dropLeases(client: ClientBase, instanceId: string): Promise<void> {
  await client.query('DELETE FROM gatehouse_publishers WHERE instance_id = $1', [instanceId]);
  await client.query('SELECT pg_notify($1, $2)', [PUBLISHER_CHANNEL, instanceId]);
}
