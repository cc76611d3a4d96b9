// One-time sign-in codes held in the cluster database, so a code issued by one instance works once on any
// (no sticky balancing): single use is the DELETE ... RETURNING. The row is sealed with a key derived from
// the code, so what the database holds (a session token) is useless to a reader of the database alone.
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import pg from 'pg';
import { HANDOFF_TTL_MS, judgeHandoff, type Handoff, type HandoffStore } from '../portal/handoffCodes.ts';
import { clientOptions, type ClusterSettings } from '../config/clusterSettings.ts';

/** A sign-in waits for the database this long at most, then fails closed (sign in again). */
const HANDOFF_DB_TIMEOUT_MS = 2000;
const SWEEP_MS = 60_000;

const idOf = (code: string) => createHash('sha256').update(`gatehouse handoff id\0${code}`).digest('hex');
const keyOf = (code: string) => Buffer.from(hkdfSync('sha256', code, '', 'gatehouse handoff key v1', 32));

function seal(code: string, id: string, handoff: Handoff): Buffer {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', keyOf(code), iv).setAAD(Buffer.from(id));
  const body = Buffer.concat([cipher.update(JSON.stringify(handoff), 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]);
}

/** The hand-off, or undefined when the row was not sealed with this code's key (a forged or damaged row). */
function unseal(code: string, id: string, sealed: Buffer): Handoff | undefined {
  try {
    const decipher = createDecipheriv('aes-256-gcm', keyOf(code), sealed.subarray(0, 12)).setAAD(Buffer.from(id));
    decipher.setAuthTag(sealed.subarray(12, 28));
    return JSON.parse(Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]).toString('utf8')) as Handoff;
  } catch {
    return undefined;
  }
}

const unavailable = (error: unknown) => ({ ok: false as const, reason: `sign-in codes unavailable: cluster database: ${error instanceof Error ? error.message : String(error)}` });

export function databaseHandoffStore(settings: ClusterSettings): HandoffStore & { close(): Promise<void> } {
  const pool = new pg.Pool({ ...clientOptions(settings, HANDOFF_DB_TIMEOUT_MS), max: 4, idleTimeoutMillis: 30_000 });
  // An idle connection that breaks is replaced by the pool; the error must not end the process.
  pool.on('error', () => undefined);
  const sweep = setInterval(() => void pool.query('DELETE FROM gatehouse_handoffs WHERE expires_at < now()').catch(() => undefined), SWEEP_MS);
  sweep.unref();
  return {
    async issue(handoff) {
      const code = randomBytes(32).toString('base64url');
      const id = idOf(code);
      try {
        // The database's clock decides expiry for every instance alike.
        await pool.query('INSERT INTO gatehouse_handoffs (id, sealed, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))', [id, seal(code, id, handoff), (handoff.ttlMs ?? HANDOFF_TTL_MS) / 1000]);
        return { ok: true, code };
      } catch (error) {
        return unavailable(error);
      }
    },
    async take(code, fingerprint, host) {
      const id = idOf(code);
      try {
        // Gone whatever the outcome: of two instances racing on one code, exactly one gets the row.
        const result = await pool.query<{ sealed: Buffer; expired: boolean }>('DELETE FROM gatehouse_handoffs WHERE id = $1 RETURNING sealed, expires_at <= now() AS expired', [id]);
        const row = result.rows[0];
        const handoff = row && unseal(code, id, row.sealed);
        return judgeHandoff(row && handoff && { handoff, expired: row.expired }, fingerprint, host);
      } catch (error) {
        return unavailable(error);
      }
    },
    async close() {
      clearInterval(sweep);
      await pool.end().catch(() => undefined);
    },
  };
}
