// Causality: a proof that a visibility predicate visible(q, kv) is false for every kv > q. The target pass
// needs it for docs/ARCHITECTURE.md, invariant 1: verification runs the target over drafted positions and chunked
// prefill over positions not written yet, so a target that could see kv > q would read them, and its
// logits would differ from autoregressive decoding.
//
// The proof substitutes kv = q + d with d >= 1 and evaluates the predicate in a small abstract domain:
// numbers are linear forms over q, d and the i32 params (or unknown), booleans are three-valued (true,
// false, unknown). A comparison is decided only when the difference of its operands depends on d and
// constants alone. "Causal" means the predicate evaluates to definitely false; anything the domain cannot
// follow (products of two variables, division, min/max, libm, f32 params) is unknown, so the answer errs
// towards "not proven".
//
// Soundness with the kernels' arithmetic, for positions 0 <= q < kv < MAX_SEQ and any param values:
// - i32 add/sub/neg/mul wrap, i.e. compute modulo 2^32, as a linear form's coefficients do; the wrapped
//   value equals the form's exact value wherever it is *observed* (compared or converted to f32), which is
//   checked there: the form's range over the position bounds and the full i32 range of params must fit.
// - f32 ops round; an f32 form is kept only while each result is an integer of magnitude below 2^24 for
//   every assignment (integer coefficients, bounded range), where f32 arithmetic is exact.
import type { Node } from '../ir.ts';
import * as ir from '../ir.ts';
import { MAX_SEQ } from '../limits.ts';
import { OPS } from '../ops.ts';

/** A linear form sum(coef * symbol) + c; symbols are 'q', 'd' and 'p:<name>' (i32 params). */
interface Lin {
  readonly ty: 'i32' | 'f32';
  readonly terms: ReadonlyMap<string, number>;
  readonly c: number;
}
/** Three-valued boolean: undefined is unknown. */
type Tri = boolean | undefined;
type Abs = Tri | Lin | null;

const INT_MIN = -(2 ** 31);
const INT_MAX = 2 ** 31 - 1;
const F32_EXACT = 2 ** 24;

/** visible(q, kv) is false for every 0 <= q < kv < MAX_SEQ and every param value. */
export function isCausal(visible: Node): boolean {
  if (visible.ty !== 'bool') throw new TypeError('isCausal needs a boolean predicate');
  const memo = new Map<Node, Abs>();
  for (const n of ir.topo(visible)) memo.set(n, abstract(n, n.args.map((a) => memo.get(a)!)));
  return memo.get(visible) === false;
}

// --------------------------------------------------------------------------------------- linear forms

const constForm = (ty: Lin['ty'], c: number): Lin => ({ ty, terms: new Map(), c });
const symbol = (ty: Lin['ty'], terms: Record<string, number>): Lin => ({ ty, terms: new Map(Object.entries(terms)), c: 0 });

/** i32 forms compute modulo 2^32 (like the kernels); f32 forms exactly. */
const wrap = (ty: Lin['ty'], x: number) => (ty === 'i32' ? x | 0 : x);

function combine(a: Lin, ka: number, b: Lin, kb: number): Lin {
  const mul = (x: number, k: number) => (a.ty === 'i32' ? Math.imul(x, k) : x * k);
  const terms = new Map<string, number>();
  for (const [s, v] of a.terms) terms.set(s, wrap(a.ty, mul(v, ka)));
  for (const [s, v] of b.terms) terms.set(s, wrap(a.ty, (terms.get(s) ?? 0) + mul(v, kb)));
  for (const [s, v] of terms) if (v === 0) terms.delete(s);
  return { ty: a.ty, terms, c: wrap(a.ty, mul(a.c, ka) + mul(b.c, kb)) };
}

const isConstForm = (x: Lin) => x.terms.size === 0;

/** Range of a symbol for the positions 0 <= q < kv < MAX_SEQ (kv = q + d) and any i32 param. */
function symbolRange(s: string): [number, number] {
  if (s === 'q') return [0, MAX_SEQ - 1];
  if (s === 'd') return [1, MAX_SEQ - 1];
  return [INT_MIN, INT_MAX];
}

/** Exact range of the form's value over all symbol values (float64 is exact well beyond what is compared). */
function range(x: Lin): [number, number] {
  let lo = x.c;
  let hi = x.c;
  for (const [s, k] of x.terms) {
    const [a, b] = symbolRange(s);
    lo += Math.min(k * a, k * b);
    hi += Math.max(k * a, k * b);
  }
  return [lo, hi];
}

/** The kernel's value equals the form's exact value: i32 within i32; f32 an integer below 2^24 (or a lone constant). */
function observable(x: Lin): boolean {
  const [lo, hi] = range(x);
  if (x.ty === 'i32') return lo >= INT_MIN && hi <= INT_MAX;
  return isConstForm(x) ? Number.isFinite(x.c) : exactF32(x);
}

/** Every value of an f32 form is an integer of magnitude below 2^24, so f32 ops produce it exactly. */
function exactF32(x: Lin): boolean {
  if (![x.c, ...x.terms.values()].every(Number.isInteger)) return false;
  const [lo, hi] = range(x);
  return lo > -F32_EXACT && hi < F32_EXACT;
}

/** An f32 op's result form, when f32 computes it exactly (operands exact too); else unknown. */
const f32Result = (x: Lin): Lin | null => (exactF32(x) ? x : null);

// ------------------------------------------------------------------------------------------- abstract

