// Tile classification (codegen/passes/interval.ts). Soundness by brute force: for random visibility
// predicates, rows q, tiles [p0, p1] and params, `must` implies every kv in the tile is visible and
// `!may` implies none is, under the interpreter. Precision: for the stock masks and KV policies the
// classification is exact on non-negative positions (full iff all visible, skip iff none visible).
//
// The pass assumes i32 arithmetic on positions does not overflow (as the mask itself does), so cases
// where any i32 add/sub/mul/neg/abs wraps — in the predicate at some kv of the tile, or in the
// classification — are discarded rather than counted.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as ir from '../../codegen/ir.ts';
import { show, topo, type Node } from '../../codegen/ir.ts';
import { evaluate, type Env } from '../../codegen/interp.ts';
import { OPS, type Value } from '../../codegen/ops.ts';
import { classifyTile, type TileClass } from '../../codegen/passes/interval.ts';
import { fold } from '../../codegen/passes/fold.ts';
import { substitute } from '../../codegen/plan.ts';
import { causal, prefixLM, slidingWindow, streaming, window as windowPolicy } from '../../dsl/presets.ts';
import { exprArb, f32Arb, type Scope } from '../arbitraries.ts';

const q = ir.variable('q', 'i32');
const kv = ir.variable('kv', 'i32');
const len = ir.variable('len', 'i32');
const p = (name: string) => ir.param(name, 'i32');

// ------------------------------------------------------------------------------- the stock predicates

/**
 * The presets of dsl/presets.ts as the front end lowers them (params renamed attn_/kv_ as plan.ts does),
 * each with the executable preset it mirrors; a test checks they agree, so the mirror cannot drift.
 */
interface Stock {
  readonly mask: Node;
  readonly keep: Node;
  /** Realistic parameter values. */
  readonly params: fc.Arbitrary<Record<string, number>>;
  readonly oracle: (q: number, kv: number, params: Record<string, number>) => boolean;
  /**
   * Tiles where `must` may be conservatively false although every kv is visible: an `or` of two ranges is
   * classified range by range, so a tile spanning both (only possible when they touch) is 'partial'.
   */
  readonly spansTwoRanges?: (q: number, p0: number, p1: number, params: Record<string, number>) => boolean;
}

const TRUE = ir.constant(true);
const STOCK: Record<string, Stock> = {
  causal: { mask: ir.le(kv, q), keep: TRUE, params: fc.constant({}), oracle: (qq, k) => causal.mask!(qq, k, {}) },
  sliding_window: {
    mask: ir.and(ir.le(kv, q), ir.lt(ir.sub(q, kv), p('attn_window'))),
    keep: TRUE,
    params: fc.record({ attn_window: fc.integer({ min: 1, max: 600 }) }),
    oracle: (qq, k, ps) => slidingWindow(ps.attn_window).mask!(qq, k, { window: ps.attn_window }),
  },
  prefix_lm: {
    mask: ir.or(ir.lt(kv, p('attn_prefix')), ir.le(kv, q)),
    keep: TRUE,
    params: fc.record({ attn_prefix: fc.integer({ min: 0, max: 600 }) }),
    oracle: (qq, k, ps) => prefixLM(ps.attn_prefix).mask!(qq, k, { prefix: ps.attn_prefix }),
  },
  causal_streaming: {
    mask: ir.le(kv, q),
    keep: ir.or(ir.lt(kv, p('kv_sink')), ir.ge(kv, ir.sub(len, p('kv_window')))),
    params: fc.record({ kv_sink: fc.integer({ min: 0, max: 64 }), kv_window: fc.integer({ min: 1, max: 600 }) }),
    oracle: (qq, k, ps) => {
      const cfg = { sink: ps.kv_sink, window: ps.kv_window };
      return causal.mask!(qq, k, {}) && streaming(cfg).keep(k, qq + 1, cfg);
    },
    spansTwoRanges: (qq, p0, p1, ps) => p0 < ps.kv_sink && p1 >= qq + 1 - ps.kv_window,
  },
  causal_window: {
    mask: ir.le(kv, q),
    keep: ir.ge(kv, ir.sub(len, p('kv_window'))),
    params: fc.record({ kv_window: fc.integer({ min: 1, max: 600 }) }),
    oracle: (qq, k, ps) => causal.mask!(qq, k, {}) && windowPolicy(ps.kv_window).keep(k, qq + 1, { window: ps.kv_window }),
  },
};

