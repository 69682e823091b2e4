// The IR interpreter: the definition of what an expression means, and the oracle for every backend.
import { topo, type Node } from './ir.ts';
import { OPS, type Value } from './ops.ts';

export interface Env {
  /** Values of the function's parameters (q, kv, len, s, head, ...). */
  vars: Readonly<Record<string, Value>>;
  /** Values of runtime params (p.sink, ...). i32 params are truncated, f32 params rounded. */
  params?: Readonly<Record<string, number>>;
}

export function evaluate(root: Node, env: Env): Value {
  const values = new Map<Node, Value>();
  for (const n of topo(root)) values.set(n, step(n, env, values));
  return values.get(root)!;
}

function step(n: Node, env: Env, values: Map<Node, Value>): Value {
  switch (n.op) {
    case 'const':
      return n.value as Value;
    case 'var': {
      const v = env.vars[n.value as string];
      if (v === undefined) throw new Error(`no value for variable '${String(n.value)}'`);
      return coerce(v, n.ty);
    }
    case 'param': {
      const v = env.params?.[n.value as string];
      if (v === undefined) throw new Error(`no value for param '${String(n.value)}'`);
      return coerce(v, n.ty);
    }
    default:
      return OPS[n.op].eval(n.args.map((a) => values.get(a)!), n.ty);
  }
}

function coerce(v: Value, ty: Node['ty']): Value {
  if (ty === 'bool') return Boolean(v);
  return ty === 'i32' ? Number(v) | 0 : Math.fround(Number(v));
}
