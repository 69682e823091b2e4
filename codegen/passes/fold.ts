// Constant folding: constant subtrees are evaluated with the interpreter's op table, so folding is the
// semantics by construction. Ops whose backend results may differ by ulps (libm) are left to the backend.
import * as ir from '../ir.ts';
import type { Node } from '../ir.ts';
import { OPS } from '../ops.ts';

export function fold(root: Node): Node {
  return ir.transform(root, (n) => {
    if (n.op === 'const' || n.op === 'var' || n.op === 'param') return n;
    const op = OPS[n.op];
    if (op.ulps > 0 || !n.args.every((a) => a.op === 'const')) return n;
    return ir.constant(op.eval(n.args.map((a) => a.value as number | boolean), n.ty) as number | boolean, n.ty);
  });
}
