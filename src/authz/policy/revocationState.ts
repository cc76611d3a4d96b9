// The current set of revoked token ids, re-read when the list file changes (directory watch, since
// editors replace files) or on demand (SIGHUP). A list that cannot be read makes every request fail closed.
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { readRevocationList } from '../../token/revocationFile.ts';

/** `source`: set by a feed other than the file (e.g. `cluster database`), with the ids it added. */
export type ReloadResult = { ok: true; count: number; source?: string; added?: number } | { ok: false; reason: string };

export type RevocationStatus =
  /** No list configured: nothing is revoked. */
  | { kind: 'none' }
  | { kind: 'loaded'; ids: ReadonlySet<string> }
  /** Configured but unreadable or malformed (at start or on the last reload). */
  | { kind: 'unavailable'; reason: string };

export interface RevocationState {
  status(): RevocationStatus;
  /** Re-reads the list now; reloads run one at a time, in order. */
  reload(): Promise<ReloadResult>;
  close(): void;
}

export interface RevocationOptions {
  /** Debounce for file-change events, so a burst of writes causes one read. */
  debounceMs?: number;
  /** Told about every reload, including the ones the watcher starts. */
  onReload?: (result: ReloadResult) => void;
}

/** A state for "no revocation list configured". */
export function noRevocations(): RevocationState {
  const none: RevocationStatus = { kind: 'none' };
  return { status: () => none, reload: async () => ({ ok: true, count: 0 }), close: () => {} };
}

/** Loads `file` now and keeps following it. */
export function watchRevocationList(file: string, options: RevocationOptions = {}): RevocationState {
  const debounceMs = options.debounceMs ?? 100;
  let current: RevocationStatus = { kind: 'unavailable', reason: 'not loaded yet' };
  let queue: Promise<unknown> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  let watcher: FSWatcher | undefined;
  let closed = false;

  const load = (): ReloadResult => {
    const read = readRevocationList(file);
    if (read.ok) {
      current = { kind: 'loaded', ids: read.value };
      return { ok: true, count: read.value.size };
    }
    const reason = `revocation list unavailable: ${read.error.message}`;
    current = { kind: 'unavailable', reason };
    return { ok: false, reason };
  };

  const reload = (): Promise<ReloadResult> => {
    const next = queue.then(() => {
      const result = load();
      options.onReload?.(result);
      return result;
    });
    queue = next.catch(() => undefined);
    return next;
  };

  const schedule = (): void => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      void reload();
    }, debounceMs);
    timer.unref();
  };

  load();
  const base = path.basename(file);
  try {
    watcher = watch(path.dirname(path.resolve(file)), { persistent: false }, (_event, name) => {
      if (name === null || name === base) schedule();
    });
    // The directory went away or cannot be watched any more: read once more (which fails closed
    // if the file is gone); SIGHUP still reloads.
    watcher.on('error', () => {
      watcher?.close();
      watcher = undefined;
      schedule();
    });
  } catch {
    // Unwatchable directory (e.g. it does not exist): the load above already failed closed.
    watcher = undefined;
  }

  return {
    status: () => current,
    reload,
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      watcher?.close();
    },
  };
}
