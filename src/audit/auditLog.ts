// The audit sink: JSON lines through pino's asynchronous file destination to an append-only file (and optionally stdout).
// It reports its own health so the gateway can refuse traffic it could not account for.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import type { AuditRecord } from './auditRecord.ts';

export interface AuditLog {
  write(record: AuditRecord): void;
  /** False once a write to the file failed: the gateway then denies new traffic (fail closed). */
  readonly healthy: boolean;
  readonly lastError: string | undefined;
  /** Flushes everything written so far to disk. */
  close(): Promise<void>;
}

export function openAuditLog(options: { file: string; stdout?: boolean; onError?: (err: Error) => void }): AuditLog {
  mkdirSync(dirname(options.file), { recursive: true, mode: 0o750 });
  // sync: false keeps the hot path off disk latency; minLength 0 still writes each record promptly,
  // and close() waits for the last byte, so a clean shutdown loses nothing.
  const file = pino.destination({ dest: options.file, sync: false, minLength: 0, mkdir: true, append: true, mode: 0o640 });
  let healthy = true;
  let lastError: string | undefined;
  file.on('error', (err: Error) => {
    if (healthy) options.onError?.(err);
    healthy = false;
    lastError = err.message;
  });
  const echo = options.stdout ? pino.destination({ dest: 1, sync: false }) : undefined;
  return {
    write(record) {
      // Records are plain data we built ourselves, so JSON.stringify is all the serializing they need.
      const line = JSON.stringify({ time: new Date().toISOString(), ...record }) + '\n';
      file.write(line);
      echo?.write(line);
    },
    get healthy() {
      return healthy;
    },
    get lastError() {
      return lastError;
    },
    close() {
      // end() writes what is buffered, in order, after any write already in flight (flushSync
      // could overtake an in-flight write and reorder the last records).
      return new Promise((resolve) => {
        const done = () => resolve();
        file.once('close', done);
        file.once('error', done);
        file.end();
        echo?.end();
        setTimeout(done, 5000).unref();
      });
    },
  };
}
