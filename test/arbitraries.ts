// Shared fast-check arbitraries for the IR: random well-typed expressions built through the IR's own
// builders (so typing and i32->f32 promotion are exactly what the front end produces), and random
// environments biased towards the values where semantics differ between platforms.
import fc from 'fast-check';
import * as ir from '../codegen/ir.ts';
import type { Node, Ty } from '../codegen/ir.ts';
import { OPS } from '../codegen/ops.ts';
import type { Env } from '../codegen/interp.ts';

export type NumTy = Exclude<Ty, 'bool'>;

/** What an expression may refer to: variables (any type) and runtime params (i32/f32), by name. */
export interface Scope {
  readonly vars: Readonly<Record<string, Ty>>;
  readonly params?: Readonly<Record<string, NumTy>>;
}

export interface ExprOptions {
  /** Maximum nesting depth of operator nodes (0 = leaves only). Default 4. */
  readonly depth?: number;
  /** Include ops whose backend result may differ from the interpreter by ulps (exp, log, tanh, pow). Default true. */
  readonly transcendental?: boolean;
  /** Values of i32 constants (default i32Arb, which includes INT_MIN/INT_MAX). */
  readonly i32Consts?: fc.Arbitrary<number>;
  /** Values of f32 constants (default f32Arb). */
  readonly f32Consts?: fc.Arbitrary<number>;
}

// ------------------------------------------------------------------------------------------ edge values

export const INT_MIN = -2147483648;
export const INT_MAX = 2147483647;

const f32 = Math.fround;
const bitsToF32 = (u: number) => {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setUint32(0, u >>> 0);
  return dv.getFloat32(0);
};

/** i32 values where wrapping, `% 0`, `INT_MIN % -1`, `abs(INT_MIN)` and f32 conversion rounding show. */
export const I32_EDGES: readonly number[] = [
  0, 1, -1, 2, -2, 3, 7, -7, 64, -64, INT_MIN, INT_MAX, INT_MIN + 1, INT_MAX - 1,
  1 << 24, (1 << 24) + 1, -(1 << 24) - 1, (1 << 30), 65536, 46341, -46341,
];

/** f32 values (on the f32 grid): signed zeros, infinities, NaN, subnormals, the normal range's ends, halves. */
export const F32_EDGES: readonly number[] = [
  0, -0, 1, -1, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 2, 3, 10, -10, 0.1, -0.1,
  NaN, Infinity, -Infinity,
  bitsToF32(0x00000001), bitsToF32(0x80000001), // smallest subnormals
  bitsToF32(0x007fffff), bitsToF32(0x807fffff), // largest subnormals
  bitsToF32(0x00800000), bitsToF32(0x80800000), // smallest normals
  bitsToF32(0x7f7fffff), bitsToF32(0xff7fffff), // ±FLT_MAX
  bitsToF32(0x3f7fffff), bitsToF32(0x3f800001), // just below/above 1
  1e-30, -1e-30, 1e30, -1e30, 16777216, 16777217 - 1, -16777216,
  88.72283935546875, -103.97208404541016, // around expf overflow / subnormal underflow
  2147483648, -2147483648, Math.PI, Math.E,
].map(f32);

export const i32Arb: fc.Arbitrary<number> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...I32_EDGES) },
  { weight: 3, arbitrary: fc.integer({ min: -100, max: 100 }) },
  { weight: 2, arbitrary: fc.integer({ min: INT_MIN, max: INT_MAX }) },
);

/** Any f32 value (as a JS number already on the f32 grid), NaN included. */
export const f32Arb: fc.Arbitrary<number> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...F32_EDGES) },
  { weight: 2, arbitrary: fc.integer({ min: -100, max: 100 }) },
  { weight: 2, arbitrary: fc.float({ min: -100, max: 100, noNaN: true }) },
  { weight: 3, arbitrary: fc.float() }, // every bit pattern class: subnormal, huge, ±0, ±inf, NaN
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }).map(bitsToF32) },
);

