// generated/ is the committed output of the compiler ("process replay"): regenerating it in memory must
// give the same files, byte for byte, with none missing and none extra.
import { describe, expect, it } from 'vitest';
import { GENERATED_DIR, generatedTree } from '../cli/generated-modules.ts';
import { readTree } from '../codegen/module.ts';

const HOW = 'generated/ is out of date: run `npm run regen` and review the diff (`git diff generated/`) before committing';

describe('generated/', () => {
  it('is exactly what the compiler generates now', async () => {
    const expected = await generatedTree();
    const actual = readTree(GENERATED_DIR);
    const want = new Map(expected.map((f) => [f.path, f.contents]));
    const have = new Map(actual.map((f) => [f.path, f.contents]));
    const missing = [...want.keys()].filter((p) => !have.has(p));
    const extra = [...have.keys()].filter((p) => !want.has(p));
    const differing = [...want.keys()].filter((p) => have.has(p) && have.get(p) !== want.get(p));
    const report = [
      ...missing.map((p) => `missing: generated/${p}`),
      ...extra.map((p) => `extra: generated/${p}`),
      ...differing.map((p) => `differs: generated/${p}${firstDifference(want.get(p)!, have.get(p)!)}`),
    ];
    expect(report, `${HOW}\n${report.join('\n')}`).toEqual([]);
  });

  it('holds both committed modules, each with a manifest', async () => {
    const manifests = (await generatedTree()).filter((f) => f.path.endsWith('/manifest.json')).map((f) => JSON.parse(f.contents));
    expect(manifests.map((m) => [m.model.name, m.arch, m.source])).toEqual([
      ['llama-3.1-8b', 'sm_90', '<default>'],
      ['tiny', 'cpu', '<default>'],
    ]);
  });
});

function firstDifference(want: string, have: string): string {
  const a = want.split('\n');
  const b = have.split('\n');
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) return ` (first at line ${i + 1}: expected ${JSON.stringify(a[i] ?? '<end of file>')}, found ${JSON.stringify(b[i] ?? '<end of file>')})`;
  }
  return '';
}