/** What plan.ts classifies: mask && keep with len = q + 1 (codegen/abi.ts). */
const visibleOf = (s: { mask: Node; keep: Node }) => ir.and(s.mask, substitute(s.keep, { len: ir.add(q, ir.constant(1)) }));

// ---------------------------------------------------------------------------------------- brute force

/** The interpreter's value of `root`, and whether any i32 add/sub/mul/neg/abs on the way wrapped. */
function evalChecked(root: Node, env: Env): { value: Value; wraps: boolean } {
  const vals = new Map<Node, Value>();
  let wraps = false;
  for (const n of topo(root)) {
    const a = n.args.map((x) => vals.get(x)!);
    const v = n.args.length === 0 ? evaluate(n, env) : OPS[n.op as keyof typeof OPS].eval(a, n.ty);
    vals.set(n, v);
    if (n.ty !== 'i32' || wraps) continue;
    const [x, y] = a as number[];
    const exact = n.op === 'add' ? x + y : n.op === 'sub' ? x - y : n.op === 'mul' ? x * y : n.op === 'neg' ? -x : n.op === 'abs' ? Math.abs(x) : v;
    wraps = exact !== v && !(exact === 0 && v === 0);
  }
  return { value: vals.get(root)!, wraps };
}

interface Case {
  readonly visible: Node;
  readonly q: number;
  readonly p0: number;
  readonly p1: number;
  readonly params: Record<string, number>;
}

interface Verdict {
  /** Visibility of each kv in the tile; undefined when the case leaves the pass's no-overflow domain. */
  readonly seen?: boolean[];
  readonly must: boolean;
  readonly may: boolean;
}

function judge(c: Case, tile: { must: Node; may: Node }): Verdict {
  const tileEnv: Env = { vars: { q: c.q, p0: c.p0, p1: c.p1 }, params: c.params };
  const must = evalChecked(tile.must, tileEnv);
  const may = evalChecked(tile.may, tileEnv);
  const verdict = { must: must.value as boolean, may: may.value as boolean };
  if (must.wraps || may.wraps) return verdict;
  const seen: boolean[] = [];
  for (let k = c.p0; k <= c.p1; k++) {
    const r = evalChecked(c.visible, { vars: { q: c.q, kv: k }, params: c.params });
    if (r.wraps) return verdict;
    seen.push(r.value as boolean);
  }
  return { seen, ...verdict };
}

const describeCase = (c: Case, tile: { must: Node; may: Node }, v: Verdict) =>
  `visible ${show(c.visible)}\n  q=${c.q} tile [${c.p0}, ${c.p1}] params ${JSON.stringify(c.params)}\n  must ${show(tile.must)} = ${v.must}\n  may ${show(tile.may)} = ${v.may}\n  visible per kv: ${v.seen?.map(Number).join('')}`;

// ------------------------------------------------------------------------------------------ soundness

const RANDOM_SCOPE: Scope = { vars: { q: 'i32', kv: 'i32' }, params: { a: 'i32', b: 'i32', c: 'f32' } };
const smallInt = fc.oneof(fc.integer({ min: -3, max: 3 }), fc.integer({ min: -40, max: 700 }));
const smallF32 = fc.oneof(f32Arb, smallInt);
const randomVisible = exprArb('bool', RANDOM_SCOPE, { depth: 3, i32Consts: smallInt, f32Consts: smallF32 });
const pa = p('a');
const pc = ir.param('c', 'f32');
// One bound rule at a time: cmp(op(X, Y), Z) with X a kv-dependent term that changes sign inside many
// tiles, Y and Z leaves (f32 leaves include ±inf, NaN and -0), so each rule meets the points (0, sign
// changes, infinities) where a monotonicity argument can break.
const specialF32 = fc.constantFrom(Infinity, -Infinity, NaN, 0, -0);
const leafArb: fc.Arbitrary<Node> = fc.oneof(
  smallInt.map((x) => ir.constant(x, 'i32')),
  fc.oneof(smallF32, specialF32).map((x) => ir.constant(x, 'f32')),
  fc.constantFrom(pa, pc, q),
);
const kvTerm = fc
  .tuple(fc.constantFrom(kv, ir.sub(kv, pa), ir.sub(q, kv), ir.sub(kv, q), ir.mul(kv, ir.constant(-3))), fc.boolean())
  .map(([x, f]) => (f ? ir.toF32(x) : x));
