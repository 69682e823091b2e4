// Bad specs: every problem is reported (not just the first), each with a stable code, the span of the
// offending node and a message saying what is accepted. Spans and messages are pinned by snapshots.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CODES, formatDiagnostic, loadSpec, loadSpecText, type Diagnostic } from '../../codegen/frontend/index.ts';

const FIXTURES = 'test/fixtures/specs';
const REPO = path.resolve(import.meta.dirname, '../..');
const fixture = (name: string) => path.join(FIXTURES, name);
/** A virtual spec next to the fixtures, so 'magicdec' and relative paths resolve the same way. */
const inline = (text: string) => loadSpecText(text, fixture('__inline__.ts'));

const codes = (ds: Diagnostic[]) => ds.map((d) => d.code);
const pinned = (ds: Diagnostic[]) => ds.map(formatDiagnostic).join('\n');

const HEADER = `import { attention, kvPolicy, verifier, deploy, causal, full, greedy, models } from 'magicdec';\n`;
/** A valid deploy around the given draft pass, so each inline case isolates one problem. */
const withDraft = (decls: string, draft: string) =>
  `${HEADER}${decls}\nexport default deploy({ model: models.tiny, target: { attention: causal, kv: full }, draft: ${draft}, verify: greedy, gamma: 2, shapes: { batch: [1], maxSeq: 512, pageSize: 64 }, dtype: 'fp32', arch: 'cpu' });\n`;

describe('bad fixture specs', () => {
  it.each([
    ['bad-lowering.ts', ['MD1412', 'MD1412', 'MD1407', 'MD1404', 'MD1410', 'MD1406', 'MD1401', 'MD1401', 'MD1409']],
    ['bad-deploy.ts', ['MD1201', 'MD1204', 'MD1307', 'MD1301', 'MD1302', 'MD1302', 'MD1304', 'MD1303', 'MD1305', 'MD1306']],
    ['bad-eval.ts', ['MD1102', 'MD1102', 'MD1101']],
    ['bad-model-config.ts', ['MD1307']],
  ])('%s reports all its errors', (name, expected) => {
    const r = loadSpec(fixture(name));
    expect(r.deployment).toBeUndefined();
    expect(codes(r.diagnostics)).toEqual(expected);
    // Each fixture is valid TypeScript: only the front end's own rules are broken.
    expect(codes(r.diagnostics)).not.toContain('MD1000');
    expect(pinned(r.diagnostics)).toMatchSnapshot();
  });

  it('points each diagnostic at the commented line of the fixture', () => {
    const r = loadSpec(fixture('bad-deploy.ts'));
    for (const d of r.diagnostics) expect(d.sourceLine).toContain(d.code === 'MD1302' ? 'batch' : d.code);
  });
});

