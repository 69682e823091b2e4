// Interval analysis: turn a visibility predicate visible(q, kv) into two predicates over a KV tile
// [p0, p1] — `must` (every kv in the tile is visible) and `may` (some kv may be visible) — so a kernel
// classifies a tile with a few scalar ops: skip when !may, full (no per-element mask) when must, partial
// otherwise. The result is itself IR over vars q, p0, p1 and the same params, rendered like any expression.
//
// Soundness rests on monotonicity: every f32 op used on bounds rounds monotonically, and comparisons are
// phrased so that a NaN bound makes `must` false and `may` true. An op without a monotone rule makes its
// bounds unknown, and comparisons against an unknown bound are undecided (must false, may true).
// i32 bound arithmetic assumes positions do not overflow, as the mask itself does — except for products:
// corners of bounds are not value pairs, so a corner product can wrap where no element's product does.
// An i32 product's bounds are therefore computed in f32 (which cannot wrap) and kept *exact*: an integer
// of magnitude below 2^24, or the infinity on the safe side. Once a bound of an i32 value is such an f32,
// every bound derived from it is computed the same way (operands lifted, results checked), because f32
// rounding of an i32 bound could move it past a value; comparing an exact f32 bound with a rounded i32
// bound decides like the exact comparison.
// An f32 value can be NaN strictly inside its bounds (0 * inf, inf - inf, sqrt of a negative, min/max of a
// NaN operand) while both bounds are numbers, so f32 intervals carry a `nan` condition and a comparison is
// only certainly true when neither operand may be NaN (a NaN only ever makes lt/le/gt/ge/eq false).
import * as ir from '../ir.ts';
import type { Node } from '../ir.ts';

interface Bool {
  readonly must: Node;
  readonly may: Node;
}
/** Lower and upper bound; undefined when unknown. Equal nodes mean an exact value. */
interface Num {
  readonly lo?: Node;
  readonly hi?: Node;
  /** f32 only: some value may be NaN although neither bound is. Absent: never. */
  readonly nan?: Node;
}
type Abs = Bool | Num;

const TRUE = ir.constant(true);
const FALSE = ir.constant(false);
const UNDECIDED: Bool = { must: FALSE, may: TRUE };
const UNKNOWN: Num = {};

export interface TileClass {
  must: Node;
  may: Node;
}

/** Tile classification of `visible` (bool over 'q', 'kv' and params) over kv in [p0, p1]. */
export function classifyTile(visible: Node): TileClass {
  if (visible.ty !== 'bool') throw new TypeError('classifyTile needs a boolean predicate');
  const memo = new Map<Node, Abs>();
  for (const n of ir.topo(visible)) memo.set(n, abstract(n, n.args.map((a) => memo.get(a)!)));
  const { must, may } = memo.get(visible) as Bool;
  return { must, may };
}

const exact = (x: Num): x is { lo: Node; hi: Node } => x.lo !== undefined && x.lo === x.hi;
const point = (n: Node): Num => ({ lo: n, hi: n });
const both = (f: (a: Node, b: Node) => Node, a?: Node, b?: Node) => (a && b ? f(a, b) : undefined);

