// A C++ program that evaluates many IR expressions on many environments in one process: one function
// per expression (the renderer's straight-line C over md_expr.h) and a driver that reads environments
// from stdin and prints, per environment and expression, the value of every interior node followed by
// the root's value. Tracing every node lets a test check each op in isolation on the compiled operands.
import { topo, type Node, type Ty } from '../../../codegen/ir.ts';
import type { Env } from '../../../codegen/interp.ts';
import type { Value } from '../../../codegen/ops.ts';
import { C_TYPE, renderBody } from '../../../codegen/render.ts';
import type { Scope } from '../../arbitraries.ts';
import { decode, encode } from './bits.ts';
import { compileProgram, runProgram } from './compile.ts';

export interface ExprProgram {
  readonly exe: string;
  readonly scope: Scope;
  readonly exprs: readonly Node[];
  /** Per expression: the nodes whose values are printed, in order (interior nodes topologically, then root). */
  readonly traced: readonly (readonly Node[])[];
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

function slots(scope: Scope): { name: string; field: string; ty: Ty }[] {
  const vars = Object.entries(scope.vars).map(([name, ty]) => ({ name, field: `v_${name}`, ty }));
  const params = Object.entries(scope.params ?? {}).map(([name, ty]) => ({ name, field: `p_${name}`, ty: ty as Ty }));
  for (const s of [...vars, ...params]) if (!IDENT.test(s.name)) throw new Error(`scope name '${s.name}' is not a C identifier`);
  return [...vars, ...params];
}

const PRINT: Record<Ty, (x: string) => string> = {
  bool: (x) => `std::printf("%d ", (int)(${x}));`,
  i32: (x) => `std::printf("%x ", (unsigned)(uint32_t)(${x}));`,
  f32: (x) => `std::printf("%x ", (unsigned)md_f32_bits(${x}));`,
};
const READ: Record<Ty, (field: string) => string> = {
  bool: (f) => `{ int b; if (std::scanf("%d", &b) != 1) return 2; in.${f} = b != 0; }`,
  i32: (f) => `{ unsigned u; if (std::scanf("%x", &u) != 1) return 2; in.${f} = (int32_t)u; }`,
  f32: (f) => `{ unsigned u; if (std::scanf("%x", &u) != 1) return 2; in.${f} = md_bits_f32(u); }`,
};

export function exprProgramSource(exprs: readonly Node[], scope: Scope): { source: string; traced: Node[][] } {
  const fields = slots(scope);
  const vars = Object.fromEntries(fields.filter((f) => f.field.startsWith('v_')).map((f) => [f.name, `in.${f.field}`]));
  const out: string[] = ['#include "md_expr.h"', '#include <cstdio>', '', 'struct In {'];
  for (const f of fields) out.push(`  ${C_TYPE[f.ty]} ${f.field};`);
  out.push('};', '');
  const traced: Node[][] = [];
  exprs.forEach((e, i) => {
    const body = renderBody(e, { vars, param: (name) => `in.p_${name}`, prefix: 't' });
    const interior = topo(e).filter((n) => n.op !== 'const' && n.op !== 'var' && n.op !== 'param');
    if (interior.length !== body.lines.length) throw new Error(`renderer emitted ${body.lines.length} lines for ${interior.length} interior nodes`);
    const names = body.lines.map((l) => /^const \S+ (\w+) = /.exec(l)?.[1] ?? '');
    if (names.some((n) => !n)) throw new Error(`unexpected rendered line shape in expression ${i}`);
    traced.push([...interior, e]);
    out.push(`static void e${i}(const In& in) {`, ...body.lines.map((l) => `  ${l}`));
    interior.forEach((n, k) => out.push(`  ${PRINT[n.ty](names[k])}`));
    out.push(`  ${PRINT[e.ty](body.result)}`, '  std::printf("\\n");', '}', '');
  });
  out.push('int main() {', '  int n;', '  if (std::scanf("%d", &n) != 1) return 2;', '  for (int k = 0; k < n; k++) {', '    In in;');
  for (const f of fields) out.push(`    ${READ[f.ty](f.field)}`);
  exprs.forEach((_, i) => out.push(`    e${i}(in);`));
  out.push('  }', '  return 0;', '}', '');
  return { source: out.join('\n'), traced };
}

export function buildExprProgram(name: string, exprs: readonly Node[], scope: Scope): ExprProgram {
  const { source, traced } = exprProgramSource(exprs, scope);
  return { exe: compileProgram(name, source), scope, exprs, traced };
}

/** Values printed by the program: result[env][expr][k] is the value of traced[expr][k] in envs[env]. */
export function runExprProgram(prog: ExprProgram, envs: readonly Env[]): Value[][][] {
  const fields = slots(prog.scope);
  const input = [String(envs.length)];
  for (const env of envs) {
    input.push(
      fields
        .map((f) => {
          const v = f.field.startsWith('v_') ? env.vars[f.name] : env.params?.[f.name];
          if (v === undefined) throw new Error(`environment has no value for '${f.name}'`);
          return encode(f.ty === 'bool' ? Boolean(v) : f.ty === 'i32' ? Number(v) | 0 : Math.fround(Number(v)), f.ty);
        })
        .join(' '),
    );
  }
  const lines = runProgram(prog.exe, input.join('\n') + '\n').split('\n');
  const result: Value[][][] = [];
  for (let k = 0; k < envs.length; k++) {
    result.push(
      prog.traced.map((nodes, i) => {
        const line = lines[k * prog.exprs.length + i];
        const toks = line?.trim().split(' ') ?? [];
        if (toks.length !== nodes.length) throw new Error(`harness output line ${k * prog.exprs.length + i}: ${toks.length} values, expected ${nodes.length}`);
        return toks.map((t, j) => decode(t, nodes[j].ty));
      }),
    );
  }
  return result;
}
