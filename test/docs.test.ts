// The repository speaks only of itself: every document a file cites exists in the checkout, and the
// invariants code cites by number are the ones docs/ARCHITECTURE.md states.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
const files = execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' })
  .split('\n')
  .filter((f) => f && /\.(ts|js|cpp|h|c|cu|cuh|hbs|md|sh|txt|json)$/.test(f) && existsSync(join(ROOT, f)));
const text = new Map(files.map((f) => [f, readFileSync(join(ROOT, f), 'utf8')]));

describe('documentation citations', () => {
  it('cite only documents inside the repository', () => {
    const outside = [...text].filter(([f, t]) => f !== 'test/docs.test.ts' && /\.\.\/shared|\bDESIGN\.md\b/.test(t)).map(([f]) => f);
    expect(outside).toEqual([]);
    const missing = [...text].flatMap(([f, t]) => [...t.matchAll(/\bdocs\/[\w-]+\.md\b/g)].map((m) => m[0]).filter((d) => !existsSync(join(ROOT, d))).map((d) => `${f}: ${d}`));
    expect(missing).toEqual([]);
  });

  it('cite invariants that docs/ARCHITECTURE.md states', () => {
    const arch = text.get('docs/ARCHITECTURE.md')!;
    const stated = new Set([...arch.matchAll(/^(\d)\. \*\*/gm)].map((m) => Number(m[1])));
    expect([...stated].sort()).toEqual([1, 2, 3, 4]);
    const cited = [...text].flatMap(([f, t]) => [...t.matchAll(/ARCHITECTURE\.md, invariant (\d+)/g)].map((m) => ({ f, n: Number(m[1]) })));
    expect(cited.length).toBeGreaterThan(5);
    expect(cited.filter(({ n }) => !stated.has(n))).toEqual([]);
  });
});

describe('committed benchmark results', () => {
  it('record no absolute path of the machine they ran on', () => {
    const results = files.filter((f) => /^bench\/results\/.*\.json$/.test(f));
    expect(results.length).toBeGreaterThan(0);
    for (const f of results) expect(readFileSync(join(ROOT, f), 'utf8'), f).not.toMatch(/"\/(work|home|tmp|root|usr)\//);
  });
});