type Build = (x: Node, y: Node) => Node;
const RULE_OPS: Build[] = [
  (x) => x, (x) => ir.neg(x), (x) => ir.abs(x), (x) => ir.floor(ir.toF32(x)), (x) => ir.ceil(ir.toF32(x)),
  (x) => ir.trunc(ir.toF32(x)), (x) => ir.sqrt(x), (x) => ir.exp(x), (x) => ir.log(x), (x) => ir.tanh(x),
  ir.add, ir.sub, (x, y) => ir.sub(y, x), ir.mul, ir.div, (x, y) => ir.div(y, x), ir.mod, ir.min, ir.max, ir.pow,
  (x, y) => ir.select(ir.lt(kv, pa), x, y), (x, y) => ir.select(ir.lt(kv, pa), y, x),
];
const CMPS: Build[] = [ir.lt, ir.le, ir.gt, ir.ge, ir.eq, ir.ne];
const kvVisible: fc.Arbitrary<Node> = fc
  .tuple(kvTerm, fc.constantFrom(...RULE_OPS), leafArb, fc.constantFrom(...CMPS), leafArb, fc.boolean(), fc.boolean())
  .map(([x, op, y, cmp, z, swap, negate]) => {
    const t = op(x, y);
    const c = swap ? cmp(z, t) : cmp(t, z);
    return negate ? ir.not(c) : c;
  });
const pb = p('b');
/** The stock shapes over random params, alone or combined with a random predicate. */
const stockShape: fc.Arbitrary<Node> = fc
  .tuple(
    fc.constantFrom(
      ir.le(kv, q),
      ir.and(ir.le(kv, q), ir.lt(ir.sub(q, kv), pa)),
      ir.or(ir.lt(kv, pa), ir.le(kv, q)),
      visibleOf({ mask: ir.le(kv, q), keep: ir.or(ir.lt(kv, pa), ir.ge(kv, ir.sub(len, pb))) }),
      visibleOf({ mask: TRUE, keep: ir.ge(kv, ir.sub(len, pb)) }),
    ),
    fc.option(fc.tuple(fc.constantFrom(ir.and, ir.or), randomVisible), { nil: undefined }),
    fc.boolean(),
  )
  .map(([s, extra, negate]) => {
    const v = extra ? extra[0](s, extra[1]) : s;
    return negate ? ir.not(v) : v;
  });

/** A value near the tile (so q - kv, kv - a and the like change sign inside it), or anywhere. */
const nearTile = (p0: number, width: number) =>
  fc.oneof(fc.integer({ min: p0 - 3, max: p0 + width + 3 }), fc.integer({ min: -40, max: 700 }), fc.integer({ min: -3, max: 3 }));

const caseArb: fc.Arbitrary<Case> = fc
  .record({
    visible: fc.oneof(randomVisible, kvVisible, stockShape),
    p0: fc.oneof(fc.integer({ min: -40, max: 700 }), fc.integer({ min: -8, max: 8 })),
    width: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 40 })),
  })
  .chain(({ visible, p0, width }) =>
    fc.record({
      visible: fc.constant(visible),
      q: nearTile(p0, width),
      p0: fc.constant(p0),
      p1: fc.constant(p0 + width),
      params: fc.record({ a: nearTile(p0, width), b: smallInt, c: fc.oneof(smallF32, specialF32) }),
    }),
  );

