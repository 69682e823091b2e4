// The folding pass: every rewrite must be an identity of the interpreter's semantics for all values
// (edge values included), fire where it claims to, and leave the inexact look-alikes alone.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as ir from '../../codegen/ir.ts';
import { show, topo, type Node } from '../../codegen/ir.ts';
import { evaluate } from '../../codegen/interp.ts';
import { fold } from '../../codegen/passes/fold.ts';
import { envArb, exprArb, TRANSCENDENTAL_OPS, type Scope } from '../arbitraries.ts';
import { sameValue } from '../harness/expr/bits.ts';

const SCOPE: Scope = { vars: { q: 'i32', kv: 'i32', s: 'f32', u: 'f32', flag: 'bool' }, params: { w: 'i32', cap: 'f32' } };
const small = { depth: 2 };
const i32 = exprArb('i32', SCOPE, small);
const f32e = exprArb('f32', SCOPE, small);
const bool = exprArb('bool', SCOPE, small);
const env = envArb(SCOPE);
const c = (x: number | boolean, ty?: ir.Ty) => ir.constant(x, ty);
const s = ir.variable('s', 'f32');
const q = ir.variable('q', 'i32');
const flag = ir.variable('flag', 'bool');

/** fold(e) has e's value on every environment (NaN == NaN, -0 != +0). */
function assertPreserves(arb: fc.Arbitrary<Node>, runs = 300) {
  fc.assert(
    fc.property(arb, env, (e, en) => {
      const f = fold(e);
      const a = evaluate(e, en);
      const b = evaluate(f, en);
      if (!sameValue(a, b, e.ty)) throw new Error(`${show(e)} folded to ${show(f)}: ${String(a)} became ${String(b)}`);
    }),
    { numRuns: runs },
  );
}

// Shapes that each rule (or its inexact look-alike) matches, over random operands.
const SHAPES: Record<string, fc.Arbitrary<Node>> = {
  'x && true / true && x': fc.tuple(bool, fc.boolean()).map(([x, l]) => (l ? ir.and(c(true), x) : ir.and(x, c(true)))),
  'x && false': bool.map((x) => ir.and(x, c(false))),
  'x || false / x || true': fc.tuple(bool, fc.boolean()).map(([x, v]) => ir.or(c(v), x)),
  'x && x, x || x': fc.tuple(bool, fc.boolean()).map(([x, a]) => (a ? ir.and(x, x) : ir.or(x, x))),
  '!!x': bool.map((x) => ir.not(ir.not(x))),
  'select const': fc.tuple(fc.boolean(), f32e, i32).map(([v, x, y]) => ir.select(c(v), x, y)),
  'select(c, x, x)': fc.tuple(bool, f32e).map(([k, x]) => ir.select(k, x, x)),
  'select(!c, x, y)': fc.tuple(bool, i32, i32).map(([k, x, y]) => ir.select(ir.not(k), x, y)),
  'select(c, true, false) and swapped': fc.tuple(bool, fc.boolean()).map(([k, v]) => ir.select(k, c(v), c(!v))),
  'b == const, b != const': fc.tuple(bool, fc.boolean(), fc.boolean()).map(([x, v, e]) => (e ? ir.eq(x, c(v)) : ir.ne(c(v), x))),
  'x cmp x (i32, f32, bool)': fc.tuple(fc.oneof(i32, f32e, bool), fc.constantFrom(ir.lt, ir.le, ir.gt, ir.ge, ir.eq, ir.ne)).map(([x, op]) =>
    x.ty === 'bool' ? (op === ir.eq || op === ir.ne ? op(x, x) : ir.eq(x, x)) : op(x, x),
  ),
  'x + 0 (i32), x + ±0 (f32)': fc.tuple(fc.oneof(i32, f32e), fc.constantFrom(0, -0)).map(([x, z]) =>
    x.ty === 'i32' ? ir.add(c(0), x) : ir.add(x, c(z, 'f32')),
  ),
  'x - 0, x - x': fc.tuple(fc.oneof(i32, f32e), fc.constantFrom(0, -0), fc.boolean()).map(([x, z, self]) =>
    self ? ir.sub(x, x) : ir.sub(x, c(z, x.ty)),
  ),
  'x * 1, x * 0': fc.tuple(fc.oneof(i32, f32e), fc.constantFrom(0, -0, 1, -1)).map(([x, k]) => ir.mul(c(k, x.ty), x)),
  'x / 1': f32e.map((x) => ir.div(x, c(1, 'f32'))),
  '-(-x)': fc.oneof(i32, f32e).map((x) => ir.neg(ir.neg(x))),
  'abs(abs x), abs(-x)': fc.tuple(fc.oneof(i32, f32e), fc.boolean()).map(([x, a]) => ir.abs(a ? ir.abs(x) : ir.neg(x))),
  'min(x, x), max(x, x)': fc.tuple(fc.oneof(i32, f32e), fc.boolean()).map(([x, a]) => (a ? ir.min(x, x) : ir.max(x, x))),
  'rounding of rounding': fc.tuple(f32e, fc.constantFrom(ir.floor, ir.ceil, ir.trunc), fc.constantFrom(ir.floor, ir.ceil, ir.trunc)).map(([x, f, g]) => f(g(x))),
};

