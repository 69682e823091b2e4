// Hash-consing: structurally equal builds are one object, distinct structures have distinct keys, and
// keys are a pure function of structure (the same in another process), since cache names derive from them.
import { execFileSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as ir from '../../codegen/ir.ts';
import { Node, topo } from '../../codegen/ir.ts';
import { exprArb, type Scope } from '../arbitraries.ts';

const SCOPE: Scope = { vars: { q: 'i32', kv: 'i32', s: 'f32', flag: 'bool' }, params: { w: 'i32', cap: 'f32' } };
const anyExpr = fc.oneof(exprArb('bool', SCOPE), exprArb('i32', SCOPE), exprArb('f32', SCOPE));
const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '../..');

/** Rebuild through the public builders (not Node.make), as the front end would. */
function rebuild(n: Node): Node {
  const a = n.args.map(rebuild);
  const unary: Partial<Record<ir.Op, (x: Node) => Node>> = {
    neg: ir.neg, abs: ir.abs, floor: ir.floor, ceil: ir.ceil, trunc: ir.trunc, sqrt: ir.sqrt, exp: ir.exp,
    log: ir.log, tanh: ir.tanh, not: ir.not, tof32: ir.toF32,
  };
  const binary: Partial<Record<ir.Op, (x: Node, y: Node) => Node>> = {
    add: ir.add, sub: ir.sub, mul: ir.mul, div: ir.div, mod: ir.mod, min: ir.min, max: ir.max, pow: ir.pow,
    lt: ir.lt, le: ir.le, gt: ir.gt, ge: ir.ge, eq: ir.eq, ne: ir.ne, and: ir.and, or: ir.or,
  };
  switch (n.op) {
    case 'const':
      return ir.constant(n.value as number | boolean, n.ty);
    case 'var':
      return ir.variable(n.value as string, n.ty);
    case 'param':
      return ir.param(n.value as string, n.ty);
    case 'select':
      return ir.select(a[0], a[1], a[2]);
    default:
      return n.args.length === 1 ? unary[n.op]!(a[0]) : binary[n.op]!(a[0], a[1]);
  }
}

type Tree = { op: ir.Op; ty: ir.Ty; v?: string; args: Tree[] };
const encodeValue = (v: Node['value']) =>
  v === undefined ? undefined : typeof v === 'number' ? `n:${Object.is(v, -0) ? '-0' : String(v)}` : `${typeof v}:${String(v)}`;
const toTree = (n: Node): Tree => ({ op: n.op, ty: n.ty, v: encodeValue(n.value), args: n.args.map(toTree) });

describe('hash-consing', () => {
  it('rebuilding an expression through the builders gives the same object', () => {
    fc.assert(fc.property(anyExpr, (e) => rebuild(e) === e));
  });

  it('distinct nodes have distinct keys, equal keys mean the same node', () => {
    const byKey = new Map<string, Node>();
    for (const e of fc.sample(anyExpr, { seed: 7, numRuns: 400 }))
      for (const n of topo(e)) {
        const prev = byKey.get(n.key);
        expect(prev === undefined || prev === n).toBe(true);
        byKey.set(n.key, n);
      }
    expect(byKey.size).toBeGreaterThan(500);
  });

  it('constants hash by exact value and type', () => {
    expect(ir.constant(0, 'f32')).not.toBe(ir.constant(-0, 'f32'));
    expect(ir.constant(NaN)).toBe(ir.constant(Number.NaN, 'f32'));
    expect(ir.constant(1, 'i32')).not.toBe(ir.constant(1, 'f32'));
    expect(ir.constant(1)).not.toBe(ir.constant(true));
    expect(ir.constant(0.1)).toBe(ir.constant(Math.fround(0.1)));
    expect(ir.variable('q', 'i32')).not.toBe(ir.param('q', 'i32'));
    expect(ir.variable('q', 'i32')).not.toBe(ir.variable('q', 'f32'));
    expect(ir.add(ir.variable('q', 'i32'), ir.constant(1))).not.toBe(ir.add(ir.constant(1), ir.variable('q', 'i32')));
  });

  it('nodes and their operand lists are immutable', () => {
    const n = ir.add(ir.variable('q', 'i32'), ir.constant(1));
    expect(Object.isFrozen(n)).toBe(true);
    expect(Object.isFrozen(n.args)).toBe(true);
  });

  it('keys are the same when the structures are built in another process', () => {
    const exprs = fc.sample(anyExpr, { seed: 11, numRuns: 40 });
    const script = `
      import { Node } from './codegen/ir.ts';
      const decode = (v) => v === undefined ? undefined : v.startsWith('n:') ? Number(v.slice(2)) : v.startsWith('boolean:') ? v === 'boolean:true' : v.slice(v.indexOf(':') + 1);
      const build = (t) => Node.make(t.op, t.ty, t.args.map(build), decode(t.v));
      let input = '';
      process.stdin.on('data', (d) => (input += d)).on('end', () => console.log(JSON.stringify(JSON.parse(input).map((t) => build(t).key))));`;
    const out = execFileSync(resolve(ROOT, 'node_modules/.bin/tsx'), ['--input-type=module', '-e', script], {
      cwd: ROOT,
      input: JSON.stringify(exprs.map(toTree)),
      encoding: 'utf8',
    });
    expect(JSON.parse(out)).toEqual(exprs.map((e) => e.key));
  }, 30_000);
});
