// What the front end produces and everything downstream consumes: a deployment with every DSL function
// lowered to IR and every value resolved. Plain data; no ts-morph types past this point.
import type { DType, Target } from '../dsl/deploy.ts';
import type { ModelConfig } from '../dsl/models.ts';
import type { Node, Ty } from './ir.ts';

/** A named parameter of a mask, score or policy, with its value in the spec. */
export interface ParamDecl {
  readonly name: string;
  readonly ty: Exclude<Ty, 'bool'>;
  readonly value: number;
}

/**
 * mask: bool over vars q, kv (i32). score: f32 over vars s (f32), q, kv, head (i32).
 * Runtime params appear as `param` nodes named `<name>`; with `const`, they are already substituted.
 */
export interface AttentionIR {
  readonly name: string;
  readonly params: readonly ParamDecl[];
  readonly const: boolean;
  readonly mask?: Node;
  readonly score?: Node;
}

/** keep: bool over vars kv, len (i32). */
export interface PolicyIR {
  readonly name: string;
  readonly params: readonly ParamDecl[];
  readonly const: boolean;
  readonly keep: Node;
}

/** mode 'sample': accept, bool over p, q, u, h (f32); residual, f32 over p, q. */
export interface VerifierIR {
  readonly name: string;
  readonly mode: 'greedy' | 'match' | 'sample';
  readonly accept?: Node;
  readonly residual?: Node;
  /** The spec declares the 'sample' rule lossy (it does not keep the target's distribution); absent otherwise. */
  readonly lossy?: true;
}

export interface PassIR {
  readonly attention: AttentionIR;
  readonly kv: PolicyIR;
}

export interface DeploymentIR {
  readonly model: ModelConfig;
  readonly target: PassIR;
  readonly draft: PassIR;
  readonly verify: VerifierIR;
  /** The most tokens a round drafts: the fixed gamma, or with adaptiveGamma the spec's gammaMax. */
  readonly gamma: number;
  /** gamma 'auto': the runtime picks 1..gamma per round. Absent for a fixed gamma. */
  readonly adaptiveGamma?: true;
  readonly shapes: { readonly batch: readonly number[]; readonly maxSeq: number; readonly pageSize: number };
  readonly dtype: DType;
  readonly arch: Target;
  /** The spec file it came from, or '<default>' for the built-in deployment. */
  readonly source: string;
}

/** Variables each DSL function kind binds, with their IR types, in parameter order. */
export const FN_VARS = {
  mask: [['q', 'i32'], ['kv', 'i32']],
  score: [['s', 'f32'], ['q', 'i32'], ['kv', 'i32'], ['head', 'i32']],
  keep: [['kv', 'i32'], ['len', 'i32']],
  accept: [['p', 'f32'], ['q', 'f32'], ['u', 'f32'], ['h', 'f32']],
  residual: [['p', 'f32'], ['q', 'f32']],
} as const satisfies Record<string, readonly (readonly [string, Ty])[]>;

export type FnKind = keyof typeof FN_VARS;
