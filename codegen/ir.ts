// The IR: one immutable node type, hash-consed, so structurally equal expressions are the same object and
// every node carries a stable content key. Typing (and the i32→f32 promotions the TypeScript semantics
// imply) happens in the builders; `ops.ts` defines what each op means and how it renders.
import { createHash } from 'node:crypto';

export type Ty = 'bool' | 'i32' | 'f32';

export type Op =
  | 'const' | 'var' | 'param'
  | 'add' | 'sub' | 'mul' | 'div' | 'mod' | 'neg'
  | 'lt' | 'le' | 'gt' | 'ge' | 'eq' | 'ne'
  | 'and' | 'or' | 'not' | 'select'
  | 'min' | 'max' | 'abs' | 'floor' | 'ceil' | 'trunc' | 'sqrt' | 'exp' | 'log' | 'tanh' | 'pow'
  | 'tof32';

export class Node {
  private constructor(
    readonly op: Op,
    readonly ty: Ty,
    readonly args: readonly Node[],
    /** const: the number/boolean; var and param: the name. */
    readonly value: number | boolean | string | undefined,
    readonly key: string,
  ) {
    Object.freeze(this);
  }

  private static readonly table = new Map<string, Node>();

  static make(op: Op, ty: Ty, args: readonly Node[], value?: number | boolean | string): Node {
    const v = typeof value === 'number' ? numberKey(value) : value === undefined ? '' : `${typeof value}:${value}`;
    const structure = `${op}|${ty}|${v}|${args.map((a) => a.key).join(',')}`;
    let node = Node.table.get(structure);
    if (!node) {
      const key = createHash('sha256').update(structure).digest('hex').slice(0, 16);
      node = new Node(op, ty, Object.freeze([...args]), value, key);
      Node.table.set(structure, node);
    }
    return node;
  }
}

/** Distinguishes -0 and NaN payload-free, so constants hash by value exactly. */
function numberKey(x: number): string {
  return Object.is(x, -0) ? '-0' : String(x);
}

export const fround = Math.fround;

export function isI32(x: number): boolean {
  return Number.isInteger(x) && x >= -2147483648 && x <= 2147483647 && !Object.is(x, -0);
}

// ---------------------------------------------------------------------------------------------- builders

export const constant = (x: number | boolean, ty?: Ty): Node => {
  if (typeof x === 'boolean') return Node.make('const', 'bool', [], x);
  const t: Ty = ty ?? (isI32(x) ? 'i32' : 'f32');
  return Node.make('const', t, [], t === 'f32' ? fround(x) : x | 0);
};
export const variable = (name: string, ty: Ty): Node => Node.make('var', ty, [], name);
export const param = (name: string, ty: Ty): Node => Node.make('param', ty, [], name);

export const toF32 = (a: Node): Node => {
  if (a.ty === 'f32') return a;
  if (a.ty !== 'i32') throw new TypeError(`cannot use a ${a.ty} as a number`);
  if (a.op === 'const') return constant(a.value as number, 'f32');
  return Node.make('tof32', 'f32', [a]);
};

function numeric(a: Node, b: Node): [Node, Node, Ty] {
  if (a.ty === 'bool' || b.ty === 'bool') throw new TypeError('arithmetic on a boolean');
  if (a.ty === 'i32' && b.ty === 'i32') return [a, b, 'i32'];
  return [toF32(a), toF32(b), 'f32'];
}

const arith = (op: Op) => (x: Node, y: Node): Node => {
  const [a, b, ty] = numeric(x, y);
  return Node.make(op, ty, [a, b]);
};
export const add = arith('add');
export const sub = arith('sub');
export const mul = arith('mul');
export const mod = arith('mod');
export const min = arith('min');
export const max = arith('max');
/** TypeScript `/` is real division: always f32. */
export const div = (a: Node, b: Node): Node => Node.make('div', 'f32', [toF32(a), toF32(b)]);
export const pow = (a: Node, b: Node): Node => Node.make('pow', 'f32', [toF32(a), toF32(b)]);

