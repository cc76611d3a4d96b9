// The per-source bound on tls.reject records: a burst is cut off after ten records in ten seconds,
// and the next record after the window says how many were left out.
import { afterEach, expect, it, vi } from 'vitest';
import { createRejectLimiter } from '../src/listener/rejectLimiter.ts';

afterEach(() => vi.useRealTimers());

it('writes ten records per source per window, then counts the rest and reports them once', () => {
  vi.useFakeTimers({ now: 1_000_000 });
  const limiter = createRejectLimiter();
  const burst = Array.from({ length: 25 }, () => limiter.admit('203.0.113.7'));
  expect(burst.filter((d) => d.write)).toHaveLength(10);
  expect(limiter.admit('198.51.100.1').write).toBe(true);
  vi.advanceTimersByTime(10_000);
  expect(limiter.admit('203.0.113.7')).toEqual({ write: true, suppressed: 15 });
  expect(limiter.admit('203.0.113.7')).toEqual({ write: true, suppressed: 0 });
});