export const valueArb = (ty: Ty): fc.Arbitrary<number | boolean> =>
  ty === 'bool' ? fc.boolean() : ty === 'i32' ? i32Arb : f32Arb;

/** Random environments for `scope`: a value for every variable and param. */
export function envArb(scope: Scope): fc.Arbitrary<Env> {
  const vars = fc.record(Object.fromEntries(Object.entries(scope.vars).map(([k, t]) => [k, valueArb(t)])));
  const params = fc.record(
    Object.fromEntries(Object.entries(scope.params ?? {}).map(([k, t]) => [k, valueArb(t) as fc.Arbitrary<number>])),
  );
  return fc.record({ vars, params });
}

// ------------------------------------------------------------------------------------------ expressions

/** Ops whose compiled result may differ from the interpreter (OPS[op].ulps > 0). */
export const TRANSCENDENTAL_OPS: ReadonlySet<string> = new Set(
  Object.entries(OPS).filter(([, d]) => d.ulps > 0).map(([k]) => k),
);

type Gen = (ty: Ty, depth: number) => fc.Arbitrary<Node>;
type Production = (g: Gen, d: number) => fc.Arbitrary<Node>;

const num = (g: Gen, d: number): fc.Arbitrary<Node> => fc.oneof(g('i32', d), g('f32', d));
const bin = (g: Gen, d: number, a: Ty | 'num', b: Ty | 'num', build: (x: Node, y: Node) => Node) =>
  fc.tuple(a === 'num' ? num(g, d) : g(a, d), b === 'num' ? num(g, d) : g(b, d)).map(([x, y]) => build(x, y));
const un = (g: Gen, d: number, a: Ty | 'num', build: (x: Node) => Node) =>
  (a === 'num' ? num(g, d) : g(a, d)).map(build);

/**
 * Productions of each result type. Together they cover every op of the op table (a test checks it):
 * mixed i32/f32 operands exercise the builders' promotions, and `tof32` comes from them.
 */
const PRODUCTIONS: Record<Ty, Record<string, Production>> = {
  bool: {
    lt: (g, d) => bin(g, d, 'num', 'num', ir.lt),
    le: (g, d) => bin(g, d, 'num', 'num', ir.le),
    gt: (g, d) => bin(g, d, 'num', 'num', ir.gt),
    ge: (g, d) => bin(g, d, 'num', 'num', ir.ge),
    eq: (g, d) => fc.oneof(bin(g, d, 'num', 'num', ir.eq), bin(g, d, 'bool', 'bool', ir.eq)),
    ne: (g, d) => fc.oneof(bin(g, d, 'num', 'num', ir.ne), bin(g, d, 'bool', 'bool', ir.ne)),
    and: (g, d) => bin(g, d, 'bool', 'bool', ir.and),
    or: (g, d) => bin(g, d, 'bool', 'bool', ir.or),
    not: (g, d) => un(g, d, 'bool', ir.not),
    select: (g, d) => fc.tuple(g('bool', d), g('bool', d), g('bool', d)).map(([c, x, y]) => ir.select(c, x, y)),
  },
  i32: {
    add: (g, d) => bin(g, d, 'i32', 'i32', ir.add),
    sub: (g, d) => bin(g, d, 'i32', 'i32', ir.sub),
    mul: (g, d) => bin(g, d, 'i32', 'i32', ir.mul),
    mod: (g, d) => bin(g, d, 'i32', 'i32', ir.mod),
    min: (g, d) => bin(g, d, 'i32', 'i32', ir.min),
    max: (g, d) => bin(g, d, 'i32', 'i32', ir.max),
    neg: (g, d) => un(g, d, 'i32', ir.neg),
    abs: (g, d) => un(g, d, 'i32', ir.abs),
    select: (g, d) => fc.tuple(g('bool', d), g('i32', d), g('i32', d)).map(([c, x, y]) => ir.select(c, x, y)),
  },
  f32: {
    add: (g, d) => bin(g, d, 'f32', 'num', ir.add),
    sub: (g, d) => bin(g, d, 'num', 'f32', ir.sub),
    mul: (g, d) => bin(g, d, 'f32', 'num', ir.mul),
    div: (g, d) => bin(g, d, 'num', 'num', ir.div),
    mod: (g, d) => bin(g, d, 'f32', 'num', ir.mod),
    min: (g, d) => bin(g, d, 'num', 'f32', ir.min),
    max: (g, d) => bin(g, d, 'f32', 'num', ir.max),
    neg: (g, d) => un(g, d, 'f32', ir.neg),
    abs: (g, d) => un(g, d, 'f32', ir.abs),
    floor: (g, d) => un(g, d, 'f32', ir.floor),
    ceil: (g, d) => un(g, d, 'f32', ir.ceil),
    trunc: (g, d) => un(g, d, 'f32', ir.trunc),
    sqrt: (g, d) => un(g, d, 'num', ir.sqrt),
    tof32: (g, d) => un(g, d, 'i32', ir.toF32),
    select: (g, d) => fc.tuple(g('bool', d), g('f32', d), num(g, d)).map(([c, x, y]) => ir.select(c, x, y)),
    exp: (g, d) => un(g, d, 'num', ir.exp),
    log: (g, d) => un(g, d, 'num', ir.log),
    tanh: (g, d) => un(g, d, 'num', ir.tanh),
    pow: (g, d) => bin(g, d, 'num', 'num', ir.pow),
  },
};

