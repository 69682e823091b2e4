// Fuzzing the front end: generated kernel expressions in the accepted subset lower without errors and
// agree with JavaScript on small integer inputs (where JS numbers and i32 coincide); token soup anywhere
// in a spec yields diagnostics, never an exception or an internal error.
import * as path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatDiagnostic, loadSpecText, lowerFunctionSource } from '../../codegen/frontend/index.ts';
import { MAX_NESTING } from '../../codegen/frontend/size.ts';
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

/** Statements of a block body: returns, if-returns, if and if/else with nested lists that may fall through. */
type Stmt =
  | { k: 'ret'; v: string }
  | { k: 'ifret'; c: string; v: string }
  | { k: 'if'; c: string; a: Stmt[] }
  | { k: 'ifelse'; c: string; a: Stmt[]; b: Stmt[] };

const alwaysReturns = (xs: Stmt[]): boolean => xs.some((x) => x.k === 'ret' || (x.k === 'ifelse' && alwaysReturns(x.a) && alwaysReturns(x.b)));

const stmtList: fc.Memo<Stmt[]> = fc.memo((d) => {
  const c = boolExpr(1);
  const leaf = fc.oneof(c.map((v): Stmt => ({ k: 'ret', v })), fc.tuple(c, c).map(([cc, v]): Stmt => ({ k: 'ifret', c: cc, v })));
  const stmt: fc.Arbitrary<Stmt> =
    d <= 0
      ? leaf
      : fc.oneof(
          leaf,
          fc.tuple(c, stmtList(d - 1)).map(([cc, a]): Stmt => ({ k: 'if', c: cc, a })),
          fc.tuple(c, stmtList(d - 1), stmtList(d - 1)).map(([cc, a, b]): Stmt => ({ k: 'ifelse', c: cc, a, b })),
        );
  // Cut each list after its first statement that always returns: no unreachable code (not in the subset).
  return fc.array(stmt, { minLength: 1, maxLength: 3 }).map((xs) => {
    const i = xs.findIndex((x) => alwaysReturns([x]));
    return i >= 0 ? xs.slice(0, i + 1) : xs;
  });
});

