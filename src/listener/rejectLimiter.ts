// Bounds the audit records of refused handshakes per source address: anyone who can reach the port
// can fail a handshake, and an unbounded stream of records could fill the disk (then, failing
// closed, the gateway would refuse everyone). The count of what was left out is kept and reported.
import { LRUCache } from 'lru-cache';

const PER_WINDOW = 10;
const WINDOW_MS = 10_000;

interface Window {
  start: number;
  written: number;
  suppressed: number;
}

export interface RejectLimiter {
  /** Whether to write a record for this source now, and how many were left out before it. */
  admit(sourceIp: string): { write: boolean; suppressed: number };
}

export function createRejectLimiter(): RejectLimiter {
  const windows = new LRUCache<string, Window>({ max: 10_000 });
  return {
    admit(sourceIp) {
      const now = Date.now();
      let w = windows.get(sourceIp);
      if (!w || now - w.start >= WINDOW_MS) {
        const suppressed = w?.suppressed ?? 0;
        w = { start: now, written: 0, suppressed: 0 };
        windows.set(sourceIp, w);
        w.written = 1;
        return { write: true, suppressed };
      }
      if (w.written < PER_WINDOW) {
        w.written += 1;
        return { write: true, suppressed: 0 };
      }
      w.suppressed += 1;
      return { write: false, suppressed: 0 };
    },
  };
}
