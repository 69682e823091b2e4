// Test runner settings for `npm test`. Compile-heavy files (g++ / nvcc on generated modules) get a long
// timeout; forks isolate native child processes; two workers match the CI machine's cores.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    // Two workers share two cores, and a test's engines run beside the other worker's: OpenMP threads that
    // spin between kernels (libgomp's default) would take the cores from each other, so the tests' threads sleep.
    env: { OMP_WAIT_POLICY: 'passive' },
    testTimeout: 10 * 60_000,
    hookTimeout: 10 * 60_000,
  },
});