function abstract(n: Node, args: Abs[]): Abs {
  const num = args as Num[];
  const bool = args as Bool[];
  switch (n.op) {
    case 'const':
      return n.ty === 'bool' ? { must: n, may: n } : point(n);
    case 'param':
      return n.ty === 'bool' ? { must: n, may: n } : point(n);
    case 'var':
      if (n.value === 'kv') return { lo: ir.variable('p0', 'i32'), hi: ir.variable('p1', 'i32') };
      return point(n);

    // ---- booleans
    case 'and':
      return { must: ir.and(bool[0].must, bool[1].must), may: ir.and(bool[0].may, bool[1].may) };
    case 'or':
      return { must: ir.or(bool[0].must, bool[1].must), may: ir.or(bool[0].may, bool[1].may) };
    case 'not':
      return { must: ir.not(bool[0].may), may: ir.not(bool[0].must) };
    case 'lt':
    case 'le':
    case 'gt':
    case 'ge':
    case 'eq':
    case 'ne':
      if (n.args[0].ty === 'bool') return boolEquality(n.op, bool[0], bool[1]);
      if (exact(num[0]) && exact(num[1])) {
        const e = rebuild(n, [num[0].lo, num[1].lo]);
        return { must: e, may: e };
      }
      return compare(n.op, num[0], num[1], n.args[0].ty === 'f32');
    case 'select':
      return n.ty === 'bool'
        ? selectBool(bool[0], bool[1], bool[2])
        : { ...selectNum(bool[0], num[1], num[2], n.ty === 'i32'), nan: n.ty === 'f32' ? orMaybe(mayBeNaN(num[1]), mayBeNaN(num[2])) : undefined };

    // ---- numbers
    case 'add':
      return exactOr(n, num, ([a, b]) => ({ lo: both(ir.add, a.lo, b.lo), hi: both(ir.add, a.hi, b.hi) }));
    case 'sub':
      return exactOr(n, num, ([a, b]) => ({ lo: both(ir.sub, a.lo, b.hi), hi: both(ir.sub, a.hi, b.lo) }));
    case 'neg':
      return exactOr(n, num, ([a]) => ({ lo: a.hi && ir.neg(a.hi), hi: a.lo && ir.neg(a.lo) }));
    case 'mul':
      return exactOr(n, num, ([a, b]) => mulBounds(a, b));
    case 'div':
      return exactOr(n, num, ([a, b]) => divBounds(a, b));
    case 'min':
      return exactOr(n, num, ([a, b]) => ({ lo: both(ir.min, a.lo, b.lo), hi: pick(ir.min, a.hi, b.hi) }));
    case 'max':
      return exactOr(n, num, ([a, b]) => ({ lo: pick(ir.max, a.lo, b.lo), hi: both(ir.max, a.hi, b.hi) }));
    case 'tof32':
      // Monotone; a bound that is already an (exact) f32 converts to itself.
      return exactOr(n, num, ([a]) => ({ lo: a.lo && ir.toF32(a.lo), hi: a.hi && ir.toF32(a.hi) }));
    case 'floor':
    case 'ceil':
    case 'trunc':
    case 'sqrt':
      // Monotone non-decreasing (sqrt of a negative bound is NaN, which the comparisons treat as unknown).
      return exactOr(n, num, ([a]) => ({ lo: a.lo && rebuild(n, [a.lo]), hi: a.hi && rebuild(n, [a.hi]) }));
    case 'abs':
    case 'mod':
    case 'exp':
    case 'log':
    case 'tanh':
    case 'pow':
      // No rule that is both cheap and sound for libm results: exact operands only.
      return exactOr(n, num, () => UNKNOWN);
  }
}

function rebuild(n: Node, args: Node[]): Node {
  return ir.Node.make(n.op, n.ty, args, n.value);
}

/**
 * If every operand is exact, the result is the op itself applied to them; else use the bound rule. An i32
 * product, and any i32 op with an operand bound already in f32, works on exact f32 bounds (see the top).
 */
function exactOr(n: Node, args: Num[], rule: (args: Num[]) => Num): Num {
  if (args.every(exact)) return point(rebuild(n, args.map((a) => a.lo!)));
  if (n.ty === 'i32' && (n.op === 'mul' || args.some(hasF32Bound))) {
    const r = rule(args.map(liftExact));
    return { lo: r.lo && exactF32(r.lo, 'lo'), hi: r.hi && exactF32(r.hi, 'hi') };
  }
  const r = rule(args);
  return n.ty === 'f32' ? { ...r, nan: orMaybe(...args.map(mayBeNaN), interiorNaN(n.op, args)) } : r;
}

/** Below this magnitude every integer is an f32. */
const EXACT_LIMIT = 2 ** 24;

const hasF32Bound = (x: Num) => x.lo?.ty === 'f32' || x.hi?.ty === 'f32';

/** An i32 value's bounds as exact f32 bounds. */
function liftExact(x: Num): Num {
  return { lo: x.lo && exactF32(x.lo, 'lo'), hi: x.hi && exactF32(x.hi, 'hi') };
}

/**
 * A bound of an i32 value as an exact f32: the bound itself when it is an integer below 2^24 in magnitude,
 * else -inf for a lower bound and +inf for an upper one. f32 rounding is monotone and 2^24 is an f32, so a
 * result that rounds below 2^24 was below it exactly, hence exact; a NaN (inf * 0) becomes the infinity.
 */