/** Constants of each type, from the edge lists and small ranges (a few NaN/inf/-0 constants included). */
const constArb = (ty: Ty, opts: ExprOptions): fc.Arbitrary<Node> =>
  ty === 'bool'
    ? fc.boolean().map((b) => ir.constant(b))
    : ty === 'i32'
      ? (opts.i32Consts ?? i32Arb).map((x) => ir.constant(x, 'i32'))
      : (opts.f32Consts ?? f32Arb).map((x) => ir.constant(x, 'f32'));

/**
 * Random well-typed expressions of type `ty` over `scope`. Depth bounds the nesting of operator nodes;
 * leaves are the scope's variables and params of the type, and constants.
 */
export function exprArb(ty: Ty, scope: Scope, opts: ExprOptions = {}): fc.Arbitrary<Node> {
  const maxDepth = opts.depth ?? 4;
  const transcendental = opts.transcendental ?? true;
  const memo = new Map<string, fc.Arbitrary<Node>>();

  const leaf = (t: Ty): fc.Arbitrary<Node> => {
    const names: fc.Arbitrary<Node>[] = [];
    const vars = Object.entries(scope.vars).filter(([, v]) => v === t).map(([k]) => ir.variable(k, t));
    const params = Object.entries(scope.params ?? {}).filter(([, v]) => v === t).map(([k]) => ir.param(k, t));
    if (vars.length + params.length > 0) names.push(fc.constantFrom(...vars, ...params));
    return names.length ? fc.oneof({ weight: 3, arbitrary: names[0] }, { weight: 1, arbitrary: constArb(t, opts) }) : constArb(t, opts);
  };

  const gen: Gen = (t, depth) => {
    const key = `${t}:${depth}`;
    let arb = memo.get(key);
    if (arb) return arb;
    if (depth <= 0) {
      arb = leaf(t);
    } else {
      const prods = Object.entries(PRODUCTIONS[t])
        .filter(([op]) => transcendental || !TRANSCENDENTAL_OPS.has(op))
        .map(([, p]) => p(gen, depth - 1));
      // The root is always an operator (a bare leaf tests nothing); below it, leaves end branches early.
      const ops = fc.oneof(...prods);
      arb = depth === maxDepth ? ops : fc.oneof({ weight: 1, arbitrary: leaf(t) }, { weight: 5, arbitrary: ops });
    }
    memo.set(key, arb);
    return arb;
  };
  return gen(ty, maxDepth);
}

/** Every op the productions can emit (for the coverage test). */
export const PRODUCED_OPS: ReadonlySet<string> = new Set(Object.values(PRODUCTIONS).flatMap((p) => Object.keys(p)));
