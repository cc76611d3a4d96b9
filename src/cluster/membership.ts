// Membership: each gateway process registers a row (name, host, pid, peer address, version, config hash,
// start time) and refreshes its heartbeat; `cluster status` reads them back with their age.
import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { ClientBase } from 'pg';
import type { GatewayConfig } from '../config/schema.ts';

export interface MemberIdentity {
  id: string;
  name: string;
  host: string;
  pid: number;
  peerAddress: string | null;
  version: string;
  configHash: string;
  startedAt: Date;
}

export interface MemberRow extends Omit<MemberIdentity, 'startedAt'> {
  startedAt: string;
  heartbeatAt: string;
  /** The last revocation (sequence number) the instance had read at its last heartbeat. */
  revocationSeq: number;
  /** Seconds since the last heartbeat, by the database's clock. */
  ageSeconds: number;
}

/**
 * A hash of what must be the same on every instance: the config without the keys that are each
 * instance's own (listen addresses, metrics listener, audit file and origin, instance name, peer address).
 */
export function configHash(config: GatewayConfig): string {
  const { listen: _listen, metrics: _metrics, audit, cluster, ...shared } = config;
  const { file: _file, origin: _origin, checkpointFile: _checkpoint, ...sharedAudit } = audit;
  const sharedCluster = cluster && { ...cluster, instance: undefined, peerListen: undefined };
  const text = JSON.stringify({ ...shared, audit: sharedAudit, cluster: sharedCluster });
  return `sha256:${createHash('sha256').update(text).digest('hex').slice(0, 16)}`;
}

export function memberIdentity(config: GatewayConfig & { cluster: NonNullable<GatewayConfig['cluster']> }, version: string): MemberIdentity {
  return { id: randomUUID(), name: config.cluster.instance, host: hostname(), pid: process.pid, peerAddress: config.cluster.peerListen ?? null, version, configHash: configHash(config), startedAt: new Date() };
}

/**
 * Registers (or re-registers after a reconnect) this process. Rows of earlier runs of the same
 * instance on the same host that stopped heartbeating over `staleSeconds` ago are removed.
 */
export async function register(client: ClientBase, me: MemberIdentity, staleSeconds: number): Promise<void> {
  await client.query(`DELETE FROM gatehouse_instances WHERE name = $1 AND host = $2 AND id <> $3 AND heartbeat_at < now() - make_interval(secs => $4)`, [me.name, me.host, me.id, staleSeconds]);
  await client.query(
    `INSERT INTO gatehouse_instances (id, name, host, pid, peer_address, version, config_hash, started_at, heartbeat_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
     ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()`,
    [me.id, me.name, me.host, me.pid, me.peerAddress, me.version, me.configHash, me.startedAt],
  );
}

/** `revocationSeq`: the last revocation this instance has read, so `cluster status` shows who lags. */
export async function heartbeat(client: ClientBase, me: MemberIdentity, revocationSeq: number): Promise<void> {
  const result = await client.query('UPDATE gatehouse_instances SET heartbeat_at = now(), revocation_seq = $2 WHERE id = $1', [me.id, revocationSeq]);
  // Removed meanwhile (an operator, or a run of the same name cleaning up): register again.
  if (result.rowCount === 0) throw new Error('this instance is no longer registered');
}

/** Removes this process's row at a clean shutdown. */
export async function leave(client: ClientBase, me: MemberIdentity): Promise<void> {
  await client.query('DELETE FROM gatehouse_instances WHERE id = $1', [me.id]);
}

export async function listMembers(client: ClientBase): Promise<MemberRow[]> {
  const result = await client.query<{ id: string; name: string; host: string; pid: number; peer_address: string | null; version: string; config_hash: string; started_at: Date; heartbeat_at: Date; revocation_seq: string; age: number }>(
    `SELECT id, name, host, pid, peer_address, version, config_hash, started_at, heartbeat_at, revocation_seq,
            extract(epoch FROM now() - heartbeat_at)::float8 AS age
       FROM gatehouse_instances ORDER BY name, host, started_at`,
  );
  return result.rows.map((r) => ({ id: r.id, name: r.name, host: r.host, pid: r.pid, peerAddress: r.peer_address, version: r.version, configHash: r.config_hash, startedAt: r.started_at.toISOString(), heartbeatAt: r.heartbeat_at.toISOString(), revocationSeq: Number(r.revocation_seq), ageSeconds: r.age }));
}
