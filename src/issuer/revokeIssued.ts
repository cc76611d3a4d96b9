// Revoking from the gateway itself (logout, a refreshed token's predecessor): into the cluster's database
// when there is one, else appended to authz.revocationList; then the list in force is re-read at once.
import type { ClusterSettings } from '../config/clusterSettings.ts';
import { appendRevokedIds } from '../token/revocationFile.ts';
import type { RevokeResult } from './issuerService.ts';

export interface RevokeTargets {
  /** The revocation list file (authz.revocationList). */
  file: () => string | undefined;
  /** cluster: present = revocations live in the database (every instance learns them). */
  cluster: () => ClusterSettings | undefined;
  /** Writes to the database (`gatehouse token revoke` does the same). */
  revokeShared: (settings: ClusterSettings, ids: readonly string[]) => Promise<unknown>;
  /** Re-reads the revocations in force, so the id is refused from the next request on (and open tunnels end). */
  reload: () => Promise<unknown>;
}

export function revokeIssued(targets: RevokeTargets): (ids: readonly string[]) => Promise<RevokeResult> {
  return async (ids) => {
    const cluster = targets.cluster();
    try {
      if (cluster !== undefined) {
        await targets.revokeShared(cluster, ids);
        // The instance learns it through LISTEN/NOTIFY like every other; the file, if any, is kept in step.
      }
      const file = targets.file();
      if (file === undefined && cluster === undefined) return { ok: false, reason: 'no revocation list (authz.revocationList) and no cluster: nothing can be revoked' };
      let added: string[] = [...ids];
      if (file !== undefined) {
        const appended = appendRevokedIds(file, ids);
        if (!appended.ok) return { ok: false, reason: appended.error.message };
        added = appended.value;
      }
      await targets.reload();
      return { ok: true, added };
    } catch (err) {
      return { ok: false, reason: `cannot revoke: ${err instanceof Error ? err.message : String(err)}` };
    }
  };
}
