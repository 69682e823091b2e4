// Bad specs: every problem is reported (not just the first), each with a stable code, the span of the
// offending node and a message saying what is accepted. Spans and messages are pinned by snapshots.
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CODES, formatDiagnostic, loadSpec, loadSpecText, type Diagnostic } from '../../codegen/frontend/index.ts';

const FIXTURES = 'test/fixtures/specs';
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

  it('rejects a model object with inconsistent heads and a maxSeq beyond the model', () => {
    const r = inline(
      `${HEADER}export default deploy({ model: { ...models.tiny, numKvHeads: 3 }, target: { attention: causal, kv: full }, draft: { attention: causal, kv: full }, verify: greedy, gamma: 2, shapes: { batch: [1], maxSeq: 512, pageSize: 64 }, dtype: 'fp32', arch: 'cpu' });\n` +
        `export const big = 1;\n`,
    );
    expect(codes(r.diagnostics)).toEqual(['MD1307']);
    expect(r.diagnostics[0]!.message).toContain("'numKvHeads' must divide 'numHeads'");
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