describe('classifyTile soundness', () => {
  it('must => every kv in the tile is visible; !may => none is (random predicates, raw and folded)', () => {
    let judged = 0;
    fc.assert(
      fc.property(caseArb, (c) => {
        for (const tile of [classifyTile(c.visible), classifyTile(fold(c.visible))]) {
          const v = judge(c, tile);
          if (!v.seen) continue;
          judged++;
          if (v.must && !v.seen.every(Boolean)) throw new Error(`must is true but some kv is hidden:\n${describeCase(c, tile, v)}`);
          if (!v.may && v.seen.some(Boolean)) throw new Error(`may is false but some kv is visible:\n${describeCase(c, tile, v)}`);
          // Folding the classification (plan.ts does) must not change it.
          const f = judge(c, { must: fold(tile.must), may: fold(tile.may) });
          if (f.must !== v.must || f.may !== v.may) throw new Error(`folding changed the classification:\n${describeCase(c, tile, v)}`);
        }
      }),
      { numRuns: 3000 },
    );
    expect(judged).toBeGreaterThan(3000);
  }, 60_000);

  it('every bound rule is sound against zeros, infinities and NaN (exhaustive over small sets)', () => {
    // cmp(op(X, Y), Z) for every rule op and both operand orders, Y and Z special constants, tiles around,
    // after and before the row; X = q - kv changes sign inside the first tile, as an i32, an f32, an f32
    // whose bounds overflow to ±inf without any NaN, and an f32 with unknown bounds that may be NaN (log).
    const d = ir.toF32(ir.sub(q, kv));
    const xs = [ir.sub(q, kv), d, ir.mul(d, ir.constant(2e38)), ir.log(d)];
    const ys = [2, -2, -0, Infinity, -Infinity, NaN].map((v) => ir.constant(v, 'f32')).concat([ir.constant(2), pa]);
    const zs = [0, 3, Infinity, -Infinity, NaN].map((v) => ir.constant(v, 'f32')).concat([ir.constant(0)]);
    const tiles = [[7, 13], [11, 16], [2, 5]];
    const failures: string[] = [];
    let judged = 0;
    for (const x of xs)
      for (const op of RULE_OPS)
        for (const y of ys)
          for (const cmp of CMPS)
            for (const z of zs)
              for (const swap of [false, true]) {
                const t = op(x, y);
                const visible = swap ? cmp(z, t) : cmp(t, z);
                const tile = classifyTile(visible);
                for (const [p0, p1] of tiles) {
                  const c: Case = { visible, q: 10, p0, p1, params: { a: 9, b: 0, c: 0 } };
                  const v = judge(c, tile);
                  if (!v.seen) continue;
                  judged++;
                  if ((v.must && !v.seen.every(Boolean)) || (!v.may && v.seen.some(Boolean))) failures.push(describeCase(c, tile, v));
                }
              }
    expect(judged).toBeGreaterThan(10_000);
    expect(failures.slice(0, 5)).toEqual([]);
  }, 60_000);

  it('rejects a non-boolean predicate', () => {
    expect(() => classifyTile(ir.sub(q, kv))).toThrow(/boolean/);
  });
});

// ------------------------------------------------------------------------------------------ precision

describe('classifyTile precision on the stock masks and policies', () => {
  for (const [name, stock] of Object.entries(STOCK)) {
    const visible = visibleOf(stock);

    it(`${name}: the IR mirror agrees with the executable preset`, () => {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 0, max: 2000 }), stock.params, (qq, k, ps) => {
          expect(evaluate(visible, { vars: { q: qq, kv: k }, params: ps })).toBe(stock.oracle(qq, k, ps));
        }),
      );
    });

    it(`${name}: skip iff no kv is visible, full iff all are (non-negative positions)`, () => {
      const tiles = [classifyTile(visible), classifyTile(fold(visible))];
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: 2000 }),
          fc.integer({ min: 0, max: 2000 }),
          fc.integer({ min: 0, max: 127 }),
          stock.params,
          (qq, p0, width, ps) => {
            const c: Case = { visible, q: qq, p0, p1: p0 + width, params: ps };
            for (const tile of tiles) {
              const v = judge(c, tile);
              expect(v.seen).toBeDefined();
              const all = v.seen!.every(Boolean);
              const mustOk = v.must === all || (all && !v.must && stock.spansTwoRanges?.(qq, p0, p0 + width, ps));
              if (!mustOk || v.may !== v.seen!.some(Boolean)) throw new Error(`imprecise:\n${describeCase(c, tile, v)}`);
            }
          },
        ),
        { numRuns: 1500 },
      );
    });
  }

  it('streaming(sink 4, window 508): sink and window tiles are full, tiles between are skipped', () => {
    const visible = fold(visibleOf(STOCK.causal_streaming));
    const tile = classifyTile(visible);
    const params = { kv_sink: 4, kv_window: 508 };
    const classOf = (qq: number, p0: number, p1: number) => {
      const env: Env = { vars: { q: qq, p0, p1 }, params };
      return evaluate(tile.must, env) ? 'full' : evaluate(tile.may, env) ? 'partial' : 'skip';
    };
    // Row q = 2000 sees kv in [0, 4) and [1493, 2000].
    expect(classOf(2000, 0, 3)).toBe('full');
    expect(classOf(2000, 1, 2)).toBe('full');
    expect(classOf(2000, 0, 63)).toBe('partial');
    expect(classOf(2000, 4, 63)).toBe('skip');
    expect(classOf(2000, 64, 127)).toBe('skip');
    expect(classOf(2000, 1429, 1492)).toBe('skip');
    expect(classOf(2000, 1472, 1535)).toBe('partial');
    expect(classOf(2000, 1493, 1556)).toBe('full');
    expect(classOf(2000, 1536, 1599)).toBe('full');
    expect(classOf(2000, 1984, 2000)).toBe('full');
    expect(classOf(2000, 1984, 2047)).toBe('partial');
    expect(classOf(2000, 2048, 2111)).toBe('skip');
    // Short sequences: sink and window overlap, everything up to q is visible.
    expect(classOf(100, 0, 63)).toBe('full');
    expect(classOf(100, 64, 127)).toBe('partial');
  });
});

