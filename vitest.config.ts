// Test runner settings: real processes, sockets and TLS make tests slower than unit tests,
// so timeouts are generous and two files run at once: many wait on timers and peers, not the CPU.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