describe('inline bad specs', () => {
  it('reports TypeScript errors as MD1000 alongside the front end’s own', () => {
    const r = inline(
      withDraft(
        `const w = kvPolicy({ name: 'w', params: { w: 8 }, keep: (kv, len, p, extra: number) => kv >= len - p.nope });`,
        '{ attention: causal, kv: w }',
      ),
    );
    expect(codes(r.diagnostics)).toEqual(['MD1000', 'MD1000', 'MD1000', 'MD1000', 'MD1402', 'MD1405']);
    expect(pinned(r.diagnostics)).toMatchSnapshot();
  });

  it('needs a return on every path', () => {
    const r = inline(withDraft(`const a = attention({ name: 'a', mask: (q, kv) => { if (kv <= q) return true; } });`, '{ attention: a, kv: full }'));
    expect(codes(r.diagnostics)).toEqual(['MD1000', 'MD1409']);
  });

  it('checks return types and the params object', () => {
    const r = inline(
      withDraft(
        `const a = attention({ name: 'a', params: { c: 2 }, mask: (q, kv, p) => (q - kv) as unknown as boolean, score: (s, q, kv, h, p) => (p as unknown as number) + s });`,
        '{ attention: a, kv: full }',
      ),
    );
    expect(codes(r.diagnostics)).toEqual(['MD1408', 'MD1411']);
    expect(r.diagnostics[0]!.message).toBe('a mask function must return a boolean, but this one returns i32');
  });

  it('requires accept and residual for a sample verifier', () => {
    const r = loadSpecText(
      `${HEADER}const v = verifier({ name: 'half', mode: 'sample', accept: (p: number, q: number, u: number) => u * q <= p } as any);\n` +
        `export default deploy({ model: 'tiny', target: { attention: causal, kv: full }, draft: { attention: causal, kv: full }, verify: v, gamma: 2, shapes: { batch: [1], maxSeq: 512, pageSize: 64 }, dtype: 'fp32', arch: 'cpu' });\n`,
      fixture('__inline__.ts'),
    );
    expect(codes(r.diagnostics)).toEqual(['MD1205']);
    expect(r.diagnostics[0]!.message).toContain('needs residual');
  });

  it('compiles exactly the verifier modes the runtime runs; any other mode, or a lossy flag that is not a boolean, is a diagnostic', () => {
    // The runtime's list (runtime/src/engine.cpp refuses a module of any other mode at load).
    const engine = readFileSync(path.join(REPO, 'runtime/src/engine.cpp'), 'utf8');
    const runtimeModes = [...engine.matchAll(/m\.verify_mode != "(\w+)"/g)].map((m) => m[1]).sort();
    expect(runtimeModes).toEqual(['greedy', 'match', 'sample']);
    const spec = (v: string) =>
      `${HEADER}const v = verifier(${v} as any);\n` +
      `export default deploy({ model: 'tiny', target: { attention: causal, kv: full }, draft: { attention: causal, kv: full }, verify: v, gamma: 2, shapes: { batch: [1], maxSeq: 512, pageSize: 64 }, dtype: 'fp32', arch: 'cpu' });\n`;
    const rule = "accept: (p: number, q: number, u: number) => u * q < p, residual: (p: number, q: number) => Math.max(0, p - q)";
    for (const mode of runtimeModes) {
      const r = inline(spec(`{ name: 'v', mode: '${mode}', ${rule} }`));
      expect(r.diagnostics.map(formatDiagnostic), mode).toEqual([]);
      expect(r.deployment!.verify.mode).toBe(mode);
    }
    for (const mode of ['typical', 'beam', 'Greedy']) {
      const r = inline(spec(`{ name: 'v', mode: '${mode}', ${rule} }`));
      expect(r.deployment, mode).toBeUndefined();
      expect(codes(r.diagnostics)).toEqual(['MD1203']);
      expect(r.diagnostics[0]!.message).toBe(`'mode' must be 'greedy', 'match' or 'sample', not '${mode}'`);
    }
    const lossy = inline(spec(`{ name: 'v', mode: 'sample', lossy: 'yes', ${rule} }`));
    expect(codes(lossy.diagnostics)).toEqual(['MD1203']);
  });

  it('rejects a model object with inconsistent heads and a maxSeq beyond the model', () => {
    const r = inline(
      `${HEADER}export default deploy({ model: { ...models.tiny, numKvHeads: 3 }, target: { attention: causal, kv: full }, draft: { attention: causal, kv: full }, verify: greedy, gamma: 2, shapes: { batch: [1], maxSeq: 512, pageSize: 64 }, dtype: 'fp32', arch: 'cpu' });\n` +
        `export const big = 1;\n`,
    );
    expect(codes(r.diagnostics)).toEqual(['MD1307']);
    expect(r.diagnostics[0]!.message).toContain("field 'numKvHeads' (3) must divide numHeads (4)");
    const long = inline(
      `${HEADER}export default deploy({ model: models.tiny, target: { attention: causal, kv: full }, draft: { attention: causal, kv: full }, verify: greedy, gamma: 2, shapes: { batch: [1], maxSeq: 32768, pageSize: 64 }, dtype: 'fp32', arch: 'cpu' });\n`,
    );
    expect(long.diagnostics.map((d) => d.message)).toEqual(["maxSeq (32768) exceeds the model's maxPositionEmbeddings (16384)"]);
  });

  it('shows errors inside a preset at the user call that led there', () => {
    const r = inline(withDraft(`const bad = (cfg: { sink: number; window: number }) => 0;`, `{ attention: causal, kv: streaming({ sink: 'four' as unknown as number, window: 60 }) }`).replace('models }', 'models, streaming }'));
    expect(codes(r.diagnostics)).toEqual(['MD1204']);
    expect(r.diagnostics[0]!.sourceLine).toContain('streaming({ sink:');
    expect(r.diagnostics[0]!.file).toBe(`${FIXTURES}/__inline__.ts`);
  });

  it('reports a missing default export, a non-deploy default, a missing file and recursion', () => {
    expect(codes(inline(`${HEADER}export const x = 1;\n`).diagnostics)).toEqual(['MD1002']);
    expect(codes(inline(`${HEADER}export default causal;\n`).diagnostics)).toEqual(['MD1003']);
    expect(codes(inline(`${HEADER}export default function f() { return 1; }\n`).diagnostics)).toEqual(['MD1003']);
    expect(codes(loadSpec(fixture('does-not-exist.ts')).diagnostics)).toEqual(['MD1001']);
    const loop = inline(`${HEADER}const f = (n: number): number => f(n + 1);\nexport default f(0);\n`);
    expect(codes(loop.diagnostics)).toEqual(['MD1106']);
    const cyc = inline(`${HEADER}const a: number = b;\nconst b: number = a;\nexport default deploy({ gamma: a } as any);\n`);
    expect(codes(cyc.diagnostics)).toContain('MD1106');
  });
});

