// Every IR op defined once: its meaning (the interpreter, which is the oracle for every backend) beside
// its rendering (an expression over the helpers in templates/common/md_expr.h, shared by the C++ and CUDA
// backends). i32 arithmetic wraps; `x % 0` is 0; f32 ops round to nearest after each op (no contraction);
// min/max follow Math.min/max (NaN wins, -0 < +0). Transcendentals are the platform's libm functions and
// agree with the interpreter to within `ulps` units in the last place.
import type { Op, Ty } from './ir.ts';

export type Value = number | boolean;

export interface OpDef {
  /** Interpreter: operands are already-evaluated values of the node's operand types. */
  eval(args: Value[], ty: Ty): Value;
  /** C/CUDA rendering from the rendered operands. */
  render(args: string[], ty: Ty, argTys: Ty[]): string;
  /** Largest difference, in f32 ulps, between a compiled backend and the interpreter. */
  ulps: number;
}

const f = Math.fround;
const n = (v: Value) => v as number;
const b = (v: Value) => v as boolean;

const i32mod = (a: number, c: number) => (c === 0 ? 0 : (a % c) | 0);

function jsMin(a: number, c: number): number {
  return Math.min(a, c);
}
function jsMax(a: number, c: number): number {
  return Math.max(a, c);
}

type Pure = Omit<OpDef, 'ulps'> & { ulps?: number };

const sfx = (ty: Ty) => (ty === 'i32' ? 'i32' : 'f32');

const table: Record<Exclude<Op, 'const' | 'var' | 'param'>, Pure> = {
  add: { eval: ([a, c], ty) => (ty === 'i32' ? (n(a) + n(c)) | 0 : f(n(a) + n(c))), render: ([a, c], ty) => `md_add_${sfx(ty)}(${a}, ${c})` },
  sub: { eval: ([a, c], ty) => (ty === 'i32' ? (n(a) - n(c)) | 0 : f(n(a) - n(c))), render: ([a, c], ty) => `md_sub_${sfx(ty)}(${a}, ${c})` },
  mul: { eval: ([a, c], ty) => (ty === 'i32' ? Math.imul(n(a), n(c)) : f(n(a) * n(c))), render: ([a, c], ty) => `md_mul_${sfx(ty)}(${a}, ${c})` },
  div: { eval: ([a, c]) => f(n(a) / n(c)), render: ([a, c]) => `md_div_f32(${a}, ${c})` },
  mod: { eval: ([a, c], ty) => (ty === 'i32' ? i32mod(n(a), n(c)) : f(n(a) % n(c))), render: ([a, c], ty) => `md_mod_${sfx(ty)}(${a}, ${c})` },
  neg: { eval: ([a], ty) => (ty === 'i32' ? -n(a) | 0 : -n(a)), render: ([a], ty) => `md_neg_${sfx(ty)}(${a})` },
  lt: { eval: ([a, c]) => n(a) < n(c), render: ([a, c]) => `(${a} < ${c})` },
  le: { eval: ([a, c]) => n(a) <= n(c), render: ([a, c]) => `(${a} <= ${c})` },
  gt: { eval: ([a, c]) => n(a) > n(c), render: ([a, c]) => `(${a} > ${c})` },
  ge: { eval: ([a, c]) => n(a) >= n(c), render: ([a, c]) => `(${a} >= ${c})` },
  eq: { eval: ([a, c]) => a === c, render: ([a, c]) => `(${a} == ${c})` },
  ne: { eval: ([a, c]) => a !== c, render: ([a, c]) => `(${a} != ${c})` },
  and: { eval: ([a, c]) => b(a) && b(c), render: ([a, c]) => `(${a} && ${c})` },
  or: { eval: ([a, c]) => b(a) || b(c), render: ([a, c]) => `(${a} || ${c})` },
  not: { eval: ([a]) => !b(a), render: ([a]) => `(!${a})` },
  select: { eval: ([c, x, y]) => (b(c) ? x : y), render: ([c, x, y]) => `(${c} ? ${x} : ${y})` },
  min: { eval: ([a, c], ty) => (ty === 'i32' ? Math.min(n(a), n(c)) : jsMin(n(a), n(c))), render: ([a, c], ty) => `md_min_${sfx(ty)}(${a}, ${c})` },
  max: { eval: ([a, c], ty) => (ty === 'i32' ? Math.max(n(a), n(c)) : jsMax(n(a), n(c))), render: ([a, c], ty) => `md_max_${sfx(ty)}(${a}, ${c})` },
  abs: { eval: ([a], ty) => (ty === 'i32' ? Math.abs(n(a)) | 0 : Math.abs(n(a))), render: ([a], ty) => `md_abs_${sfx(ty)}(${a})` },
  floor: { eval: ([a]) => Math.floor(n(a)), render: ([a]) => `md_floor_f32(${a})` },
  ceil: { eval: ([a]) => Math.ceil(n(a)), render: ([a]) => `md_ceil_f32(${a})` },
  trunc: { eval: ([a]) => Math.trunc(n(a)), render: ([a]) => `md_trunc_f32(${a})` },
  sqrt: { eval: ([a]) => f(Math.sqrt(n(a))), render: ([a]) => `md_sqrt_f32(${a})` },
  exp: { eval: ([a]) => f(Math.exp(n(a))), render: ([a]) => `md_exp_f32(${a})`, ulps: 2 },
  log: { eval: ([a]) => f(Math.log(n(a))), render: ([a]) => `md_log_f32(${a})`, ulps: 2 },
  tanh: { eval: ([a]) => f(Math.tanh(n(a))), render: ([a]) => `md_tanh_f32(${a})`, ulps: 2 },
  pow: { eval: ([a, c]) => f(Math.pow(n(a), n(c))), render: ([a, c]) => `md_pow_f32(${a}, ${c})`, ulps: 2 },
  tof32: { eval: ([a]) => f(n(a)), render: ([a]) => `md_i32_to_f32(${a})` },
};

export const OPS: Record<Exclude<Op, 'const' | 'var' | 'param'>, OpDef> = Object.fromEntries(
  Object.entries(table).map(([k, v]) => [k, { ulps: 0, ...v }]),
) as Record<Exclude<Op, 'const' | 'var' | 'param'>, OpDef>;

/** The Math.* intrinsics the front end accepts, by name, with their arity. */
export const MATH_INTRINSICS: Readonly<Record<string, { op: Op; arity: number }>> = {
  min: { op: 'min', arity: 2 },
  max: { op: 'max', arity: 2 },
  abs: { op: 'abs', arity: 1 },
  floor: { op: 'floor', arity: 1 },
  ceil: { op: 'ceil', arity: 1 },
  trunc: { op: 'trunc', arity: 1 },
  sqrt: { op: 'sqrt', arity: 1 },
  exp: { op: 'exp', arity: 1 },
  log: { op: 'log', arity: 1 },
  tanh: { op: 'tanh', arity: 1 },
  pow: { op: 'pow', arity: 2 },
};

/** Math.* constants, rounded to f32 where they are used. */
export const MATH_CONSTANTS: Readonly<Record<string, number>> = {
  PI: Math.PI,
  E: Math.E,
  LN2: Math.LN2,
  LN10: Math.LN10,
  SQRT2: Math.SQRT2,
  LOG2E: Math.LOG2E,
};