function abstract(n: Node, args: Abs[]): Abs {
  const num = args as (Lin | null)[];
  const tri = args as Tri[];
  switch (n.op) {
    case 'const':
      if (n.ty === 'bool') return n.value as boolean;
      return Number.isFinite(n.value) ? constForm(n.ty as Lin['ty'], n.value as number) : null;
    case 'var':
      if (n.value === 'q' && n.ty === 'i32') return symbol('i32', { q: 1 });
      if (n.value === 'kv' && n.ty === 'i32') return symbol('i32', { q: 1, d: 1 });
      return n.ty === 'bool' ? undefined : null;
    case 'param':
      return n.ty === 'i32' ? symbol('i32', { [`p:${String(n.value)}`]: 1 }) : n.ty === 'bool' ? undefined : null;

    case 'and':
      return tri[0] === false || tri[1] === false ? false : tri[0] === true && tri[1] === true ? true : undefined;
    case 'or':
      return tri[0] === true || tri[1] === true ? true : tri[0] === false && tri[1] === false ? false : undefined;
    case 'not':
      return tri[0] === undefined ? undefined : !tri[0];
    case 'select': {
      const c = tri[0];
      if (c !== undefined) return c ? args[1] : args[2];
      if (n.ty === 'bool') return tri[1] === tri[2] ? tri[1] : undefined;
      return num[1] && num[2] && sameForm(num[1], num[2]) ? num[1] : null;
    }
    case 'lt':
    case 'le':
    case 'gt':
    case 'ge':
    case 'eq':
    case 'ne':
      if (n.args[0].ty === 'bool') {
        if (tri[0] === undefined || tri[1] === undefined) return undefined;
        return n.op === 'eq' ? tri[0] === tri[1] : n.op === 'ne' ? tri[0] !== tri[1] : undefined;
      }
      return compare(n.op, num[0], num[1]);

    case 'add':
    case 'sub':
    case 'neg':
    case 'mul':
    case 'tof32':
    case 'floor':
    case 'ceil':
    case 'trunc':
      return linear(n, num);
    default:
      return constantOnly(n, num);
  }
}

/** add, sub, neg, mul by a constant, tof32 and rounding of integers keep a form linear. */
function linear(n: Node, a: (Lin | null)[]): Lin | null {
  if (a.some((x) => x === null)) return constantOnly(n, a);
  const [x, y] = a as Lin[];
  const f32 = n.ty === 'f32';
  switch (n.op) {
    case 'add':
      return f32 ? f32Result(combine(x, 1, y, 1)) : combine(x, 1, y, 1);
    case 'sub':
      return f32 ? f32Result(combine(x, 1, y, -1)) : combine(x, 1, y, -1);
    case 'neg':
      return f32 ? f32Result(combine(x, -1, x, 0)) : combine(x, -1, x, 0);
    case 'mul': {
      if (!isConstForm(x) && !isConstForm(y)) return null;
      const [form, k] = isConstForm(y) ? [x, y.c] : [y, x.c];
      const r = combine(form, k, form, 0);
      return f32 ? f32Result(r) : r;
    }
    case 'tof32':
      // Exact only where the i32 value is (observable) and an f32 holds it.
      return observable(x) && exactF32({ ...x, ty: 'f32' }) ? { ...x, ty: 'f32' } : constantOnly(n, a);
    default:
      // floor/ceil/trunc: the identity on an integer-valued form.
      return exactF32(x) ? x : constantOnly(n, a);
  }
}

/** An op on constants only: the interpreter's value (exact ops only); anything else is unknown. */
function constantOnly(n: Node, a: (Lin | null)[]): Lin | null {
  if (n.ty === 'bool' || OPS[n.op as keyof typeof OPS].ulps > 0) return null;
  if (!a.every((x): x is Lin => x !== null && isConstForm(x))) return null;
  const v = OPS[n.op as keyof typeof OPS].eval(a.map((x) => x.c), n.ty) as number;
  return Number.isFinite(v) ? constForm(n.ty as Lin['ty'], v) : null;
}

function sameForm(a: Lin, b: Lin): boolean {
  if (a.ty !== b.ty || !Object.is(a.c, b.c) || a.terms.size !== b.terms.size) return false;
  for (const [s, v] of a.terms) if (b.terms.get(s) !== v) return false;
  return true;
}

/** Decided when both sides are observed exactly and their difference is k * d + c (d >= 1). */
function compare(op: ir.Op, a: Lin | null, b: Lin | null): Tri {
  if (!a || !b || !observable(a) || !observable(b)) return undefined;
  // The difference of the exact values, in exact (float64, small) arithmetic: no wrapping here.
  const diff = combine({ ...a, ty: 'f32' }, 1, { ...b, ty: 'f32' }, -1);
  for (const s of diff.terms.keys()) if (s !== 'd') return undefined;
  const k = diff.terms.get('d') ?? 0;
  // A fractional constant (an f32 literal) against a d term: k + c would round in float64; don't decide.
  if (k !== 0 && !(Number.isInteger(a.c) && Number.isInteger(b.c))) return undefined;
  // Over d >= 1 the difference ranges over [k + c, +inf) for k > 0, {c} for k = 0, (-inf, k + c] for k < 0.
  const lo = k > 0 ? k + diff.c : k === 0 ? diff.c : -Infinity;
  const hi = k < 0 ? k + diff.c : k === 0 ? diff.c : Infinity;
  const decide = (always: boolean, never: boolean): Tri => (always ? true : never ? false : undefined);
  switch (op) {
    case 'lt':
      return decide(hi < 0, lo >= 0);
    case 'le':
      return decide(hi <= 0, lo > 0);
    case 'gt':
      return decide(lo > 0, hi <= 0);
    case 'ge':
      return decide(lo >= 0, hi < 0);
    case 'eq':
      return decide(lo === 0 && hi === 0, lo > 0 || hi < 0);
    case 'ne':
      return decide(lo > 0 || hi < 0, lo === 0 && hi === 0);
    default:
      throw new Error(`not a comparison: ${op}`);
  }
}