/** A valid deploy around the given target pass and model, to isolate one problem. */
const withTarget = (decls: string, target: string, model = 'models.tiny', draft = '{ attention: causal, kv: full }') =>
  `${HEADER.replace('models }', 'models, prefixLM, slidingWindow, streaming }')}${decls}\nexport default deploy({ model: ${model}, target: ${target}, draft: ${draft}, verify: greedy, gamma: 2, shapes: { batch: [1], maxSeq: 512, pageSize: 64 }, dtype: 'fp32', arch: 'cpu' });\n`;

describe('the target pass must be causal (MD1308)', () => {
  const message =
    'the target pass must be causal: its mask lets a query see later positions, which verification and chunked prefill would read; use it as the draft, or add kv <= q';

  it.each([
    ['prefix-LM', '', '{ attention: prefixLM(16), kv: full }'],
    ['a mask-less attention', `const bi = attention({ name: 'bi' });`, '{ attention: bi, kv: streaming({ sink: 4, window: 60 }) }'],
    ['a mask that reaches one position ahead', `const ahead = attention({ name: 'ahead', mask: (q, kv) => kv <= q + 1 });`, '{ attention: ahead, kv: full }'],
  ])('reports %s as the target, at the target pass', (_name, decls, target) => {
    const r = inline(withTarget(decls, target));
    expect(r.diagnostics.map((d) => [d.code, d.message])).toEqual([['MD1308', message]]);
    const d = r.diagnostics[0]!;
    expect(d.sourceLine.slice(d.col - 1, d.col - 1 + d.length)).toBe(target);
  });

  it('also on a Mistral model, whose window does not make a mask causal', () => {
    const r = inline(withTarget('', '{ attention: prefixLM(16), kv: full }', "{ ...models.tiny, architecture: 'mistral', slidingWindow: 64 }"));
    expect(r.diagnostics.map((d) => d.code)).toEqual(['MD1308']);
  });

  it('accepts causal targets, and any mask as the draft', () => {
    for (const target of ['{ attention: causal, kv: streaming({ sink: 4, window: 60 }) }', '{ attention: slidingWindow(64), kv: full }']) {
      const r = inline(withTarget('', target, 'models.tiny', '{ attention: prefixLM(16), kv: full }'));
      expect(r.diagnostics.map(formatDiagnostic)).toEqual([]);
    }
    const fixed = inline(withTarget(`const pl = attention({ name: 'pl', params: { prefix: 16 }, mask: (q, kv, p) => (kv < p.prefix || kv <= q) && kv <= q });`, '{ attention: pl, kv: full }'));
    expect(fixed.diagnostics.map(formatDiagnostic)).toEqual([]);
  });
});

