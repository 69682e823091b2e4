// From a DeploymentIR to everything a backend renders: derived dimensions, the combined visibility
// predicate of each pass with its tile classification, runtime params in ABI order, the RoPE table, and
// the list of entry points. Backends only format what is decided here.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ModelConfig } from '../dsl/models.ts';
import { ATTN_CHUNK_PAGES, GEMM_ROLES, KERNELS, gemmShape, type GemmRole, type KernelSpec } from './abi.ts';
import * as ir from './ir.ts';
import type { Node } from './ir.ts';
import { deploymentLimitProblems } from './limits.ts';
import { modelConfigProblem } from './model-config.ts';
import { isCausal } from './passes/causal.ts';
import { classifyTile, type TileClass } from './passes/interval.ts';
import { fold } from './passes/fold.ts';
import { ropeInvFreq } from './rope.ts';
import type { DeploymentIR, ParamDecl, PassIR } from './spec.ts';

export const COMPILER_VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;

/** A runtime param of a pass: its slot in md_attn_args.params and where it came from. */
export interface PassParam extends ParamDecl {
  /** Name in the kernel's IR and the manifest: `attn_<name>` or `kv_<name>`. */
  readonly key: string;
  readonly index: number;
  readonly source: 'attention' | 'kv';
}

export interface PassPlan {
  readonly pass: 'target' | 'draft';
  readonly ir: PassIR;
  readonly params: readonly PassParam[];
  /** bool over vars q, kv: mask(q, kv) && keep(kv, q + 1), params renamed to their keys. */
  readonly visible: Node;
  /** Over vars q, p0, p1: the tile [p0, p1] is fully visible (must) / possibly visible (may) for row q. */
  readonly tile: TileClass;
  /** f32 over vars s, q, kv, head; undefined for plain softmax(s). */
  readonly score?: Node;
}

export interface Dims {
  readonly hidden: number;
  readonly intermediate: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Query heads per KV head (GQA). */
  readonly group: number;
  readonly vocab: number;
  readonly qDim: number;
  readonly kvDim: number;
}

export interface KernelInstance {
  /** C symbol, e.g. md_gemm_q_b32. */
  readonly symbol: string;
  readonly spec: KernelSpec;
  readonly bucket?: number;
  /** Most rows the instance accepts: bucket * (gamma + 1); unbounded for bucket-free kernels. */
  readonly maxRows?: number;
}

export interface ModulePlan {
  /** Readable cache name: model, arch, dtype, passes, gamma. */
  readonly name: string;
  /** Content hash of the deployment (IR included) and the compiler version. */
  readonly hash: string;
  readonly deployment: DeploymentIR;
  readonly model: ModelConfig;
  readonly dims: Dims;
  /** 1 / sqrt(head_dim), rounded to f32. */
  readonly scale: number;
  readonly rmsEps: number;
  /** float64 inverse frequencies (head_dim / 2), rope scaling applied. */
  readonly ropeInvFreq: readonly number[];
  readonly gamma: number;
  readonly buckets: readonly number[];
  readonly maxSeq: number;
  readonly pageSize: number;
  readonly pagesPerSeq: number;
  /** Split-KV chunk length in positions (a multiple of the page size). */
  readonly chunk: number;
  readonly maxChunks: number;
  readonly passes: { readonly target: PassPlan; readonly draft: PassPlan };
  readonly gemms: readonly { readonly role: GemmRole; readonly n: number; readonly k: number }[];
  readonly kernels: readonly KernelInstance[];
  /**
   * The rule md_verify_sample applies: accept, bool over p, q, u, h (f32); residual, f32 over p, q. A 'sample'
   * verifier's own (folded); for the other modes, which never call it, STANDARD_REJECTION's.
   */
  readonly verifierRule: { readonly accept: Node; readonly residual: Node; readonly from: string };
}

