// The audit log of `serve --processes N`: gateway processes send their records over the cluster IPC
// channel to the primary, the one writer of the hash-chained file (a chain has exactly one writer).
import type { Worker } from 'node:cluster';
import type { AuditLog } from './auditLog.ts';
import type { AuditRecord } from './auditRecord.ts';

/** Messages on the IPC channel between the primary and its gateway processes. */
export type ProcessMessage =
  | { gatehouse: 'audit'; records: AuditRecord[] }
  | { gatehouse: 'audit-health'; healthy: boolean; lastError?: string }
  | { gatehouse: 'ready'; listening: string[] }
  | { gatehouse: 'reload' }
  | { gatehouse: 'stop' };

export function isProcessMessage(value: unknown): value is ProcessMessage {
  return typeof value === 'object' && value !== null && typeof (value as { gatehouse?: unknown }).gatehouse === 'string';
}

/** The channel of a cluster worker (process.send), as a type so the module does not depend on globals. */
export interface ParentChannel {
  send(message: ProcessMessage, callback: (err: Error | null) => void): boolean;
  connected: boolean;
}

/**
 * A gateway process's audit log: records are batched per event-loop turn (one IPC message for all
 * the records a turn wrote, since a message costs far more than a record) and written by the primary,
 * which stamps each with the sender's pid. Health follows the primary's file, so a failing disk still
 * fails every process closed; a lost channel to the primary does too.
 */
export function openIpcAuditLog(channel: ParentChannel): AuditLog & { reopen(): void; setHealth(healthy: boolean, lastError?: string): void } {
  let batch: AuditRecord[] = [];
  let scheduled = false;
  let healthy = true;
  let lastError: string | undefined;
  let inFlight = 0;
  let closed = false;
  let drained: (() => void) | undefined;

  const flush = () => {
    scheduled = false;
    if (batch.length === 0) return;
    if (!channel.connected) {
      healthy = false;
      lastError = 'the channel to the audit writer (the primary process) is closed';
      batch = [];
      return;
    }
    const records = batch;
    batch = [];
    inFlight++;
    channel.send({ gatehouse: 'audit', records }, (err) => {
      inFlight--;
      if (err) {
        healthy = false;
        lastError = `audit records could not be sent to the primary: ${err.message}`;
      }
      if (inFlight === 0) drained?.();
    });
  };

  return {
    write(record) {
      if (closed) return;
      batch.push(record);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    get healthy() {
      return healthy && channel.connected;
    },
    get lastError() {
      return lastError;
    },
    // The primary holds the file: it reopens it (SIGUSR1, SIGHUP) for every process at once.
    reopen() {},
    setHealth(next, error) {
      healthy = next;
      lastError = error;
    },
    close() {
      flush();
      closed = true;
      if (inFlight === 0) return Promise.resolve();
      return new Promise((resolve) => {
        drained = resolve;
        setTimeout(resolve, 5000).unref();
      });
    },
  };
}

/** The primary's side: writes what `worker` sends into `log`, each record stamped with the worker's pid. */
export function writeWorkerRecords(worker: Worker, log: AuditLog): void {
  const pid = worker.process.pid;
  worker.on('message', (message: unknown) => {
    if (!isProcessMessage(message) || message.gatehouse !== 'audit') return;
    for (const record of message.records) log.write(pid === undefined ? record : { ...record, pid });
  });
}