// ------------------------------------------------------------------------------ i32 products, large values

describe('classifyTile on i32 products whose bound corners leave i32', () => {
  // X and Y switch together at kv = a, so the corner (X's K, Y's M) of their bounds is never a value pair:
  // its product may wrap although every element's product fits (29 * 65537 does, 65537 * 65537 does not).
  // Bound arithmetic must not wrap there, nor round a bound past a value (2^24 + 1 is not an f32).
  // Only cases where the predicate itself wraps are discarded; the classification is judged as it is.
  const BIG = [65537, 46341, -46341, 1 << 20, (1 << 24) + 1, -(1 << 24) - 1, (1 << 30) + 7, 3];
  const ZS = [0, 1_000_000, -1_000_000, (1 << 24) + 2, 29 * 65537, 4_000_000_000];

  function judgeStrict(visible: Node, tile: TileClass, qq: number, p0: number, p1: number, params: Record<string, number>) {
    const env: Env = { vars: { q: qq, p0, p1 }, params };
    const must = evaluate(tile.must, env) as boolean;
    const may = evaluate(tile.may, env) as boolean;
    const seen: boolean[] = [];
    for (let k = p0; k <= p1; k++) {
      const r = evalChecked(visible, { vars: { q: qq, kv: k }, params });
      if (r.wraps) return undefined;
      seen.push(r.value as boolean);
    }
    return (must && !seen.every(Boolean)) || (!may && seen.some(Boolean)) ? `${show(visible)} q=${qq} [${p0}, ${p1}] ${JSON.stringify(params)} must=${must} may=${may} seen=${seen.map(Number).join('')}` : '';
  }

  it('is sound for every combination of large factors, thresholds and tiles (exhaustive)', () => {
    const pk = p('k');
    const pm = p('m');
    const sw = ir.lt(kv, pa);
    const products = [
      ir.mul(ir.select(sw, kv, pk), ir.select(sw, pm, ir.constant(1))),
      ir.mul(ir.select(sw, pm, ir.constant(1)), ir.select(sw, kv, pk)),
      ir.add(ir.mul(ir.select(sw, kv, pk), ir.select(sw, pm, ir.constant(1))), ir.sub(q, kv)),
      ir.neg(ir.mul(ir.select(sw, ir.sub(q, kv), pk), ir.select(sw, pm, ir.constant(-1)))),
      ir.mul(ir.mul(ir.select(sw, kv, pk), ir.select(sw, pm, ir.constant(1))), ir.select(sw, ir.constant(1), ir.constant(2))),
    ];
    const failures: string[] = [];
    let judged = 0;
    for (const x of products)
      for (const z of ZS)
        for (const cmp of CMPS)
          for (const asF32 of [false, true]) {
            const lhs = asF32 ? ir.toF32(x) : x;
            const rhs = asF32 ? ir.constant(z, 'f32') : ir.constant(z | 0);
            const visible = cmp(lhs, rhs);
            const tile = classifyTile(visible);
            for (const k of BIG)
              for (const m of BIG)
                for (const [p0, p1, a] of [[0, 40, 30], [26, 34, 30], [0, 15, 16], [5, 9, 0]]) {
                  const r = judgeStrict(visible, tile, 35, p0, p1, { a, k, m });
                  if (r === undefined) continue;
                  judged++;
                  if (r) failures.push(r);
                }
          }
    expect(judged).toBeGreaterThan(10_000);
    expect(failures.slice(0, 5)).toEqual([]);
  }, 120_000);

  it('keeps exact, small bounds as they were: a product of small factors still decides tiles', () => {
    // kv * 3 < 300 over [0, 63] is full, over [100, 163] skipped.
    const tile = classifyTile(ir.lt(ir.mul(kv, ir.constant(3)), ir.constant(300)));
    const at = (p0: number, p1: number) => [evaluate(tile.must, { vars: { q: 0, p0, p1 } }), evaluate(tile.may, { vars: { q: 0, p0, p1 } })];
    expect(at(0, 63)).toEqual([true, true]);
    expect(at(100, 163)).toEqual([false, false]);
    expect(at(90, 110)).toEqual([false, true]);
  });
});