function exactF32(b: Node, side: 'lo' | 'hi'): Node {
  const far = side === 'lo' ? F32_NEG_INF : F32_INF;
  if (b.ty === 'i32') {
    const inRange = ir.and(ir.gt(b, ir.constant(-EXACT_LIMIT)), ir.lt(b, ir.constant(EXACT_LIMIT)));
    return ir.select(inRange, ir.toF32(b), far);
  }
  return ir.select(ir.lt(ir.abs(b), ir.constant(EXACT_LIMIT, 'f32')), b, far);
}

const F32_INF = ir.constant(Infinity);
const F32_NEG_INF = ir.constant(-Infinity);
const F32_ZERO = ir.constant(0, 'f32');

/** An f32 operand may be NaN inside its bounds: its own condition, or always when a bound is unknown. */
function mayBeNaN(x: Num): Node | undefined {
  return x.lo && x.hi ? x.nan : TRUE;
}

/** Whether `op` itself can produce a NaN from non-NaN operands within the bounds (f32 only). */
function interiorNaN(op: ir.Op, a: Num[]): Node | undefined {
  const [x, y] = a;
  const known = (...v: Num[]) => v.every((z) => z.lo && z.hi);
  const hasInf = (z: Num) => ir.or(ir.eq(z.lo!, F32_NEG_INF), ir.eq(z.hi!, F32_INF));
  const hasZero = (z: Num) => ir.and(ir.le(z.lo!, F32_ZERO), ir.ge(z.hi!, F32_ZERO));
  switch (op) {
    case 'add': // inf + -inf
      return known(x, y) ? ir.or(ir.and(ir.eq(x.hi!, F32_INF), ir.eq(y.lo!, F32_NEG_INF)), ir.and(ir.eq(x.lo!, F32_NEG_INF), ir.eq(y.hi!, F32_INF))) : TRUE;
    case 'sub': // inf - inf
      return known(x, y) ? ir.or(ir.and(ir.eq(x.hi!, F32_INF), ir.eq(y.hi!, F32_INF)), ir.and(ir.eq(x.lo!, F32_NEG_INF), ir.eq(y.lo!, F32_NEG_INF))) : TRUE;
    case 'mul': // 0 * inf
      return known(x, y) ? ir.or(ir.and(hasZero(x), hasInf(y)), ir.and(hasZero(y), hasInf(x))) : TRUE;
    case 'sqrt': // of a negative
      return x.lo ? ir.lt(x.lo, F32_ZERO) : TRUE;
    case 'div': // 0 / 0, inf / inf (an infinite endpoint over an infinite divisor: the other bound is a number)
      return known(x, y) ? ir.or(ir.and(hasZero(x), hasZero(y)), ir.and(hasInf(x), hasInf(y))) : TRUE;
    default: // neg, floor, ceil, trunc, min, max, tof32: NaN only from a NaN operand
      return undefined;
  }
}

/** For a min's upper bound (or a max's lower bound) one known side suffices. */
function pick(f: (a: Node, b: Node) => Node, a?: Node, b?: Node): Node | undefined {
  return a && b ? f(a, b) : (a ?? b);
}

function mulBounds(a: Num, b: Num): Num {
  if (!(a.lo && a.hi && b.lo && b.hi)) return UNKNOWN;
  const corners = [ir.mul(a.lo, b.lo), ir.mul(a.lo, b.hi), ir.mul(a.hi, b.lo), ir.mul(a.hi, b.hi)];
  return { lo: corners.reduce((x, y) => ir.min(x, y)), hi: corners.reduce((x, y) => ir.max(x, y)) };
}

function divBounds(a: Num, b: Num): Num {
  // Only a constant divisor with a known sign: x / c is monotone in x.
  if (!exact(b) || b.lo.op !== 'const' || !(a.lo && a.hi)) return UNKNOWN;
  const c = b.lo.value as number;
  if (c > 0) return { lo: ir.div(a.lo, b.lo), hi: ir.div(a.hi, b.lo) };
  if (c < 0) return { lo: ir.div(a.hi, b.lo), hi: ir.div(a.lo, b.lo) };
  return UNKNOWN;
}

