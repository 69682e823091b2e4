// Constant folding and exact algebraic simplification. A constant subtree is evaluated with the
// interpreter's own op table, so folding is the IR's semantics by construction. Every rewrite below is an
// identity of those semantics for *all* operand values (wrapping i32, IEEE f32 with -0 and NaN, booleans
// without side effects); rules that hold only for "ordinary" values are deliberately absent:
//   f32 x + 0 -> x   (-0 + 0 = +0)          f32 x * 0 -> 0   (NaN, inf, and -0 for negative x)
//   f32 x - x -> 0   (NaN, inf)             f32 x == x -> true (NaN)
//   !(a < b) -> a >= b on f32 (NaN)
// Transcendental ops (OPS[op].ulps > 0) are never folded: the backend's libm may differ from the
// interpreter by ulps, and a folded constant would silently pick one side.
import { constant, Node, transform, type Ty } from '../ir.ts';
import { OPS } from '../ops.ts';

type Rule = (n: Node) => Node | undefined;

const TRUE = constant(true);
const FALSE = constant(false);

const isConst = (n: Node, v?: number | boolean): boolean =>
  n.op === 'const' && (v === undefined || Object.is(n.value, v));

/** Constant subtree: every operand constant and the op exact, so the interpreter's value is the value. */
const evaluateConstant: Rule = (n) => {
  if (n.op === 'const' || n.op === 'var' || n.op === 'param') return undefined;
  const def = OPS[n.op];
  if (def.ulps > 0 || !n.args.every((a) => a.op === 'const')) return undefined;
  const v = def.eval(n.args.map((a) => a.value as number | boolean), n.ty);
  return constant(v, n.ty);
};

/** `n` with operands in either order matching (constant side `c`, other side returned). */
function withConst(n: Node, v: number | boolean): Node | undefined {
  const [a, b] = n.args;
  if (isConst(b, v)) return a;
  if (isConst(a, v)) return b;
  return undefined;
}

const negate = (n: Node): Node => Node.make('not', 'bool', [n]);