describe('limits (codegen/limits.ts)', () => {
  const shapes = (batch: string, maxSeq: number, model = 'models.tiny') =>
    inline(`${HEADER}export default deploy({ model: ${model}, target: { attention: causal, kv: full }, draft: { attention: causal, kv: full }, verify: greedy, gamma: 2, shapes: { batch: ${batch}, maxSeq: ${maxSeq}, pageSize: 64 }, dtype: 'fp32', arch: 'cpu' });\n`);
  const huge = '{ ...models.tiny, maxPositionEmbeddings: 2 ** 23 }';

  it('batch buckets from 1 to 4096', () => {
    expect(shapes('[1, 4096]', 512).diagnostics).toEqual([]);
    const r = shapes('[1, 4097]', 512);
    expect(r.diagnostics.map((d) => [d.code, d.message])).toEqual([['MD1302', 'a batch bucket must be an integer from 1 to 4096, not the number 4097']]);
  });

  it('maxSeq at most 2^22, even for a model that allows more', () => {
    expect(shapes('[1]', 2 ** 22, huge).diagnostics).toEqual([]);
    const r = shapes('[1]', 2 ** 22 + 64, huge);
    expect(r.diagnostics.map((d) => [d.code, d.message])).toEqual([['MD1304', 'maxSeq must be an integer from 1 to 4194304, not 4194368']]);
  });

  it('reports a maxSeq that is both not whole pages and past the model twice', () => {
    expect(shapes('[1]', 20000, 'models.tiny').diagnostics.map((d) => d.message)).toEqual([
      'maxSeq (20000) must be a multiple of pageSize (64)',
      "maxSeq (20000) exceeds the model's maxPositionEmbeddings (16384)",
    ]);
  });

  it('a runtime i32 param within ±2^24, since it travels as a float; const params are free', () => {
    const policy = (value: string, isConst: boolean) =>
      inline(withDraft(`const w = kvPolicy({ name: 'w', params: { window: ${value} }, const: ${isConst}, keep: (kv, len, p) => kv >= len - p.window });`, '{ attention: causal, kv: w }'));
    expect(policy('2 ** 24', false).diagnostics).toEqual([]);
    expect(policy('-(2 ** 24)', false).diagnostics).toEqual([]);
    expect(policy('2 ** 24 + 1', true).diagnostics).toEqual([]);
    expect(policy('2 ** 24 + 0.5', false).diagnostics).toEqual([]); // an f32 param: it is what it is
    for (const bad of ['2 ** 24 + 1', '-(2 ** 24) - 1', '2 ** 31 - 1']) {
      const r = policy(bad, false);
      expect(r.diagnostics.map((d) => d.code)).toEqual(['MD1204']);
      expect(r.diagnostics[0]!.message).toMatch(/^param 'window' = -?\d+ is a runtime i32 beyond ±2\^24 \(16777216\)/);
      expect(r.diagnostics[0]!.message).toContain("make the descriptor 'const: true'");
    }
  });

  it("gamma 1..16 or 'auto'; gammaMax 1..16, and only with 'auto'", () => {
    const withGamma = (fields: string) =>
      inline(`${HEADER}const name: string = 'fast';\nexport default deploy({ model: models.tiny, target: { attention: causal, kv: full }, draft: { attention: causal, kv: full }, verify: greedy, ${fields}, shapes: { batch: [1], maxSeq: 512, pageSize: 64 }, dtype: 'fp32', arch: 'cpu' });\n`);
    const problems = (fields: string) => withGamma(fields).diagnostics.map((d) => [d.code, d.message]);
    for (const ok of ['gamma: 16', "gamma: 'auto'", "gamma: 'auto', gammaMax: 1", "gamma: 'auto', gammaMax: 16"]) expect(problems(ok), ok).toEqual([]);
    expect(problems('gamma: 17')).toEqual([['MD1301', "gamma (tokens drafted per round) must be an integer from 1 to 16 or 'auto', not the number 17"]]);
    expect(problems("gamma: name as 'auto'")).toEqual([['MD1301', "gamma (tokens drafted per round) must be an integer from 1 to 16 or 'auto', not the string 'fast'"]]);
    expect(problems("gamma: 'auto', gammaMax: 0")).toEqual([['MD1301', 'gammaMax (the most tokens a round may draft) must be an integer from 1 to 16, not the number 0']]);
    expect(problems("gamma: 'auto', gammaMax: 2.5")).toEqual([['MD1301', 'gammaMax (the most tokens a round may draft) must be an integer from 1 to 16, not the number 2.5']]);
    expect(problems('gamma: 3, gammaMax: 6')).toEqual([
      ['MD1301', "gammaMax only applies with gamma: 'auto' (the module is compiled for gamma 3); remove it or use gamma: 'auto'"],
    ]);
    expect(withGamma("gamma: 'auto', gammaMax: 17").diagnostics[0]!.sourceLine).toContain('gammaMax: 17');
  });

  it('an odd headDim in a model object', () => {
    const r = inline(`${HEADER}export default deploy({ model: { ...models.tiny, headDim: 33 }, target: { attention: causal, kv: full }, draft: { attention: causal, kv: full }, verify: greedy, gamma: 2, shapes: { batch: [1], maxSeq: 512, pageSize: 64 }, dtype: 'fp32', arch: 'cpu' });\n`);
    expect(r.diagnostics.map((d) => d.code)).toEqual(['MD1307']);
    expect(r.diagnostics[0]!.message).toContain("'headDim' must be even");
  });
});

describe('formatDiagnostic', () => {
  it('prints file:line:col, code, message, the source line and a caret under the span', () => {
    const d: Diagnostic = { code: 'MD1301', message: 'gamma must be 1..16', file: 'spec.ts', line: 3, col: 10, length: 2, sourceLine: '  gamma: 20,' };
    expect(formatDiagnostic(d)).toBe('spec.ts:3:10: error MD1301: gamma must be 1..16\n    gamma: 20,\n           ^^');
  });

  it('documents every code in docs/DSL.md', async () => {
    const { readFileSync } = await import('node:fs');
    const doc = readFileSync('docs/DSL.md', 'utf8');
    for (const code of Object.keys(CODES)) expect(doc, code).toContain(`### ${code}`);
  });
});