describe('fold', () => {
  for (const [name, arb] of Object.entries(SHAPES)) it(`is exact on ${name}`, () => assertPreserves(arb));

  it('is exact on random expressions of every type', () => {
    assertPreserves(fc.oneof(exprArb('bool', SCOPE), exprArb('i32', SCOPE), exprArb('f32', SCOPE)), 500);
  });

  it('is idempotent and keeps the type', () => {
    fc.assert(
      fc.property(fc.oneof(bool, i32, f32e, exprArb('f32', SCOPE)), (e) => {
        const f = fold(e);
        expect(f.ty).toBe(e.ty);
        expect(fold(f)).toBe(f);
      }),
    );
  });

  it('folds every closed expression without transcendental ops to a constant', () => {
    const closed = fc.oneof(
      exprArb('bool', { vars: {} }, { transcendental: false }),
      exprArb('i32', { vars: {} }, { transcendental: false }),
      exprArb('f32', { vars: {} }, { transcendental: false }),
    );
    fc.assert(
      fc.property(closed, (e) => {
        const f = fold(e);
        expect(f.op).toBe('const');
        expect(sameValue(f.value as number, evaluate(e, { vars: {} }) as number, e.ty)).toBe(true);
      }),
    );
  });

  it('never folds a transcendental op, even on constants', () => {
    for (const e of [ir.exp(c(1, 'f32')), ir.log(c(2, 'f32')), ir.tanh(c(0.5)), ir.pow(c(2, 'f32'), c(0.5))]) {
      const f = fold(ir.add(e, c(1, 'f32')));
      expect(topo(f).some((n) => TRANSCENDENTAL_OPS.has(n.op))).toBe(true);
      expect(f).toBe(ir.add(e, c(1, 'f32')));
    }
  });

  it('applies the simplifications it claims', () => {
    const cases: [Node, Node][] = [
      [ir.and(flag, c(true)), flag],
      [ir.and(c(false), flag), c(false)],
      [ir.or(flag, c(false)), flag],
      [ir.or(c(true), flag), c(true)],
      [ir.not(ir.not(flag)), flag],
      [ir.select(c(true), q, c(3)), q],
      [ir.select(c(false), q, c(3)), c(3)],
      [ir.select(flag, s, s), s],
      [ir.select(ir.not(flag), q, c(3)), ir.select(flag, c(3), q)],
      [ir.select(flag, c(false), c(true)), ir.not(flag)],
      [ir.eq(flag, c(false)), ir.not(flag)],
      [ir.ne(c(false), flag), flag],
      [ir.add(q, c(0)), q],
      [ir.add(c(-0, 'f32'), s), s],
      [ir.sub(q, c(0)), q],
      [ir.sub(s, c(0, 'f32')), s],
      [ir.sub(q, q), c(0)],
      [ir.mul(c(1), q), q],
      [ir.mul(s, c(1, 'f32')), s],
      [ir.mul(q, c(0)), c(0)],
      [ir.div(s, c(1, 'f32')), s],
      [ir.neg(ir.neg(q)), q],
      [ir.abs(ir.neg(s)), ir.abs(s)],
      [ir.lt(s, s), c(false)],
      [ir.le(q, q), c(true)],
      [ir.max(s, s), s],
      [ir.floor(ir.ceil(s)), ir.ceil(s)],
      // Constant subtrees, with the interpreter's semantics: wrapping, x % 0 == 0, NaN, -0.
      [ir.add(c(2147483647), c(1)), c(-2147483648)],
      [ir.mod(q, ir.sub(c(3), c(3))), ir.mod(q, c(0))],
      [ir.mod(c(7), c(0)), c(0)],
      [ir.mul(c(-1, 'f32'), c(0, 'f32')), c(-0, 'f32')],
      [ir.div(c(0, 'f32'), c(0, 'f32')), c(NaN, 'f32')],
      [ir.lt(ir.div(c(1), c(3)), c(0.3333333432674408, 'f32')), c(false)],
      [ir.and(ir.lt(q, ir.add(c(1), c(2))), ir.eq(c(1), c(1))), ir.lt(q, c(3))],
    ];
    for (const [e, want] of cases) expect(show(fold(e)), show(e)).toBe(show(want));
  });

  it('leaves the inexact look-alikes alone', () => {
    // Each would be wrong for some value: -0 + 0 = +0; NaN * 0 = NaN; inf - inf = NaN; NaN != NaN; NaN <= NaN is false.
    for (const e of [ir.add(s, c(0, 'f32')), ir.mul(s, c(0, 'f32')), ir.sub(s, s), ir.eq(s, s), ir.le(s, s), ir.ge(s, s)])
      expect(fold(e), show(e)).toBe(e);
  });
});
