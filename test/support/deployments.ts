// Deployments built directly in IR, for backend and runtime tests that should not depend on the front
// end. Each mirrors a preset in dsl/presets.ts (the front-end tests check that lowering the preset source
// gives the same IR).
import type { DType, Target } from '../../dsl/deploy.ts';
import { models, type ModelConfig } from '../../dsl/models.ts';
import * as ir from '../../codegen/ir.ts';
import { STANDARD_REJECTION } from '../../codegen/plan.ts';
import type { AttentionIR, DeploymentIR, PolicyIR, VerifierIR } from '../../codegen/spec.ts';

const q = ir.variable('q', 'i32');
const kv = ir.variable('kv', 'i32');
const len = ir.variable('len', 'i32');
const s = ir.variable('s', 'f32');
const head = ir.variable('head', 'i32');
const i32 = (name: string) => ir.param(name, 'i32');
const causalMask = ir.le(kv, q);

export const attentions = {
  causal: (): AttentionIR => ({ name: 'causal', params: [], const: false, mask: causalMask }),
  slidingWindow: (w: number): AttentionIR => ({
    name: 'sliding_window',
    params: [{ name: 'window', ty: 'i32', value: w }],
    const: false,
    mask: ir.and(causalMask, ir.lt(ir.sub(q, kv), i32('window'))),
  }),
  softcap: (cap: number): AttentionIR => ({
    name: 'softcap',
    params: [{ name: 'cap', ty: Number.isInteger(cap) ? 'i32' : 'f32', value: cap }],
    const: false,
    mask: causalMask,
    score: ir.mul(ir.param('cap', Number.isInteger(cap) ? 'i32' : 'f32'), ir.tanh(ir.div(s, ir.param('cap', Number.isInteger(cap) ? 'i32' : 'f32')))),
  }),
  alibi: (heads: number): AttentionIR => ({
    name: 'alibi',
    params: [{ name: 'heads', ty: 'i32', value: heads }],
    const: true,
    mask: causalMask,
    score: ir.sub(s, ir.mul(ir.pow(ir.constant(2), ir.div(ir.mul(ir.constant(-8), ir.add(head, ir.constant(1))), ir.constant(heads))), ir.sub(q, kv))),
  }),
  prefixLM: (prefix: number): AttentionIR => ({
    name: 'prefix_lm',
    params: [{ name: 'prefix', ty: 'i32', value: prefix }],
    const: false,
    mask: ir.or(ir.lt(kv, i32('prefix')), ir.le(kv, q)),
  }),
};

const f32v = (name: string) => ir.variable(name, 'f32');

/** The verifier presets: greedy, sampleAndMatch, rejection (its rule is planModule's STANDARD_REJECTION) and typical (lossy). */
export const verifiers = {
  /** dsl/presets.ts typical({ eps, delta }) as the front end lowers it: p > min(eps, delta * exp(-h)), residual p. */
  typical: (eps = 0.09, delta = 0.3): VerifierIR => ({
    name: 'typical',
    mode: 'sample',
    lossy: true,
    accept: ir.gt(f32v('p'), ir.min(ir.constant(eps, 'f32'), ir.mul(ir.constant(delta, 'f32'), ir.exp(ir.neg(f32v('h')))))),
    residual: f32v('p'),
  }),
  greedy: (): VerifierIR => ({ name: 'greedy', mode: 'greedy' }),
  sampleAndMatch: (): VerifierIR => ({ name: 'sample_and_match', mode: 'match' }),
  rejection: (): VerifierIR => ({ name: 'rejection', mode: 'sample', accept: STANDARD_REJECTION.accept, residual: STANDARD_REJECTION.residual }),
};

export const policies = {
  full: (): PolicyIR => ({ name: 'full', params: [], const: false, keep: ir.constant(true) }),
  streaming: (sink: number, window: number): PolicyIR => ({
    name: 'streaming',
    params: [
      { name: 'sink', ty: 'i32', value: sink },
      { name: 'window', ty: 'i32', value: window },
    ],
    const: false,
    keep: ir.or(ir.lt(kv, i32('sink')), ir.ge(kv, ir.sub(len, i32('window')))),
  }),
  window: (w: number): PolicyIR => ({
    name: 'window',
    params: [{ name: 'window', ty: 'i32', value: w }],
    const: false,
    keep: ir.ge(kv, ir.sub(len, i32('window'))),
  }),
};

export interface DeploymentOptions {
  model?: ModelConfig;
  target?: { attention: AttentionIR; kv: PolicyIR };
  draft?: { attention: AttentionIR; kv: PolicyIR };
  gamma?: number;
  batch?: number[];
  maxSeq?: number;
  pageSize?: number;
  dtype?: DType;
  arch?: Target;
}

/** MagicDec self-speculation on `tiny` unless overridden. */
export function makeDeployment(o: DeploymentOptions = {}): DeploymentIR {
  return {
    model: o.model ?? models.tiny,
    target: o.target ?? { attention: attentions.causal(), kv: policies.full() },
    draft: o.draft ?? { attention: attentions.causal(), kv: policies.streaming(4, 60) },
    verify: { name: 'greedy', mode: 'greedy' },
    gamma: o.gamma ?? 3,
    shapes: { batch: o.batch ?? [1, 8], maxSeq: o.maxSeq ?? 4096, pageSize: o.pageSize ?? 16 },
    dtype: o.dtype ?? 'fp32',
    arch: o.arch ?? 'cpu',
    source: '<test>',
  };
}

/** A small random-ish model config for kernel tests (head_dim 16-64, MHA or GQA). */
export function modelConfig(o: Partial<ModelConfig> & { headDim: number; numHeads: number; numKvHeads: number }): ModelConfig {
  const hidden = o.hiddenSize ?? o.numHeads * o.headDim;
  return {
    ...models.tiny,
    name: `t${o.numHeads}x${o.numKvHeads}x${o.headDim}`,
    hiddenSize: hidden,
    intermediateSize: o.intermediateSize ?? 2 * hidden,
    ...o,
  };
}