const RULES: Readonly<Record<string, Rule[]>> = {
  and: [
    (n) => withConst(n, true), //                      x && true -> x
    (n) => (withConst(n, false) ? FALSE : undefined), // x && false -> false (operands have no effects)
    (n) => (n.args[0] === n.args[1] ? n.args[0] : undefined), // x && x -> x
  ],
  or: [
    (n) => withConst(n, false),
    (n) => (withConst(n, true) ? TRUE : undefined),
    (n) => (n.args[0] === n.args[1] ? n.args[0] : undefined),
  ],
  not: [(n) => (n.args[0].op === 'not' ? n.args[0].args[0] : undefined)],
  select: [
    (n) => (isConst(n.args[0]) ? (n.args[0].value ? n.args[1] : n.args[2]) : undefined),
    (n) => (n.args[1] === n.args[2] ? n.args[1] : undefined),
    // !c ? x : y -> c ? y : x
    (n) => (n.args[0].op === 'not' ? Node.make('select', n.ty, [n.args[0].args[0], n.args[2], n.args[1]]) : undefined),
    // c ? true : false -> c;  c ? false : true -> !c
    (n) => (n.ty === 'bool' && isConst(n.args[1], true) && isConst(n.args[2], false) ? n.args[0] : undefined),
    (n) => (n.ty === 'bool' && isConst(n.args[1], false) && isConst(n.args[2], true) ? negate(n.args[0]) : undefined),
  ],
  eq: [
    (n) => (n.args[0].ty === 'bool' ? withConst(n, true) : undefined), //  b == true -> b
    (n) => bool1(n, false, negate), //                                      b == false -> !b
    (n) => (n.args[0] === n.args[1] && n.args[0].ty !== 'f32' ? TRUE : undefined), // not f32: NaN != NaN
  ],
  ne: [
    (n) => (n.args[0].ty === 'bool' ? withConst(n, false) : undefined),
    (n) => bool1(n, true, negate),
    (n) => (n.args[0] === n.args[1] && n.args[0].ty !== 'f32' ? FALSE : undefined),
  ],
  // x < x and x > x are false for every value, NaN included; x <= x is not (NaN).
  lt: [(n) => (n.args[0] === n.args[1] ? FALSE : undefined)],
  gt: [(n) => (n.args[0] === n.args[1] ? FALSE : undefined)],
  le: [(n) => (n.args[0] === n.args[1] && n.args[0].ty === 'i32' ? TRUE : undefined)],
  ge: [(n) => (n.args[0] === n.args[1] && n.args[0].ty === 'i32' ? TRUE : undefined)],
  add: [
    (n) => (n.ty === 'i32' ? withConst(n, 0) : undefined), // i32 x + 0 -> x
    (n) => (n.ty === 'f32' ? withConst(n, -0) : undefined), // f32 x + -0 -> x (also for x = -0, +0, NaN)
  ],
  sub: [
    (n) => (isConst(n.args[1], 0) ? n.args[0] : undefined), // x - 0 -> x: i32, and f32 (-0 - +0 = -0)
    (n) => (n.ty === 'i32' && n.args[0] === n.args[1] ? constant(0, 'i32') : undefined), // i32 x - x -> 0
  ],
  mul: [
    (n) => withConst(n, 1), // x * 1 -> x: i32 and f32 (-0, inf, NaN included)
    (n) => (n.ty === 'i32' && withConst(n, 0) ? constant(0, 'i32') : undefined), // i32 only: f32 NaN * 0
  ],
  div: [(n) => (isConst(n.args[1], 1) ? n.args[0] : undefined)], // x / 1 -> x
  neg: [(n) => (n.args[0].op === 'neg' ? n.args[0].args[0] : undefined)], // -(-x) -> x, wrapping too
  abs: [(n) => (n.args[0].op === 'abs' || n.args[0].op === 'neg' ? Node.make('abs', n.ty, n.args[0].args) : undefined)],
  min: [(n) => (n.args[0] === n.args[1] ? n.args[0] : undefined)],
  max: [(n) => (n.args[0] === n.args[1] ? n.args[0] : undefined)],
  floor: [idempotentRounding],
  ceil: [idempotentRounding],
  trunc: [idempotentRounding],
};

/** floor/ceil/trunc of an already integral value (any of the three) is that value. */
function idempotentRounding(n: Node): Node | undefined {
  const a = n.args[0];
  return a.op === 'floor' || a.op === 'ceil' || a.op === 'trunc' ? a : undefined;
}

/** A bool (in)equality against constant `v`: rewrite to `build(other operand)`. */
function bool1(n: Node, v: boolean, build: (x: Node) => Node): Node | undefined {
  if (n.args[0].ty !== 'bool') return undefined;
  const other = withConst(n, v);
  return other ? build(other) : undefined;
}

/** Apply the rules at one node until none fires; operands are already simplified. */
function simplify(n: Node): Node {
  for (let steps = 0; steps < 64; steps++) {
    const next = evaluateConstant(n) ?? firstRule(n);
    if (next === undefined || next === n) return n;
    // A rewrite may build a node whose own operands are simplified but which itself is not yet.
    n = next;
  }
  throw new Error(`fold: rules did not reach a fixed point at ${n.op} (a rule cycle)`);
}

function firstRule(n: Node): Node | undefined {
  for (const rule of RULES[n.op] ?? []) {
    const r = rule(n);
    if (r !== undefined) return r;
  }
  return undefined;
}

/** Fold constants and apply the exact simplifications, bottom-up. The result has the root's type. */
export function fold(root: Node): Node {
  const out = transform(root, simplify);
  if (out.ty !== root.ty) throw new Error(`fold changed the type of ${root.op} from ${root.ty} to ${out.ty}`);
  return out;
}

/** The types that each rule family may produce; exported for tests that enumerate the rules. */
export const FOLD_RULE_OPS: readonly string[] = Object.keys(RULES);
export type { Ty };
