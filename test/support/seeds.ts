// Seeds of the runtime property tests. Each property runs twice: from its fixed regression seed (cases that
// once caught a bug stay caught, and every run sees them) and from a fresh seed drawn once per test process,
// so that each run also tries cases no earlier run has. A failure names the seed it came from and how to
// replay it: MAGICDEC_SEED=<n> fixes the fresh seed, MD_RUNTIME_PROPERTY_SEED moves the regression seeds.
// (Module shapes keep their own fixed seed, MD_RUNTIME_MODULE_SEED: a new shape is a new g++ compile.)
import { randomInt } from 'node:crypto';

function envSeed(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text === '') return undefined;
  if (!/^-?\d+$/.test(text.trim())) throw new Error(`${name} must be an integer seed, got '${text}'`);
  return Number(text) | 0;
}

/** Base of the regression seeds; each property adds its own offset. */
export const REGRESSION_SEED = envSeed('MD_RUNTIME_PROPERTY_SEED') ?? 7177;
/** This process's fresh seed (MAGICDEC_SEED replays one). */
export const FRESH_SEED = envSeed('MAGICDEC_SEED') ?? randomInt(1, 2 ** 31 - 1);

export type SeedKind = 'regression' | 'fresh';

export interface Seeded {
  readonly kind: SeedKind;
  /** The seed to give fast-check: the base plus the property's offset. */
  readonly seed: number;
}

/** The property's two seeds, regression first. */
export function seedsFor(offset: number): readonly Seeded[] {
  return [
    { kind: 'regression', seed: (REGRESSION_SEED + offset) | 0 },
    { kind: 'fresh', seed: (FRESH_SEED + offset) | 0 },
  ];
}

/** How to replay a seed of this kind, for a failure message. */
export function replayHint(kind: SeedKind): string {
  return kind === 'fresh'
    ? `fresh seed: replay with MAGICDEC_SEED=${FRESH_SEED}`
    : `regression seed: MD_RUNTIME_PROPERTY_SEED=${REGRESSION_SEED} (the default unless set)`;
}

/**
 * Runs `check` (typically one fc.assert) for the regression seed with `runs.regression` runs, then for the
 * fresh seed with `runs.fresh`; a failure is rethrown with the seed and the way to replay it in front.
 */
export async function forEachSeed(
  offset: number,
  runs: { readonly regression: number; readonly fresh: number },
  check: (seed: number, numRuns: number, kind: SeedKind) => Promise<void>,
): Promise<void> {
  for (const { kind, seed } of seedsFor(offset)) {
    const numRuns = runs[kind];
    if (numRuns <= 0) continue;
    try {
      await check(seed, numRuns, kind);
    } catch (e) {
      const err = e as Error;
      err.message = `[${replayHint(kind)}] ${err.message}`;
      throw err;
    }
  }
}
