// Values of the static partial evaluator. Primitives are plain JS values; objects and arrays remember the
// expression each entry came from, so validation can point at the offending expression.
import type { SourceFile, Node as TsNode } from 'ts-morph';
import type { AttentionIR, DeploymentIR, PolicyIR, VerifierIR } from '../spec.ts';

/** An evaluated value together with the expression it came from. */
export interface Slot {
  readonly value: Value;
  readonly node: TsNode;
}

export class ObjVal {
  constructor(readonly props: ReadonlyMap<string, Slot>) {}
}

export class ArrVal {
  constructor(readonly items: readonly Slot[]) {}
}

/** Bindings of parameters and local consts, by declaration node; chained to the enclosing scope. */
export class Env {
  private readonly vars = new Map<TsNode, Slot>();
  constructor(readonly parent?: Env) {}

  bind(decl: TsNode, slot: Slot): void {
    this.vars.set(decl, slot);
  }

  lookup(decl: TsNode): Slot | undefined {
    for (let e: Env | undefined = this; e; e = e.parent) {
      const s = e.vars.get(decl);
      if (s) return s;
    }
    return undefined;
  }
}

/** A function the evaluator can call or the lowering can compile, with the scope it closes over. */
export class FnVal {
  constructor(
    /** ArrowFunction, FunctionExpression, FunctionDeclaration or MethodDeclaration. */
    readonly decl: TsNode,
    readonly env: Env,
  ) {}
}

/** One of the DSL primitives (attention, kvPolicy, verifier, deploy), recognised by its declaration. */
export class PrimitiveVal {
  constructor(readonly name: 'attention' | 'kvPolicy' | 'verifier' | 'deploy') {}
}

/** A Math.* function usable in static evaluation. */
export class MathFnVal {
  constructor(readonly name: string) {}
}

/** A module namespace (`import * as md from 'magicdec'`): member access reads its exports. */
export class ModuleVal {
  constructor(readonly file: SourceFile) {}
}

/** The global `Math` object: member access yields MATH_CONSTANTS and MATH_INTRINSICS. */
export class MathNamespace {}
export const MATH = new MathNamespace();

/** The result of a DSL primitive call; `ir` is absent when the call had errors. */
export class DescriptorVal {
  constructor(
    readonly kind: 'attention' | 'kvPolicy' | 'verifier' | 'deploy',
    /** The evaluated definition object (property access on a descriptor reads it). */
    readonly def: ObjVal,
    readonly ir: AttentionIR | PolicyIR | VerifierIR | Omit<DeploymentIR, 'source'> | undefined,
  ) {}
}

/** Marks a value that could not be evaluated; a diagnostic has already been reported for it. */
export const POISON: unique symbol = Symbol('poison');

export type Value =
  | number
  | string
  | boolean
  | undefined
  | null
  | ObjVal
  | ArrVal
  | FnVal
  | PrimitiveVal
  | MathFnVal
  | MathNamespace
  | ModuleVal
  | DescriptorVal
  | typeof POISON;

/** A short description of a value's kind, for messages. */
export function kindOf(v: Value): string {
  if (v === POISON) return 'an error';
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'number') return `the number ${v}`;
  if (typeof v === 'string') return `the string '${v}'`;
  if (typeof v === 'boolean') return `the boolean ${v}`;
  if (v instanceof ObjVal) return 'an object';
  if (v instanceof ArrVal) return 'an array';
  if (v instanceof FnVal || v instanceof MathFnVal) return 'a function';
  if (v instanceof MathNamespace) return 'the Math object';
  if (v instanceof ModuleVal) return `the module ${v.file.getBaseName()}`;
  if (v instanceof PrimitiveVal) return `the DSL function ${v.name}`;
  return `${v.kind === 'attention' ? 'an' : 'a'} ${v.kind}(...) descriptor`;
}

/** Convert an evaluated value to plain JSON-like data (objects, arrays, primitives), or POISON. */
export function toPlain(v: Value): unknown {
  if (v instanceof ObjVal) {
    const out: Record<string, unknown> = {};
    for (const [k, s] of v.props) {
      const p = toPlain(s.value);
      if (p === POISON) return POISON;
      if (p !== undefined) out[k] = p;
    }
    return out;
  }
  if (v instanceof ArrVal) {
    const out = v.items.map((s) => toPlain(s.value));
    return out.includes(POISON) ? POISON : out;
  }
  if (v === null || v === undefined || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') return v;
  return POISON;
}
