// The cluster's schema in PostgreSQL, as numbered migrations run in order by `gatehouse cluster migrate`:
// all pending ones in one transaction, under an advisory lock, so instances migrating at once are safe.
import type { ClientBase } from 'pg';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Append only: a migration once released never changes; a change is a new version. */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'instances and revocations',
    sql: `
      CREATE TABLE gatehouse_instances (
        id uuid PRIMARY KEY,
        name text NOT NULL,
        host text NOT NULL,
        pid integer NOT NULL,
        peer_address text,
        version text NOT NULL,
        config_hash text NOT NULL,
        started_at timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL,
        revocation_seq bigint NOT NULL DEFAULT 0
      );
      CREATE INDEX gatehouse_instances_name ON gatehouse_instances (name);
      CREATE TABLE gatehouse_revocations (
        seq bigserial PRIMARY KEY,
        revocation_id text NOT NULL UNIQUE,
        revoked_at timestamptz NOT NULL DEFAULT now(),
        revoked_by text NOT NULL
      );`,
  },
  {
    version: 2,
    name: 'one-time sign-in codes',
    // Unlogged: a code lives 30 s; losing the pending ones in a crash or a failover only means signing in again.
    sql: `
      CREATE UNLOGGED TABLE gatehouse_handoffs (
        id text PRIMARY KEY,
        sealed bytea NOT NULL,
        expires_at timestamptz NOT NULL
      );
      CREATE INDEX gatehouse_handoffs_expiry ON gatehouse_handoffs (expires_at);`,
  },
  {
    version: 3,
    name: 'publisher registry with leases',
    // Unlogged: every row is renewed within seconds by the instance carrying the publisher; after a crash
    // of the database the live instances write theirs again at their next heartbeat.
    sql: `
      CREATE UNLOGGED TABLE gatehouse_publishers (
        instance_id uuid NOT NULL,
        publisher_id text NOT NULL,
        username text NOT NULL,
        service text NOT NULL,
        fingerprint text NOT NULL,
        registered_at timestamptz NOT NULL DEFAULT now(),
        lease_until timestamptz NOT NULL,
        PRIMARY KEY (instance_id, publisher_id, service)
      );
      CREATE INDEX gatehouse_publishers_service ON gatehouse_publishers (username, service);
      CREATE INDEX gatehouse_publishers_lease ON gatehouse_publishers (lease_until);`,
  },
  {
    version: 4,
    name: 'audit checkpoints',
    // One row per signed checkpoint of each instance's log: what the database saw of every log, to check
    // any instance's files against, and where a second log under one origin, or a log cut back, shows.
    sql: `
      CREATE TABLE gatehouse_audit_checkpoints (
        origin text NOT NULL,
        size bigint NOT NULL,
        body text NOT NULL,
        note text NOT NULL,
        instance text NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (origin, size)
      );`,
  },
  {
    version: 5,
    name: 'publisher identity on leases',
    // The id a publisher process sends on each of its connections, so the instances count a user's publishers
    // by process, not by connection ('' from a row written before: read as the connection itself).
    sql: `ALTER TABLE gatehouse_publishers ADD COLUMN publisher_identity text NOT NULL DEFAULT '';`,
  },
];

/** The schema version this code reads and writes. */
export const schemaVersion = migrations.reduce((max, m) => Math.max(max, m.version), 0);

/** Both the migration and the revocation writers serialize on advisory locks in this namespace. */
export const LOCK_NAMESPACE = 0x6761_7465; // "gate"
export const MIGRATION_LOCK = 1;
export const REVOCATION_LOCK = 2;

const versionTable = `CREATE TABLE IF NOT EXISTS gatehouse_schema_version (
  version integer PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  applied_by text NOT NULL
)`;

export interface MigrationReport {
  from: number;
  to: number;
  applied: Array<Pick<Migration, 'version' | 'name'>>;
}

/** The schema version the database has (0: none), without changing anything. */
export async function databaseVersion(client: ClientBase): Promise<number> {
  const table = await client.query<{ present: boolean }>(`SELECT to_regclass('gatehouse_schema_version') IS NOT NULL AS present`);
  if (!table.rows[0]?.present) return 0;
  const result = await client.query<{ version: number | null }>('SELECT max(version) AS version FROM gatehouse_schema_version');
  return result.rows[0]?.version ?? 0;
}

/**
 * Brings the schema to `schemaVersion`. A database newer than this code is refused (an older gatehouse
 * must not write a schema it does not know). Any failure rolls everything back.
 */
export async function migrate(client: ClientBase, appliedBy: string): Promise<MigrationReport> {
  await client.query('BEGIN');
  try {
    // Held until COMMIT/ROLLBACK: a second migrator waits here, then finds nothing left to do.
    await client.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_NAMESPACE, MIGRATION_LOCK]);
    await client.query(versionTable);
    const from = await databaseVersion(client);
    if (from > schemaVersion) throw new Error(`the database's schema is version ${from}, newer than this gatehouse knows (${schemaVersion}): upgrade gatehouse`);
    const pending = migrations.filter((m) => m.version > from).sort((a, b) => a.version - b.version);
    for (const m of pending) {
      await client.query(m.sql);
      await client.query('INSERT INTO gatehouse_schema_version (version, name, applied_by) VALUES ($1, $2, $3)', [m.version, m.name, appliedBy]);
    }
    await client.query('COMMIT');
    return { from, to: Math.max(from, schemaVersion), applied: pending.map(({ version, name }) => ({ version, name })) };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}
