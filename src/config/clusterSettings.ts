// The `cluster:` block of routes.yaml: several instances sharing state (membership, revocations) in one
// PostgreSQL database, and what an instance does when it has not heard from that database for a while.
import { z } from 'zod';
import type { ClientConfig } from 'pg';

export const clusterSettingsSchema = z
  .object({
    /**
     * Connection URL (`postgres://user@host:port/db?sslmode=verify-full`); absent: libpq's environment
     * (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, ~/.pgpass) of the gateway's process.
     */
    postgres: z.string().regex(/^postgres(ql)?:\/\/\S*$/, 'a postgres:// or postgresql:// URL').optional(),
    /** This instance's name, unique in the cluster (e.g. the host name): membership and audit name it. */
    instance: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'letters, digits, _ . -, at most 63 characters'),
    /**
     * Where this instance takes requests relayed by the others (`host:port`, mTLS HTTP/2), registered for them
     * in the database. Needs peerCert and peerKey; without it, this instance relays to others but carries for none.
     */
    peerListen: z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port').optional(),
    /**
     * This instance's certificate (client and server) from the site CA (tls.clientCa), with the instance role:
     * a URI name `gatehouse-instance:<instance>`. The peer channel takes only certificates with that role.
     */
    peerCert: z.string().min(1).optional(),
    peerKey: z.string().min(1).optional(),
    /** A publisher's registration in the database lasts this long unless renewed (renewed at least 3 times per lease). */
    publisherLeaseSeconds: z.number().min(2).max(300).optional(),
    /** Not heard from the database for this long: the shared revocations are stale (see whenStale). */
    staleSeconds: z.number().min(1).max(3600).default(10),
    /** When stale: `deny` refuses new authorizations (503) until the database answers again; `serve` keeps serving with the revocations last heard. */
    whenStale: z.enum(['deny', 'serve']).default('deny'),
  })
  .strict()
  .refine((c) => (c.peerCert === undefined) === (c.peerKey === undefined), { message: 'peerCert and peerKey go together', path: ['peerCert'] });

export type ClusterSettings = z.infer<typeof clusterSettingsSchema>;

/** How long a publisher's lease lasts when the config does not say. */
export const DEFAULT_PUBLISHER_LEASE_SECONDS = 6;

/** How long one statement may take before the connection is given up and opened again. */
const QUERY_TIMEOUT_MS = 5000;

/** pg's client options for these settings: the URL when given (else libpq's environment), bounded waits, keep-alive. */
export function clientOptions(settings: Pick<ClusterSettings, 'postgres' | 'instance'>, timeoutMs = QUERY_TIMEOUT_MS): ClientConfig {
  return {
    ...(settings.postgres !== undefined && { connectionString: settings.postgres }),
    application_name: `gatehouse ${settings.instance}`,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: 1000,
  };
}

/** The URL without its password, for messages and audit records. */
export function shownDatabase(settings: Pick<ClusterSettings, 'postgres'>): string {
  if (settings.postgres === undefined) return `libpq environment (PGHOST=${process.env.PGHOST ?? ''})`;
  try {
    const url = new URL(settings.postgres);
    if (url.password !== '') url.password = '***';
    return url.toString();
  } catch {
    return 'postgres URL (unparsable)';
  }
}