/** Speculative sampling's rule, the rejection preset's: accept when u * q < p (u in (0, 1)), resample from max(0, p - q). */
export const STANDARD_REJECTION = {
  accept: ir.lt(ir.mul(ir.variable('u', 'f32'), ir.variable('q', 'f32')), ir.variable('p', 'f32')),
  residual: ir.max(ir.constant(0, 'f32'), ir.sub(ir.variable('p', 'f32'), ir.variable('q', 'f32'))),
} as const;

/** A deployment no backend can implement (a model or plan invariant broken), named with what is wrong. */
export class PlanError extends Error {}

/** The message planModule throws for a target pass that may see later positions (the front end's MD1308). */
export const NON_CAUSAL_TARGET =
  'the target pass must be causal: its mask lets a query see later positions, which verification and chunked prefill would read; use it as the draft, or add kv <= q';


/**
 * Everything a backend renders, decided once. Throws a PlanError for a deployment that breaks a limit
 * (codegen/limits.ts) or a model/plan invariant, all problems in one message: the front end reports the
 * same rules as diagnostics, this is for deployments built in code. `kernels` is the ABI's list; a test
 * may extend it to see a kernel declared once reach every consumer.
 */
export function planModule(dep: DeploymentIR, kernels: readonly KernelSpec[] = KERNELS): ModulePlan {
  const m = dep.model;
  const dims: Dims = {
    hidden: m.hiddenSize,
    intermediate: m.intermediateSize,
    layers: m.numLayers,
    heads: m.numHeads,
    kvHeads: m.numKvHeads,
    headDim: m.headDim,
    group: m.numHeads / m.numKvHeads,
    vocab: m.vocabSize,
    qDim: m.numHeads * m.headDim,
    kvDim: m.numKvHeads * m.headDim,
  };
  const problems = deploymentLimitProblems(dep);
  // The config.json rules (docs/MODEL-FILES.md): dimension limits, numKvHeads dividing numHeads, an even
  // headDim (rotate-half RoPE pairs element i with i + headDim / 2), ...
  const modelProblem = modelConfigProblem(m);
  if (modelProblem) problems.push(`model ${m.name}: ${modelProblem}`);
  const passes = { target: planPass('target', dep.target, m), draft: planPass('draft', dep.draft, m) };
  // The draft may see later positions: it only ever runs with seq_len = q + 1 (docs/ARCHITECTURE.md, invariant 1).
  if (!isCausal(passes.target.visible)) problems.push(`${NON_CAUSAL_TARGET} (target ${passes.target.ir.attention.name} + ${passes.target.ir.kv.name})`);
  if (problems.length) throw new PlanError(`cannot plan ${moduleName(dep)}: ${problems.join('; ')}`);
  const { batch, maxSeq, pageSize } = dep.shapes;
  const chunk = pageSize * ATTN_CHUNK_PAGES;
  const instances: KernelInstance[] = kernels.flatMap((spec) =>
    spec.perBucket
      ? batch.map((b) => ({ symbol: `md_${spec.name}_b${b}`, spec, bucket: b, maxRows: b * (dep.gamma + 1) }))
      : [{ symbol: `md_${spec.name}`, spec }],
  );
  return {
    name: moduleName(dep),
    hash: deploymentHash(dep),
    deployment: dep,
    model: m,
    dims,
    scale: Math.fround(1 / Math.sqrt(m.headDim)),
    rmsEps: m.rmsNormEps,
    ropeInvFreq: ropeInvFreq(m),
    gamma: dep.gamma,
    buckets: batch,
    maxSeq,
    pageSize,
    pagesPerSeq: Math.ceil(maxSeq / pageSize),
    chunk,
    maxChunks: Math.ceil(maxSeq / chunk),
    passes,
    gemms: GEMM_ROLES.map((role) => ({ role, ...gemmShape(role, m) })),
    kernels: instances,
    verifierRule:
      dep.verify.mode === 'sample' && dep.verify.accept && dep.verify.residual
        ? { accept: fold(dep.verify.accept), residual: fold(dep.verify.residual), from: `verifier '${dep.verify.name}'` }
        : { ...STANDARD_REJECTION, from: 'the standard rule (this module\'s verifier has none)' },
  };
}

