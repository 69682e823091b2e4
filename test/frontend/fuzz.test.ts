// Fuzzing the front end: generated kernel expressions in the accepted subset lower without errors and
// agree with JavaScript on small integer inputs (where JS numbers and i32 coincide); token soup anywhere
// in a spec yields diagnostics, never an exception or an internal error.
import * as path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatDiagnostic, loadSpecText, lowerFunctionSource } from '../../codegen/frontend/index.ts';
import { evaluate } from '../../codegen/interp.ts';

const FIXTURES = 'test/fixtures/specs';

// Integer expressions stay far inside i32 for the depths and inputs used, so JS == i32 semantics.
const intExpr: fc.Memo<string> = fc.memo((d) => {
  const leaf = fc.oneof(fc.constantFrom('q', 'kv', 'p.a', 'p.b', 'K'), fc.integer({ min: 0, max: 9 }).map(String));
  if (d <= 0) return leaf;
  const sub = intExpr(d - 1);
  const lit = fc.integer({ min: 1, max: 9 }).map(String);
  return fc.oneof(
    leaf,
    fc.tuple(sub, fc.constantFrom('+', '-'), sub).map(([a, op, b]) => `(${a} ${op} ${b})`),
    fc.tuple(sub, lit).map(([a, k]) => `(${a} * ${k})`),
    fc.tuple(sub, lit).map(([a, k]) => `(${a} % ${k})`),
    sub.map((a) => `-(${a})`),
    fc.tuple(fc.constantFrom('min', 'max'), sub, sub).map(([f, a, b]) => `Math.${f}(${a}, ${b})`),
    sub.map((a) => `Math.abs(${a})`),
    fc.tuple(boolExpr(d - 1), sub, sub).map(([c, a, b]) => `(${c} ? ${a} : ${b})`),
  );
});

const boolExpr: fc.Memo<string> = fc.memo((d) => {
  const leaf = fc.constantFrom('true', 'false', 'FLAG');
  if (d <= 0) return leaf;
  const sub = boolExpr(d - 1);
  const num = intExpr(d - 1);
  return fc.oneof(
    fc.tuple(num, fc.constantFrom('<', '<=', '>', '>=', '===', '!==', '==', '!='), num).map(([a, op, b]) => `(${a} ${op} ${b})`),
    fc.tuple(sub, fc.constantFrom('&&', '||'), sub).map(([a, op, b]) => `(${a} ${op} ${b})`),
    fc.tuple(sub, fc.constantFrom('===', '!=='), sub).map(([a, op, b]) => `(${a} ${op} ${b})`),
    sub.map((a) => `!${a}`),
    fc.tuple(sub, sub, sub).map(([c, a, b]) => `(${c} ? ${a} : ${b})`),
  );
});

/** A mask with closure constants K and FLAG, written as an immediately-called function (evaluated statically). */
const maskSource = (body: string, k: number, flag: boolean) => `((K: number, FLAG: boolean) => (q: number, kv: number, p: { a: number; b: number }) => ${body})(${k}, ${flag})`;