function compare(op: ir.Op, a: Num, b: Num, f32: boolean): Bool {
  // must: holds for every pair of values in the intervals; may: for some pair. `may` is written as the
  // negation of a certain failure so that a NaN bound leaves it true. A NaN value makes lt/le/gt/ge/eq
  // false, so on f32 their `must` also requires that neither operand may be NaN.
  const nan = f32 ? orMaybe(mayBeNaN(a), mayBeNaN(b)) : undefined;
  const certain = (c?: Node) => (c && nan ? ir.and(c, ir.not(nan)) : c);
  switch (op) {
    case 'lt':
      return bounds(certain(both(ir.lt, a.hi, b.lo)), both(ir.ge, a.lo, b.hi));
    case 'le':
      return bounds(certain(both(ir.le, a.hi, b.lo)), both(ir.gt, a.lo, b.hi));
    case 'gt':
      return bounds(certain(both(ir.gt, a.lo, b.hi)), both(ir.le, a.hi, b.lo));
    case 'ge':
      return bounds(certain(both(ir.ge, a.lo, b.hi)), both(ir.lt, a.hi, b.lo));
    case 'eq': {
      // Equal everywhere only if both are the same single value; possibly equal if the intervals overlap.
      const mustEq = a.lo && a.hi && b.lo && b.hi ? ir.and(ir.and(ir.eq(a.lo, a.hi), ir.eq(b.lo, b.hi)), ir.eq(a.lo, b.lo)) : undefined;
      const disjoint = orMaybe(both(ir.lt, a.hi, b.lo), both(ir.lt, b.hi, a.lo));
      return bounds(certain(mustEq), disjoint);
    }
    case 'ne': {
      const eq = compare('eq', a, b, f32);
      return { must: ir.not(eq.may), may: ir.not(eq.must) };
    }
    default:
      throw new Error(`not a comparison: ${op}`);
  }
}

function orMaybe(...xs: (Node | undefined)[]): Node | undefined {
  return xs.reduce<Node | undefined>((acc, x) => (acc && x ? ir.or(acc, x) : (acc ?? x)), undefined);
}

/** From "certainly true" and "certainly false" conditions (undefined = can't tell). */
function bounds(certainlyTrue?: Node, certainlyFalse?: Node): Bool {
  return { must: certainlyTrue ?? FALSE, may: certainlyFalse ? ir.not(certainlyFalse) : TRUE };
}

function boolEquality(op: string, a: Bool, b: Bool): Bool {
  const bothTrue = (x: Bool, y: Bool) => ir.and(x.must, y.must);
  const bothFalse = (x: Bool, y: Bool) => ir.and(ir.not(x.may), ir.not(y.may));
  const eq: Bool = {
    must: ir.or(bothTrue(a, b), bothFalse(a, b)),
    may: ir.or(ir.and(a.may, b.may), ir.and(ir.not(a.must), ir.not(b.must))),
  };
  if (op === 'eq') return eq;
  if (op === 'ne') return { must: ir.not(eq.may), may: ir.not(eq.must) };
  return UNDECIDED; // ordering comparisons of booleans are rejected by the front end
}

function selectBool(c: Bool, x: Bool, y: Bool): Bool {
  return {
    must: ir.or(ir.or(ir.and(c.must, x.must), ir.and(ir.not(c.may), y.must)), ir.and(x.must, y.must)),
    may: ir.or(ir.and(c.may, x.may), ir.and(ir.not(c.must), y.may)),
  };
}

function selectNum(c: Bool, x: Num, y: Num, i32: boolean): Num {
  // An i32 select whose branches' bounds differ in type joins them as exact f32 (no i32 bound is rounded).
  if (i32 && hasF32Bound(x) !== hasF32Bound(y)) [x, y] = [liftExact(x), liftExact(y)];
  const join = (f: (a: Node, b: Node) => Node, a?: Node, b?: Node) =>
    a && b ? ir.select(c.must, a, ir.select(ir.not(c.may), b, f(a, b))) : undefined;
  return { lo: join(ir.min, x.lo, y.lo), hi: join(ir.max, x.hi, y.hi) };
}