function planPass(pass: 'target' | 'draft', p: PassIR, model: ModelConfig): PassPlan {
  const attnParams = p.attention.const ? [] : p.attention.params;
  const kvParams = p.kv.const ? [] : p.kv.params;
  const params: PassParam[] = [
    ...attnParams.map((d) => ({ ...d, key: `attn_${d.name}`, source: 'attention' as const })),
    ...kvParams.map((d) => ({ ...d, key: `kv_${d.name}`, source: 'kv' as const })),
  ].map((d, index) => ({ ...d, index }));
  const visible = passVisibility(p, model);
  const tile = classifyTile(visible);
  return {
    pass,
    ir: p,
    params,
    visible,
    tile: { must: fold(tile.must), may: fold(tile.may) },
    score: p.attention.score && fold(renameParams(p.attention.score, 'attn_')),
  };
}

/**
 * What a row at position q of the pass sees, as a bool over vars q, kv: mask(q, kv) && keep(kv, q + 1) &&
 * the model's window, params renamed to their keys (attn_<name>, kv_<name>), folded.
 */
export function passVisibility(p: PassIR, model: Pick<ModelConfig, 'slidingWindow'>): Node {
  const mask = p.attention.mask ? renameParams(p.attention.mask, 'attn_') : ir.constant(true);
  const q = ir.variable('q', 'i32');
  // The policy sees the sequence as the row does: len = q + 1 (see codegen/abi.ts).
  const keep = substitute(renameParams(p.kv.keep, 'kv_'), { len: ir.add(q, ir.constant(1)) });
  return fold(ir.and(ir.and(mask, keep), modelWindow(model)));
}

/** The model's own attention restriction (Mistral's sliding window): part of every pass, target and draft. */
function modelWindow(m: Pick<ModelConfig, 'slidingWindow'>): Node {
  if (m.slidingWindow === undefined) return ir.constant(true);
  return ir.lt(ir.sub(ir.variable('q', 'i32'), ir.variable('kv', 'i32')), ir.constant(m.slidingWindow));
}

function renameParams(root: Node, prefix: string): Node {
  return ir.transform(root, (n) => (n.op === 'param' ? ir.param(prefix + String(n.value), n.ty) : n));
}

/** Replace variables by expressions. */
export function substitute(root: Node, bindings: Readonly<Record<string, Node>>): Node {
  return ir.transform(root, (n) => (n.op === 'var' && bindings[n.value as string] ? bindings[n.value as string] : n));
}

export function moduleName(dep: DeploymentIR): string {
  const pass = (p: PassIR) => `${p.attention.name}-${p.kv.name}`;
  return [dep.model.name, dep.arch, dep.dtype, `t_${pass(dep.target)}`, `d_${pass(dep.draft)}`, dep.verify.name, `g${dep.adaptiveGamma ? 'auto' : ''}${dep.gamma}`]
    .join('.')
    .replace(/[^A-Za-z0-9_.-]/g, '_');
}

/**
 * What the kernels depend on, hashed: stable over runs (IR nodes by content key), and blind to the values
 * of runtime params and to where the spec lives, so a new param value or a moved spec changes only the
 * manifest, never a kernel's source.
 */
export function deploymentHash(dep: DeploymentIR): string {
  const params = (decls: readonly ParamDecl[], baked: boolean) => decls.map((d) => (baked ? d : { name: d.name, ty: d.ty }));
  const pass = (p: PassIR) => ({
    attention: { ...p.attention, params: params(p.attention.params, p.attention.const) },
    kv: { ...p.kv, params: params(p.kv.params, p.kv.const) },
  });
  const kernelInputs = { ...dep, source: undefined, target: pass(dep.target), draft: pass(dep.draft) };
  const canonical = JSON.stringify({ compiler: COMPILER_VERSION, dep: kernelInputs }, (_k, v) => (v instanceof ir.Node ? `ir:${v.key}` : v));
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}