function renderStmts(xs: Stmt[]): string {
  return xs
    .map((x) => {
      switch (x.k) {
        case 'ret':
          return `return ${x.v};`;
        case 'ifret':
          return `if (${x.c}) return ${x.v};`;
        case 'if':
          return `if (${x.c}) { ${renderStmts(x.a)} }`;
        case 'ifelse':
          return `if (${x.c}) { ${renderStmts(x.a)} } else ${x.b.length === 1 && x.b[0]!.k !== 'ret' ? renderStmts(x.b) : `{ ${renderStmts(x.b)} }`}`;
      }
    })
    .join(' ');
}

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

  it('block bodies with consts, nested if/else and fall-through agree with JavaScript', () => {
    const small = fc.integer({ min: -50, max: 600 });
    fc.assert(
      fc.property(intExpr(2), stmtList(2), boolExpr(2), fc.array(fc.tuple(small, small), { minLength: 6, maxLength: 6 }), (t, inner, last, inputs) => {
        const tail = alwaysReturns(inner) ? '' : ` return ${last.replace(/K/g, 't')};`;
        const body = `{ const t = ${t}; ${renderStmts(inner)}${tail} }`;
        const src = maskSource(body, 3, true);
        const r = lowerFunctionSource('mask', src, { params: { a: 2, b: 5 } });
        expect(r.diagnostics.map(formatDiagnostic)).toEqual([]);
        const js = new Function(`return ${src.replace(/: number|: boolean|: \{ a: number; b: number \}/g, '')};`)() as (q: number, kv: number, p: object) => boolean;
        for (const [q, kv] of inputs) expect(evaluate(r.node!, { vars: { q, kv }, params: { a: 2, b: 5 } })).toBe(js(q, kv, { a: 2, b: 5 }));
      }),
      { numRuns: 80 },
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

// ------------------------------------------------------------------------------------------ deep and long

/** Shapes of hostile expressions: long operator chains, deep brackets, deep conditionals either way. */
const hostile = fc.oneof(
  fc.tuple(fc.integer({ min: 1, max: 6000 }), fc.constantFrom('+', '-', '*', '&&', '||', '<')).map(([n, op]) => `(${Array(n).fill(op === '&&' || op === '||' ? 'q > 0' : 'q').join(` ${op} `)})${op === '&&' || op === '||' || op === '<' ? '' : ' > 0'}`),
  fc.integer({ min: 1, max: 20000 }).map((n) => `${'('.repeat(n)}kv <= q${')'.repeat(n)}`),
  fc.integer({ min: 1, max: 6000 }).map((n) => `${'q > 1 ? '.repeat(n)}true${' : false'.repeat(n)}`),
  fc.integer({ min: 1, max: 6000 }).map((n) => `${'q > 1 ? false : '.repeat(n)}true`),
  fc.integer({ min: 1, max: 3000 }).map((n) => `${'Math.max(q, '.repeat(n)}kv${')'.repeat(n)} >= 0`),
  fc.integer({ min: 1, max: 3000 }).map((n) => `${'!'.repeat(n)}(kv <= q)`),
);

const SHAPES: ((n: number) => string)[] = [
  (n) => `(${Array(n).fill('q').join(' < ')})`,
  (n) => `(${Array(n).fill('q').join(' + ')}) > 0`,
  (n) => `${'('.repeat(n)}kv <= q${')'.repeat(n)}`,
  (n) => `${'q > 1 ? '.repeat(n)}true${' : false'.repeat(n)}`,
  (n) => `${'q > 1 ? false : '.repeat(n)}true`,
  (n) => `${'Math.max(q, '.repeat(n)}kv${')'.repeat(n)} >= 0`,
  (n) => `${'!'.repeat(n)}(kv <= q)`,
  (n) => `${'- '.repeat(n)}q <= kv`,
  (n) => `${'!~'.repeat(n)}q`,
];

describe('deep and long expressions', () => {
  it.each(SHAPES.map((f, i) => [i, f] as const))('shape %i at and around the limits: MD1005 with a span, never a stack overflow', (_i, shape) => {
    for (const n of [1, 60, 100, 120, 127, 128, 129, 140, 200, 255, 256, 257, 1000, 6000]) {
      const r = loadSpecText(spec(shape(n)), path.join(FIXTURES, '__deep__.ts'));
      const bad = r.diagnostics.filter((d) => d.code === 'MD1004' || (d.code === 'MD1005' && !/limit of \d+/.test(d.message)));
      expect(bad.map(formatDiagnostic), `n = ${n}`).toEqual([]);
    }
  });


  it('compile when small and give MD1005 with a span when too deep or too long, never an internal error', () => {
    fc.assert(
      fc.property(hostile, (body) => {
        const text = spec(body);
        const r = loadSpecText(text, path.join(FIXTURES, '__deep__.ts'));
        expect(r.diagnostics.filter((d) => d.code === 'MD1004').map(formatDiagnostic)).toEqual([]);
        const deep = r.diagnostics.filter((d) => d.code === 'MD1005');
        for (const d of deep) {
          expect(d.message).toMatch(/limit of \d+/);
          expect(d.line).toBe(3);  // the mask's line: a span, not the whole file
          expect(formatDiagnostic(d).split('\n').every((l) => l.length < 200)).toBe(true);
        }
        // Small ones are ordinary specs (other diagnostics only from the junk spec's own rules). A prefix
        // operator is one level per character ('!' x 119 then '(kv <= q)', 128 characters, is too deep), so
        // only a body shorter than the nesting limit is certainly within it.
        if (body.length < MAX_NESTING) expect(deep).toEqual([]);
      }),
      { numRuns: 25 },
    );
  });

  it('refuses a spec over the size limit before parsing it', () => {
    const r = loadSpecText(spec('kv <= q', `// ${'x'.repeat(1 << 20)}`), path.join(FIXTURES, '__big__.ts'));
    expect(r.diagnostics.map((d) => [d.code, d.message])).toEqual([['MD1005', expect.stringMatching(/bytes, over the limit of 1048576$/)]]);
  });
});
