// The property tests' seeds (test/support/seeds.ts): a fresh seed per process unless MAGICDEC_SEED fixes
// it, and a failure that says which seed it came from and how to replay it.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { FRESH_SEED, REGRESSION_SEED, forEachSeed, seedsFor } from '../support/seeds.ts';
import { REPO } from './build-runtime.ts';

/** FRESH_SEED as a new process sees it, with `env` added. */
function freshSeedOf(env: Record<string, string>): string {
  const code = "import('./test/support/seeds.ts').then((m) => process.stdout.write(String(m.FRESH_SEED)))";
  return execFileSync(process.execPath, ['--import', 'tsx', '-e', code], { cwd: REPO, env: { ...process.env, MAGICDEC_SEED: '', ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('property seeds', () => {
  it('draws a fresh seed in every process, and MAGICDEC_SEED replays one', () => {
    const drawn = [freshSeedOf({}), freshSeedOf({})];
    expect(drawn[0]).toMatch(/^\d+$/);
    expect(drawn[0]).not.toBe(drawn[1]);
    expect(freshSeedOf({ MAGICDEC_SEED: '123456' })).toBe('123456');
    expect(() => freshSeedOf({ MAGICDEC_SEED: 'abc' })).toThrow(/MAGICDEC_SEED must be an integer seed, got 'abc'/);
  });

  it('runs the regression seed, then the fresh one, and names the seed of a failure', async () => {
    expect(seedsFor(3)).toEqual([
      { kind: 'regression', seed: REGRESSION_SEED + 3 },
      { kind: 'fresh', seed: (FRESH_SEED + 3) | 0 },
    ]);
    const ran: [number, number][] = [];
    await forEachSeed(3, { regression: 5, fresh: 2 }, async (seed, runs) => {
      ran.push([seed, runs]);
    });
    expect(ran).toEqual([
      [REGRESSION_SEED + 3, 5],
      [(FRESH_SEED + 3) | 0, 2],
    ]);
    const failing = forEachSeed(3, { regression: 1, fresh: 1 }, async (_seed, _runs, kind) => {
      if (kind === 'fresh') throw new Error('counterexample');
    });
    await expect(failing).rejects.toThrow(`[fresh seed: replay with MAGICDEC_SEED=${FRESH_SEED}] counterexample`);
  });
});
