// Test runner settings for `npm test`. Compile-heavy files (g++ / nvcc on generated modules) get a long
// timeout; forks isolate native child processes; two workers match the CI machine's cores.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 10 * 60_000,
    hookTimeout: 10 * 60_000,
  },
});