describe('generated expressions in the accepted subset', () => {
  it('lower without diagnostics and agree with JavaScript', () => {
    const small = fc.integer({ min: -50, max: 600 });
    fc.assert(
      fc.property(boolExpr(3), fc.integer({ min: -20, max: 20 }), fc.boolean(), fc.array(fc.tuple(small, small, small, small), { minLength: 8, maxLength: 8 }), (body, k, flag, inputs) => {
        const src = maskSource(body, k, flag);
        const r = lowerFunctionSource('mask', src, { params: { a: 7, b: -3 } });
        expect(r.diagnostics.map(formatDiagnostic)).toEqual([]);
        const js = new Function(`return ${src.replace(/: number|: boolean|: \{ a: number; b: number \}/g, '')};`)() as (q: number, kv: number, p: object) => boolean;
        for (const [q, kv, a, b] of inputs) {
          expect(evaluate(r.node!, { vars: { q, kv }, params: { a, b } })).toBe(js(q, kv, { a, b }));
        }
      }),
      { numRuns: 120 },
    );
  });

  it('block bodies with consts and if-return chains agree with JavaScript', () => {
    const small = fc.integer({ min: -50, max: 600 });
    const stmt = fc.tuple(boolExpr(2), boolExpr(2));
    fc.assert(
      fc.property(fc.array(stmt, { minLength: 0, maxLength: 3 }), intExpr(2), boolExpr(2), fc.array(fc.tuple(small, small), { minLength: 6, maxLength: 6 }), (ifs, t, last, inputs) => {
        const body = `{ const t = ${t}; ${ifs.map(([c, v]) => `if (${c.replace(/K/g, 't')}) return ${v};`).join(' ')} return ${last}; }`;
        const src = maskSource(body, 3, true);
        const r = lowerFunctionSource('mask', src, { params: { a: 2, b: 5 } });
        expect(r.diagnostics.map(formatDiagnostic)).toEqual([]);
        const js = new Function(`return ${src.replace(/: number|: boolean|: \{ a: number; b: number \}/g, '')};`)() as (q: number, kv: number, p: object) => boolean;
        for (const [q, kv] of inputs) expect(evaluate(r.node!, { vars: { q, kv }, params: { a: 2, b: 5 } })).toBe(js(q, kv, { a: 2, b: 5 }));
      }),
      { numRuns: 60 },
    );
  });

  it('const params are substituted, runtime params stay params', () => {
    const c = lowerFunctionSource('keep', '(kv, len, p) => kv >= len - p.w', { params: { w: 16 }, const: true });
    const r = lowerFunctionSource('keep', '(kv, len, p) => kv >= len - p.w', { params: { w: 16 } });
    expect(c.node && evaluate(c.node, { vars: { kv: 3, len: 20 } })).toBe(false);
    expect(c.node?.args[1]?.args[1]).toMatchObject({ op: 'const', value: 16 });
    expect(r.node && evaluate(r.node, { vars: { kv: 3, len: 20 }, params: { w: 16 } })).toBe(false);
    expect(r.node && evaluate(r.node, { vars: { kv: 3, len: 20 }, params: { w: 18 } })).toBe(true);
  });
});

// ------------------------------------------------------------------------------------------ token soup

const TOKENS = [
  'q', 'kv', 'p', 'p.window', 'x', 'Math', '.', 'min', 'Math.max', 'Math.random', '(', ')', '{', '}', '[', ']', ';', ',', ':', '?', '?.',
  '+', '-', '*', '/', '%', '**', '!', '&&', '||', '??', '&', '|', '^', '~', '<<', '<', '<=', '>', '>=', '===', '!==', '=', '+=', '++', '=>',
  'return', 'if', 'else', 'const', 'let', 'var', 'for', 'while', 'new', 'function', 'class', 'this', 'typeof', 'void', 'as', 'any', 'satisfies',
  'true', 'false', 'null', 'undefined', 'Infinity', 'NaN', '0', '1', '2.5', '1e400', '0x10', '-0', "'s'", '`t${q}`', '"', '`', '/re/', '@',
  'attention', 'deploy', 'causal', 'models', '...', '\n', '//', '/*', '*/',
];
const soup = fc.array(fc.constantFrom(...TOKENS), { minLength: 1, maxLength: 24 }).map((ts) => ts.join(' '));

function spec(maskBody: string, extra = ''): string {
  return (
    `import { attention, deploy, causal, full, greedy, models } from 'magicdec';\n${extra}\n` +
    `const junk = attention({ name: 'junk', params: { window: 8 }, mask: (q, kv, p) => ${maskBody} });\n` +
    `export default deploy({ model: models.tiny, target: { attention: junk, kv: full }, draft: { attention: causal, kv: full }, verify: greedy, gamma: 2, shapes: { batch: [1], maxSeq: 512, pageSize: 64 }, dtype: 'fp32', arch: 'cpu' });\n`
  );
}

function noCrash(text: string) {
  const r = loadSpecText(text, path.join(FIXTURES, '__soup__.ts'));
  expect(r.diagnostics.filter((d) => d.code === 'MD1004').map(formatDiagnostic)).toEqual([]);
  for (const d of r.diagnostics) {
    expect(d.code).toMatch(/^MD1\d{3}$/);
    expect(d.line).toBeGreaterThanOrEqual(1);
    expect(d.col).toBeGreaterThanOrEqual(1);
  }
  // Either a deployment or a reason why not.
  expect(r.deployment !== undefined || r.diagnostics.length > 0).toBe(true);
}

describe('token soup', () => {
  it('in a mask expression body only yields diagnostics', () => {
    fc.assert(fc.property(soup, (s) => noCrash(spec(s))), { numRuns: 60 });
  });

  it('in a mask block body only yields diagnostics', () => {
    fc.assert(fc.property(soup, (s) => noCrash(spec(`{ ${s} }`))), { numRuns: 60 });
  });

  it('at the top level of a spec only yields diagnostics', () => {
    fc.assert(fc.property(soup, soup, (a, b) => noCrash(spec('kv <= q', `${a}\n${b}`))), { numRuns: 40 });
  });
});
