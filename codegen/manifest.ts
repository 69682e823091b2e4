// manifest.json: what a module holds and what it was built for. The runtime's loader checks it against
// the model and the requested shapes; modules embed the same text (md_module_manifest()).
import { MANIFEST_FORMAT } from './abi.ts';
import * as ir from './ir.ts';
import { COMPILER_VERSION, type ModulePlan, type PassPlan } from './plan.ts';

export interface Manifest {
  format: number;
  name: string;
  hash: string;
  compiler: string;
  source: string;
  arch: string;
  dtype: string;
  /** The most tokens a round drafts (kernels take up to bucket * (gamma + 1) rows). */
  gamma: number;
  /** Present (true) when built with gamma 'auto': engines then choose 1..gamma per round by default. */
  adaptiveGamma?: true;
  buckets: number[];
  maxSeq: number;
  pageSize: number;
  pagesPerSeq: number;
  chunk: number;
  maxChunks: number;
  model: {
    name: string;
    architecture: string;
    hiddenSize: number;
    intermediateSize: number;
    numLayers: number;
    numHeads: number;
    numKvHeads: number;
    headDim: number;
    vocabSize: number;
    ropeTheta: number;
    ropeScaling: unknown;
    rmsNormEps: number;
    qkvBias: boolean;
    tieWordEmbeddings: boolean;
    slidingWindow: number | null;
  };
  passes: Record<'target' | 'draft', { attention: string; kv: string; visible: string; score?: string; params: { key: string; name: string; source: string; ty: string; value: number; index: number }[] }>;
  verify: { name: string; mode: string; accept?: string; residual?: string };
  kernels: { symbol: string; name: string; bucket?: number; maxRows?: number; args: { name: string; type: string }[] }[];
}

export function buildManifest(plan: ModulePlan): Manifest {
  const m = plan.model;
  const d = plan.deployment;
  const pass = (p: PassPlan) => ({
    attention: p.ir.attention.name,
    kv: p.ir.kv.name,
    visible: ir.show(p.visible),
    ...(p.score ? { score: ir.show(p.score) } : {}),
    params: p.params.map(({ key, name, source, ty, value, index }) => ({ key, name, source, ty, value, index })),
  });
  return {
    format: MANIFEST_FORMAT,
    name: plan.name,
    hash: plan.hash,
    compiler: COMPILER_VERSION,
    source: d.source,
    arch: d.arch,
    dtype: d.dtype,
    gamma: plan.gamma,
    ...(d.adaptiveGamma ? { adaptiveGamma: true as const } : {}),
    buckets: [...plan.buckets],
    maxSeq: plan.maxSeq,
    pageSize: plan.pageSize,
    pagesPerSeq: plan.pagesPerSeq,
    chunk: plan.chunk,
    maxChunks: plan.maxChunks,
    model: {
      name: m.name,
      architecture: m.architecture,
      hiddenSize: m.hiddenSize,
      intermediateSize: m.intermediateSize,
      numLayers: m.numLayers,
      numHeads: m.numHeads,
      numKvHeads: m.numKvHeads,
      headDim: m.headDim,
      vocabSize: m.vocabSize,
      ropeTheta: m.ropeTheta,
      ropeScaling: m.ropeScaling ?? null,
      rmsNormEps: m.rmsNormEps,
      qkvBias: m.qkvBias,
      tieWordEmbeddings: m.tieWordEmbeddings,
      slidingWindow: m.slidingWindow ?? null,
    },
    passes: { target: pass(plan.passes.target), draft: pass(plan.passes.draft) },
    verify: {
      name: d.verify.name,
      mode: d.verify.mode,
      ...(d.verify.accept ? { accept: ir.show(d.verify.accept) } : {}),
      ...(d.verify.residual ? { residual: ir.show(d.verify.residual) } : {}),
    },
    kernels: plan.kernels.map((k) => ({
      symbol: k.symbol,
      name: k.spec.name,
      ...(k.bucket !== undefined ? { bucket: k.bucket, maxRows: k.maxRows } : {}),
      args: k.spec.args.map((a) => ({ name: a.name, type: a.type })),
    })),
  };
}

/** The manifest as written to manifest.json and embedded in the module: stable key order, 2-space indent. */
export function manifestText(plan: ModulePlan): string {
  return `${JSON.stringify(buildManifest(plan), null, 2)}\n`;
}
