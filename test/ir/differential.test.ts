// Interpreter (the oracle) vs the C++ the renderer emits, compiled with g++ against md_expr.h: random
// expressions over every op, evaluated on random environments biased towards edge values.
//
// Two checks:
// - end to end, bitwise (NaN == NaN), for every expression without a transcendental op;
// - op by op, for every expression: each interior node's compiled value against the op's interpreter
//   definition applied to the *compiled* operand values. Exact ops must agree bitwise; an op with
//   OPS[op].ulps > 0 (exp, log, tanh, pow) within that many f32 ulps. Checking each op on the compiled
//   operands is what makes the bound simple: the ulps of one libm call are never propagated through later
//   ops (which could amplify them without limit, e.g. through a comparison or a subtraction).
// The seed is fixed so the program is compiled once and then cached; MAGICDEC_FUZZ_SEED picks another.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { show, topo, type Node } from '../../codegen/ir.ts';
import { evaluate, type Env } from '../../codegen/interp.ts';
import { OPS, type Value } from '../../codegen/ops.ts';
import { fold } from '../../codegen/passes/fold.ts';
import { envArb, exprArb, TRANSCENDENTAL_OPS, type Scope } from '../arbitraries.ts';
import { sameValue, showValue, ulpDistance } from '../harness/expr/bits.ts';
import { buildExprProgram, runExprProgram, type ExprProgram } from '../harness/expr/program.ts';

const SEED = Number(process.env.MAGICDEC_FUZZ_SEED ?? 0x6d616763);
const SCOPE: Scope = {
  vars: { q: 'i32', kv: 'i32', len: 'i32', s: 'f32', u: 'f32', flag: 'bool' },
  params: { window: 'i32', cap: 'f32' },
};
const N_EXPRS = 240;
const N_ENVS = 300;
const MAX_REPORTED = 8;

const anyExpr = fc.oneof(exprArb('bool', SCOPE), exprArb('i32', SCOPE), exprArb('f32', SCOPE));
const sampled = fc.sample(anyExpr, { seed: SEED, numRuns: N_EXPRS });
// Folded variants too: they exercise the constants fold produces (NaN, -0, INT_MIN, ...) through g++.
const EXPRS: Node[] = [...new Set([...sampled, ...sampled.map(fold)])];
const ENVS: Env[] = fc.sample(envArb(SCOPE), { seed: SEED + 1, numRuns: N_ENVS });

const hasTranscendental = (e: Node) => topo(e).some((n) => TRANSCENDENTAL_OPS.has(n.op));
const showEnv = (env: Env) => JSON.stringify({ ...env.vars, ...env.params }, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : Object.is(v, -0) ? '-0' : v));

let prog: ExprProgram;
let results: Value[][][];

beforeAll(() => {
  prog = buildExprProgram('differential', EXPRS, SCOPE);
  results = runExprProgram(prog, ENVS);
}, 120_000);

describe('interpreter vs compiled C++', () => {
  it('the sample covers every op of the op table', () => {
    const seen = new Set(EXPRS.flatMap((e) => topo(e).map((n) => n.op)));
    expect(Object.keys(OPS).filter((op) => !seen.has(op as Node['op']))).toEqual([]);
  });

  it('agrees bitwise end to end on expressions without transcendental ops', () => {
    const bad: string[] = [];
    let compared = 0;
    EXPRS.forEach((e, i) => {
      if (hasTranscendental(e)) return;
      ENVS.forEach((env, k) => {
        const want = evaluate(e, env);
        const trace = results[k][i];
        const got = trace[trace.length - 1];
        compared++;
        if (!sameValue(want, got, e.ty) && bad.length < MAX_REPORTED)
          bad.push(`${show(e)}\n  env ${showEnv(env)}\n  interpreter ${showValue(want, e.ty)}, C++ ${showValue(got, e.ty)}`);
      });
    });
    expect(compared).toBeGreaterThan(N_EXPRS * N_ENVS * 0.3);
    expect(bad, `seed ${SEED}`).toEqual([]);
  });

  it('agrees op by op on every expression (transcendentals within OPS[op].ulps)', () => {
    const bad: string[] = [];
    let transcendentalChecks = 0;
    EXPRS.forEach((e, i) => {
      const traced = prog.traced[i];
      ENVS.forEach((env, k) => {
        const compiled = new Map<Node, Value>();
        traced.forEach((n, j) => compiled.set(n, results[k][i][j]));
        const valueOf = (n: Node): Value => compiled.get(n) ?? evaluate(n, env); // leaves: env or constant
        for (const n of traced.slice(0, -1)) {
          const def = OPS[n.op as keyof typeof OPS];
          const operands = n.args.map(valueOf);
          const want = def.eval(operands, n.ty);
          const got = compiled.get(n)!;
          const ok = def.ulps > 0 ? ulpDistance(want as number, got as number) <= def.ulps : sameValue(want, got, n.ty);
          if (def.ulps > 0) transcendentalChecks++;
          if (!ok && bad.length < MAX_REPORTED)
            bad.push(`${n.op}(${operands.map((v, a) => showValue(v, n.args[a].ty)).join(', ')}): interpreter ${showValue(want, n.ty)}, C++ ${showValue(got, n.ty)}\n  in ${show(e)}`);
        }
      });
    });
    expect(transcendentalChecks).toBeGreaterThan(1000);
    expect(bad, `seed ${SEED}`).toEqual([]);
  });
});

describe('fold', () => {
  it('preserves the value of every sampled expression on every environment', () => {
    const bad: string[] = [];
    for (const e of sampled) {
      const f = fold(e);
      expect(f.ty).toBe(e.ty);
      for (const env of ENVS.slice(0, 100)) {
        const want = evaluate(e, env);
        const got = evaluate(f, env);
        if (!sameValue(want, got, e.ty) && bad.length < MAX_REPORTED)
          bad.push(`${show(e)}\n  folded ${show(f)}\n  env ${showEnv(env)}: ${showValue(want, e.ty)} became ${showValue(got, e.ty)}`);
      }
    }
    expect(bad, `seed ${SEED}`).toEqual([]);
  });

  it('the folded expressions compile to the same values as the originals', () => {
    // Folded variants sit in the same program; compare their compiled roots to the originals' compiled roots
    // wherever no transcendental op is involved (those are left unfolded, so only exact parts differ).
    let compared = 0;
    sampled.forEach((e) => {
      const f = fold(e);
      if (f === e || hasTranscendental(e)) return;
      const i = EXPRS.indexOf(e);
      const j = EXPRS.indexOf(f);
      ENVS.forEach((_, k) => {
        const a = results[k][i].at(-1)!;
        const b = results[k][j].at(-1)!;
        compared++;
        expect(sameValue(a, b, e.ty), `${show(e)} vs ${show(f)}`).toBe(true);
      });
    });
    expect(compared).toBeGreaterThan(0);
  });
});
