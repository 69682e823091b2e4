// Renders an IR DAG as straight-line C/CUDA: one `const` temporary per interior node, in topological
// order, each an expression from the op table. Shared by both backends (they differ in md_expr.h).
import { topo, type Node, type Ty } from './ir.ts';
import { OPS } from './ops.ts';

export const C_TYPE: Record<Ty, string> = { bool: 'bool', i32: 'int32_t', f32: 'float' };

export interface RenderEnv {
  /** C expression for each variable (e.g. q -> "qpos"). */
  vars: Readonly<Record<string, string>>;
  /** C expression reading a runtime param of the given type. */
  param(name: string, ty: Ty): string;
  /** Prefix for temporaries, so several bodies can share a scope. */
  prefix?: string;
}

export interface Rendered {
  lines: string[];
  result: string;
}

export function renderBody(root: Node, env: RenderEnv): Rendered {
  const names = new Map<Node, string>();
  const lines: string[] = [];
  const prefix = env.prefix ?? 't';
  for (const n of topo(root)) {
    const leaf = renderLeaf(n, env);
    if (leaf !== undefined) {
      names.set(n, leaf);
      continue;
    }
    const expr = OPS[n.op as keyof typeof OPS].render(
      n.args.map((a) => names.get(a)!),
      n.ty,
      n.args.map((a) => a.ty),
    );
    const name = `${prefix}${names.size}`;
    lines.push(`const ${C_TYPE[n.ty]} ${name} = ${expr};`);
    names.set(n, name);
  }
  return { lines, result: names.get(root)! };
}

function renderLeaf(n: Node, env: RenderEnv): string | undefined {
  switch (n.op) {
    case 'const':
      return renderConst(n.value as number | boolean, n.ty);
    case 'var': {
      const v = env.vars[n.value as string];
      if (v === undefined) throw new Error(`renderer has no binding for variable '${String(n.value)}'`);
      return v;
    }
    case 'param':
      return env.param(n.value as string, n.ty);
    default:
      return undefined;
  }
}

export function renderConst(v: number | boolean, ty: Ty): string {
  if (ty === 'bool') return v ? 'true' : 'false';
  const x = v as number;
  if (ty === 'i32') return x === -2147483648 ? '(-2147483647 - 1)' : String(x);
  return renderF32(x);
}

/** An f32 constant as an exact C literal: hex float when finite, bit pattern otherwise. */
export function renderF32(x: number): string {
  const bits = new DataView(new ArrayBuffer(4));
  bits.setFloat32(0, x);
  const u = bits.getUint32(0);
  if (!Number.isFinite(x)) return `md_bits_f32(0x${u.toString(16).padStart(8, '0')}u)`;
  if (x === 0) return Object.is(x, -0) ? '-0.0f' : '0.0f';
  const sign = u >>> 31 ? '-' : '';
  const e = (u >>> 23) & 0xff;
  const m = u & 0x7fffff;
  // Normal: 1.m * 2^(e-127); subnormal: 0.m * 2^-126. The 23-bit mantissa printed as 6 hex digits (<<1).
  const mant = (m << 1).toString(16).padStart(6, '0');
  return e === 0 ? `${sign}0x0.${mant}p-126f` : `${sign}0x1.${mant}p${e - 127}f`;
}