export const neg = (a: Node): Node => {
  if (a.ty === 'bool') throw new TypeError('negation of a boolean');
  return Node.make('neg', a.ty, [a]);
};
export const abs = (a: Node): Node => {
  if (a.ty === 'bool') throw new TypeError('abs of a boolean');
  return Node.make('abs', a.ty, [a]);
};
/** floor/ceil/trunc of an i32 is the identity; of an f32 stays f32 (a JS number). */
const rounding = (op: Op) => (a: Node): Node => (a.ty === 'i32' ? a : Node.make(op, 'f32', [toF32(a)]));
export const floor = rounding('floor');
export const ceil = rounding('ceil');
export const trunc = rounding('trunc');
const transcendental = (op: Op) => (a: Node): Node => Node.make(op, 'f32', [toF32(a)]);
export const sqrt = transcendental('sqrt');
export const exp = transcendental('exp');
export const log = transcendental('log');
export const tanh = transcendental('tanh');

const compare = (op: Op) => (x: Node, y: Node): Node => {
  const [a, b] = numeric(x, y);
  return Node.make(op, 'bool', [a, b]);
};
export const lt = compare('lt');
export const le = compare('le');
export const gt = compare('gt');
export const ge = compare('ge');
export const eq = (x: Node, y: Node): Node =>
  x.ty === 'bool' && y.ty === 'bool' ? Node.make('eq', 'bool', [x, y]) : compare('eq')(x, y);
export const ne = (x: Node, y: Node): Node =>
  x.ty === 'bool' && y.ty === 'bool' ? Node.make('ne', 'bool', [x, y]) : compare('ne')(x, y);

const logical = (op: Op) => (a: Node, b: Node): Node => {
  if (a.ty !== 'bool' || b.ty !== 'bool') throw new TypeError(`'${op}' needs booleans`);
  return Node.make(op, 'bool', [a, b]);
};
export const and = logical('and');
export const or = logical('or');
export const not = (a: Node): Node => {
  if (a.ty !== 'bool') throw new TypeError("'!' needs a boolean");
  return Node.make('not', 'bool', [a]);
};

export const select = (c: Node, x: Node, y: Node): Node => {
  if (c.ty !== 'bool') throw new TypeError('condition must be a boolean');
  if (x.ty === 'bool' || y.ty === 'bool') {
    if (x.ty !== y.ty) throw new TypeError('branches of a conditional must have the same type');
    return Node.make('select', 'bool', [c, x, y]);
  }
  const [a, b, ty] = numeric(x, y);
  return Node.make('select', ty, [c, a, b]);
};

/** Nodes of the DAG rooted at `roots`, each once, operands before users. */
export function topo(...roots: Node[]): Node[] {
  const seen = new Set<Node>();
  const out: Node[] = [];
  const visit = (n: Node) => {
    if (seen.has(n)) return;
    seen.add(n);
    n.args.forEach(visit);
    out.push(n);
  };
  roots.forEach(visit);
  return out;
}

/** Rebuild `root` bottom-up through `rewrite`, which sees nodes whose operands are already rewritten. */
export function transform(root: Node, rewrite: (n: Node) => Node): Node {
  const memo = new Map<Node, Node>();
  for (const n of topo(root)) {
    const args = n.args.map((a) => memo.get(a)!);
    const rebuilt = args.every((a, i) => a === n.args[i]) ? n : Node.make(n.op, n.ty, args, n.value);
    memo.set(n, rewrite(rebuilt));
  }
  return memo.get(root)!;
}

/** A printable S-expression, for diagnostics, snapshots and debugging. */
export function show(n: Node): string {
  switch (n.op) {
    case 'const':
      return n.ty === 'f32' ? `${numberKey(n.value as number)}f` : String(n.value);
    case 'var':
      return String(n.value);
    case 'param':
      return `p.${n.value}`;
    default:
      return `(${n.op} ${n.args.map(show).join(' ')})`;
  }
}

