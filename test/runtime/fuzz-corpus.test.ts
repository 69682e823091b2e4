// The fuzz targets of runtime/fuzz/ in the normal (g++) test build: each is linked with replay_main.cpp and
// run over its committed corpus (test/fuzz/corpus/<target>/: valid seeds and the inputs earlier fuzzing
// found), so a regression on any of them fails `npm test` even where no clang is at hand. The time-boxed
// libFuzzer run itself is `npm run fuzz` (scripts/fuzz.ts), which CI runs after the tests.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BUILD, buildRuntime, REPO, runProgram } from './build-runtime.ts';

const cmakeTargets = (): string[] => {
  const m = readFileSync(join(REPO, 'runtime/CMakeLists.txt'), 'utf8').match(/set\(MD_FUZZ_TARGETS ([^)]*)\)/);
  return m ? m[1].trim().split(/\s+/) : [];
};
const corpus = (t: string) => join(REPO, 'test/fuzz/corpus', t);

beforeAll(() => {
  buildRuntime();
}, 600_000);

describe('fuzz targets', () => {
  it('cover every parser of user files, each with a source, a seed corpus and a place in scripts/fuzz.ts', () => {
    const targets = cmakeTargets();
    expect(targets.sort()).toEqual(['config', 'index', 'manifest', 'safetensors']);
    const script = readFileSync(join(REPO, 'scripts/fuzz.ts'), 'utf8');
    expect(script).toContain(`const TARGETS = [${cmakeTargets().map((t) => `'${t}'`).join(', ')}] as const;`);
    for (const t of targets) {
      expect(readdirSync(join(REPO, 'runtime/fuzz'))).toContain(`fuzz_${t}.cpp`);
      expect(readdirSync(corpus(t)).length).toBeGreaterThan(0);
    }
  });

  it.each(cmakeTargets())('%s: every committed input runs to a result or a one-line error', (t) => {
    const files = readdirSync(corpus(t)).map((f) => join(corpus(t), f));
    const r = runProgram(join(BUILD, `fuzz_${t}`), files);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`replayed ${files.length} input(s)`);
  });
});
