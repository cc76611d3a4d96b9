// What `gatehouse cluster migrate|status` and `token revoke` do against the database, apart from the
// command line: one short-lived client each, the status table, and the revocation write.
import pg from 'pg';
import { hostname, userInfo } from 'node:os';
import { clientOptions, type ClusterSettings } from '../config/clusterSettings.ts';
import { listMembers, type MemberRow } from './membership.ts';
import { databaseVersion, migrate, schemaVersion, type MigrationReport } from './migrations.ts';
import { revokeInDatabase, type RevokedRow } from './sharedRevocations.ts';
import { checkpointOrigins, latestCheckpoint } from './sharedCheckpoints.ts';
import { liveLeases, type PublisherLease } from './publisherLeases.ts';

/** Who ran a command, for the rows it writes (`applied_by`, `revoked_by`). */
export function operatorName(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (a container's numeric uid): the host still says where it came from.
  }
  return `${user}@${hostname()}`;
}

async function withClient<T>(settings: ClusterSettings, body: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(clientOptions(settings, 30_000));
  // An error between queries surfaces in the query that follows; without a listener it would end the process.
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function migrateDatabase(settings: ClusterSettings): Promise<MigrationReport> {
  return withClient(settings, (client) => migrate(client, operatorName()));
}

export interface ClusterStatus {
  schema: { version: number; expected: number };
  staleSeconds: number;
  instances: Array<MemberRow & { stale: boolean }>;
  revocations: { count: number; lastSeq: number };
  /** Live publisher leases: which instance carries which user's service (schema 3 and later). */
  publishers: PublisherLease[];
}

export function clusterStatus(settings: ClusterSettings): Promise<ClusterStatus> {
  return withClient(settings, async (client) => {
    const version = await databaseVersion(client);
    if (version === 0) throw new Error('the cluster database has no gatehouse schema yet: run gatehouse cluster migrate');
    const members = await listMembers(client);
    const revoked = await client.query<{ count: string; last: string | null }>('SELECT count(*) AS count, max(seq) AS last FROM gatehouse_revocations');
    return {
      schema: { version, expected: schemaVersion },
      staleSeconds: settings.staleSeconds,
      instances: members.map((m) => ({ ...m, stale: m.ageSeconds > settings.staleSeconds })),
      revocations: { count: Number(revoked.rows[0]?.count ?? 0), lastSeq: Number(revoked.rows[0]?.last ?? 0) },
      publishers: version >= 3 ? await liveLeases(client, version >= 5) : [],
    };
  });
}

/** The status as a table for a terminal; config hashes that differ from the most common one are marked. */
export function formatStatus(status: ClusterStatus): string {
  const hashes = new Map<string, number>();
  for (const m of status.instances) hashes.set(m.configHash, (hashes.get(m.configHash) ?? 0) + 1);
  const common = [...hashes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
  const header = ['INSTANCE', 'HOST', 'PID', 'PEER', 'VERSION', 'CONFIG', 'STARTED', 'HEARTBEAT', 'REVOKED', 'STATE'];
  const rows = status.instances.map((m) => [
    m.name,
    m.host,
    String(m.pid),
    m.peerAddress ?? '-',
    m.version,
    m.configHash === common ? m.configHash : `${m.configHash} (differs)`,
    m.startedAt.replace(/\.\d+Z$/, 'Z'),
    `${m.ageSeconds.toFixed(1)} s ago`,
    // Up to which revocation the instance had read; behind the last seq means it has not heard of the newest.
    `${m.revocationSeq}/${status.revocations.lastSeq}`,
    m.stale ? 'stale' : 'live',
  ]);
  const line = tableLine(header, rows);
  const schema = status.schema.version === status.schema.expected ? `schema version ${status.schema.version}` : `schema version ${status.schema.version}, this gatehouse needs ${status.schema.expected}: run gatehouse cluster migrate`;
  const live = status.instances.filter((m) => !m.stale).length;
  return [
    `${schema}; ${live} of ${status.instances.length} instance(s) live (heartbeat within ${status.staleSeconds} s); ${status.revocations.count} revocation(s), last seq ${status.revocations.lastSeq}`,
    ...(rows.length > 0 ? [line(header), ...rows.map(line)] : ['no instance registered']),
    ...publisherTable(status.publishers),
  ].join('\n') + '\n';
}

/** Formats rows of cells in columns as wide as their widest cell. */
function tableLine(header: string[], rows: string[][]): (cells: string[]) => string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return (cells) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
}

/** One row per (user, service) and carrying instance: a publisher connected to k instances has k rows. */
function publisherTable(leases: readonly PublisherLease[]): string[] {
  const services = new Set(leases.map((l) => `${l.user}/${l.service}`));
  const summary = `${services.size} published service(s), ${leases.length} lease(s)`;
  if (leases.length === 0) return ['', summary];
  const header = ['USER', 'SERVICE', 'INSTANCE', 'PUBLISHER', 'FINGERPRINT', 'LEASE'];
  const rows = leases.map((l) => [l.user, l.service, l.instance, l.publisher, l.fingerprint.slice(0, 23), `${l.remainingSeconds.toFixed(1)} s left`]);
  const line = tableLine(header, rows);
  return ['', summary, line(header), ...rows.map(line)];
}

export function revokeShared(settings: ClusterSettings, ids: readonly string[]): Promise<RevokedRow[]> {
  return withClient(settings, (client) => revokeInDatabase(client, ids, operatorName()));
}

/**
 * `origin`: the newest checkpoint note recorded for it, as is (undefined: none); absent: a table of every
 * origin's newest checkpoint.
 */
export function printCheckpoint(settings: ClusterSettings, origin: string | undefined): Promise<string | undefined> {
  return withClient(settings, async (client) => {
    if (origin !== undefined) return (await latestCheckpoint(client, origin))?.note;
    const rows = await checkpointOrigins(client);
    if (rows.length === 0) return 'no checkpoint recorded\n';
    return rows.map((r) => `${r.origin}  size ${r.size}  (${r.count} checkpoint(s), newest from ${r.instance} at ${r.recordedAt.toISOString()})`).join('\n') + '\n';
  });
}
