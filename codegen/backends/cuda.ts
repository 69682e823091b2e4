// The CUDA backend (sm_80 / sm_90a): a ModulePlan becomes .cu sources that instantiate the kernel
// skeletons of templates/cuda/md_cuda.cuh with the plan's shapes and the passes' IR rendered as device
// functions, plus host launchers with the ABI signatures of codegen/abi.ts.
//
// Everything a row's arithmetic depends on (vector widths, lane partitions, P.V position classes) is
// decided here from the model shape alone; what may vary by bucket is only how rows share a pass over the
// weights (GEMM row tile) and how many CTAs split a row's chunks — neither changes a row's bits.
import { readFileSync } from 'node:fs';
import type { DType } from '../../dsl/deploy.ts';
import type { Backend, EmittedFile } from '../backend.ts';
import { PlanError, type ModulePlan, type PassPlan } from '../plan.ts';
import { renderF32 } from '../render.ts';
import { TEMPLATES_DIR, cDouble, lmHeadShape, passStructName, renderPassFunctions, renderPassStruct, renderTemplate, renderVerifierFunctions } from './common.ts';
import { entryPoints, moduleHeaders, renderModuleExports, sharedChecks, signatures } from './contract.ts';
import { kernelSpecs } from './header.ts';

/** CUDA element type of each storage dtype, and its size in bytes. */
export const CUDA_STORAGE: Readonly<Record<DType, { ctype: string; bytes: number }>> = {
  fp32: { ctype: 'float', bytes: 4 },
  bf16: { ctype: '__nv_bfloat16', bytes: 2 },
  fp16: { ctype: '__half', bytes: 2 },
};

/** CTAs an attention launch aims for: a few waves on an H100/H200 (132 SMs). */
const ATTN_TARGET_CTAS = 132 * 8;
/** Threads of an attention CTA (fixed in md_attn_shape). */
const ATTN_THREADS = 128;
/** GEMM: warps per CTA, and the fewest CTAs worth having before a warp takes fewer columns. */
const GEMM_WARPS = 4;
const GEMM_MIN_CTAS = 2 * 132;
/** Threads of the RMSNorm reduction (fixed: it sets the order of the sum of squares). */
const NORM_THREADS = 256;
/** Shared memory one CTA may opt in to (sm_80: A100's 163 KiB; sm_90: H100/H200's 227 KiB), less a margin for static arrays. */
const SMEM_OPT_IN: Readonly<Record<string, number>> = { sm_80: 163 * 1024 - 1024, sm_90: 227 * 1024 - 1024 };

/** A plan the CUDA kernels cannot launch (shared memory, grid, vector widths); a PlanError like planModule's. */
export class CudaPlanError extends PlanError {}

/** Widest load (at most 16 bytes) of `eltBytes`-sized elements whose element count divides `n`. */
export function vectorWidth(n: number, eltBytes: number): number {
  let v = 16 / eltBytes;
  while (v > 1 && n % v !== 0) v /= 2;
  return v;
}

export interface GemmShape {
  readonly role: string;
  readonly n: number;
  readonly k: number;
  readonly vec: number;
  readonly warps: number;
  readonly cols: number;
  readonly ctas: number;
  readonly bias: boolean;
}

export function gemmShapeFor(plan: ModulePlan, g: ModulePlan['gemms'][number]): GemmShape {
  const elt = CUDA_STORAGE[plan.deployment.dtype].bytes;
  // More columns per warp reuse each x load more; fewer keep enough CTAs in flight for small N.
  const cols = [4, 2, 1].find((c) => Math.ceil(g.n / (GEMM_WARPS * c)) >= GEMM_MIN_CTAS) ?? 1;
  return {
    role: g.role,
    n: g.n,
    k: g.k,
    vec: vectorWidth(g.k, elt),
    warps: GEMM_WARPS,
    cols,
    ctas: Math.ceil(g.n / (GEMM_WARPS * cols)),
    bias: plan.model.qkvBias && (g.role === 'q' || g.role === 'kv'),
  };
}

/** Rows sharing one pass over the weights: the bucket's row bound rounded up to a power of two, at most 8. */
export function gemmRowTile(maxRows: number): number {
  let t = 1;
  while (t < maxRows && t < 8) t *= 2;
  return t;
}

/** Tensor-core GEMM (bf16 / fp16 storage): rows per pass over the weights, 8-row tiles, warps along the rows. */
const MMA_PASS_ROWS = 256;
const MMA_WARPS_ALONG_ROWS = 4;

/**
 * How one bucket's calls of a tensor-core GEMM share the weights (md_mma_gemm_kernel in gemm.cu.hbs): MT
 * m-tiles of 16 columns per CTA (two once a bucket's rows reuse each activation load enough and N still
 * gives a CTA per SM), RTW row tiles per warp so that one pass covers up to 256 rows. Neither changes an
 * output's bits: those depend on K alone.
 */
export function mmaGemmTiling(n: number, maxRows: number) {
  const mt = maxRows > 64 && Math.ceil(n / 32) >= 132 ? 2 : 1;
  const tiles = Math.ceil(Math.min(maxRows, MMA_PASS_ROWS) / 8);
  let rtw = 1;
  while (rtw * MMA_WARPS_ALONG_ROWS < tiles) rtw *= 2;
  return { mt, rtw, cols: 16 * mt, threads: 128 * mt, ctas: Math.ceil(n / (16 * mt)), passRows: 8 * rtw * MMA_WARPS_ALONG_ROWS };
}

export interface AttnShape {
  /** Whether the tensor-core kernel runs it (md_attn_mma_kernel; else md_attn_chunk_kernel on CUDA cores). */
  readonly mma: boolean;
  /** The CUDA-core kernel's elements per K load, lanes per position, elements per V load, position classes of P.V. */
  readonly vec: number;
  readonly lanesPerPos: number;
  readonly vecV: number;
  readonly split: number;
  /** Rows of one sequence a CTA takes together (sharing each K/V tile), and its dynamic shared memory. */
  readonly rows: number;
  readonly smemBytes: number;
}

/** (row, query head) pairs one attention CTA may take: bounds the P.V registers per thread. */
const ATTN_MAX_PAIRS = 32;

/** (row, query head) pairs of the tensor-core kernel's CTA: the 16 rows of an mma.sync m16n8k16 tile. */
const ATTN_MMA_PAIRS = 16;

/**
 * Whether a module's attention runs on tensor cores: bf16 / fp16 storage (mma.sync has no exact fp32
 * form), head_dim a multiple of 8 (P.V's n-tiles) up to 128 (a warp's accumulators in registers), and a
 * query group that fits one mma tile. The kernel rounds q and the softmax weights to the storage type.
 */
export const attnUsesMma = (plan: ModulePlan): boolean =>
  plan.deployment.dtype !== 'fp32' && plan.dims.headDim % 8 === 0 && plan.dims.headDim <= 128 && plan.dims.group <= ATTN_MMA_PAIRS;

/**
 * md_attn_shape's or md_attn_mma_shape's choices (md_cuda.cuh). A block holds the gamma + 1 rows of a verification (fewer when the
 * group is wide); positions get at most 4 lanes each, so a pair's dot product ends in a short butterfly;
 * P.V position classes fill the threads when a block's pairs alone would not. smemBytes is
 * md_attn_shape::SMEM_BYTES.
 */
/** Bytes of the staged K/V tiles (two stages of K and V), rows padded as md_cuda.cuh's md_attn_pad_bytes pads them. */
function stagedTileBytes(page: number, rowBytes: number, lanes: number): number {
  const pad = rowBytes % 16 === 0 ? (16 * lanes - (rowBytes % 128) + 256) % 128 : 0;
  return 4 * Math.ceil((page * (rowBytes + pad)) / 16) * 16;
}

export function attnShapeFor(plan: ModulePlan): AttnShape {
  const { headDim: d, group: g } = plan.dims;
  const elt = CUDA_STORAGE[plan.deployment.dtype].bytes;
  const page = plan.pageSize;
  const vec = vectorWidth(d, elt);
  if (attnUsesMma(plan)) {
    const rows = Math.max(1, Math.min(plan.gamma + 1, Math.floor(ATTN_MMA_PAIRS / g)));
    const warpsUsed = Math.min(4, Math.ceil(page / 16));
    const floats = warpsUsed * 16 * d + warpsUsed * 16 + 4 * 16;
    const smemBytes = stagedTileBytes(page, d * elt, 1) + 4 * floats + (rows + 1) * page;
    return { mma: true, vec, lanesPerPos: 0, vecV: 0, split: 0, rows, smemBytes };
  }
  let lanesPerPos = 4;
  while ((d / vec) % lanesPerPos !== 0) lanesPerPos /= 2;
  const vecV = vec;
  const rows = Math.max(1, Math.min(plan.gamma + 1, Math.floor(ATTN_MAX_PAIRS / g)));
  const pairs = rows * g;
  const dv = d / vecV;
  const split = Math.max(1, Math.min(page, Math.floor(ATTN_THREADS / (dv * pairs))));
  const floats = 2 * pairs * d + pairs * (page + 1) + (split - 1) * pairs * d + 3 * pairs;
  return { mma: false, vec, lanesPerPos, vecV, split, rows, smemBytes: stagedTileBytes(page, d * elt, lanesPerPos) + 4 * floats + rows * page };
}

/** Limits of the CUDA kernels only; model and plan invariants were checked by planModule. */
function checkCudaLimits(plan: ModulePlan): void {
  const where = `module ${plan.name}`;
  const { hidden, headDim, heads } = plan.dims;
  if (plan.deployment.arch !== 'sm_80' && plan.deployment.arch !== 'sm_90')
    throw new CudaPlanError(`${where}: the CUDA backend builds for sm_80 or sm_90, not '${plan.deployment.arch}'`);
  if (hidden % 4 !== 0) throw new CudaPlanError(`${where}: hidden_size ${hidden} must be a multiple of 4 (RMSNorm reads float4)`);
  if (headDim > 1024) throw new CudaPlanError(`${where}: head_dim ${headDim} must be at most 1024`);
  if (plan.maxChunks > 4096) throw new CudaPlanError(`${where}: ${plan.maxChunks} KV chunks exceed the merge kernel's 4096`);
  for (const b of plan.kernels) {
    if (b.maxRows !== undefined && b.maxRows > 65535)
      throw new CudaPlanError(`${where}: bucket ${b.bucket} allows ${b.maxRows} rows; a CUDA grid dimension holds at most 65535`);
  }
  const vec = vectorWidth(headDim, CUDA_STORAGE[plan.deployment.dtype].bytes);
  if (headDim / vec > ATTN_THREADS)
    throw new CudaPlanError(`${where}: head_dim ${headDim} must be at most ${ATTN_THREADS * vec} for ${plan.deployment.dtype} attention (a thread per ${vec} dims)`);
  const attn = attnShapeFor(plan);
  const limit = SMEM_OPT_IN[plan.deployment.arch];
  if (attn.smemBytes > limit)
    throw new CudaPlanError(
      `${where}: attention needs ${attn.smemBytes} bytes of shared memory (${attn.rows} rows x group ${plan.dims.group} x head_dim ${headDim}, pages of ${plan.pageSize}); ${plan.deployment.arch} allows ${limit}`,
    );
  if (heads > 65535) throw new CudaPlanError(`${where}: ${heads} heads exceed a grid dimension`);
}

function common(plan: ModulePlan) {
  return {
    name: plan.name,
    hash: plan.hash,
    store: CUDA_STORAGE[plan.deployment.dtype].ctype,
    sig: signatures(kernelSpecs(plan), { unnamedStream: false }),
    checks: sharedChecks(plan),
  };
}

function renderElementwise(plan: ModulePlan): string {
  const d = plan.dims;
  const elt = CUDA_STORAGE[plan.deployment.dtype].bytes;
  return renderTemplate('cuda/elementwise.cu.hbs', {
    ...common(plan),
    ropeHalf: plan.ropeInvFreq.length,
    ropeInvFreq: plan.ropeInvFreq.map(cDouble),
    hidden: d.hidden,
    intermediate: d.intermediate,
    vocab: d.vocab,
    heads: d.heads,
    kvHeads: d.kvHeads,
    headDim: d.headDim,
    pageSize: plan.pageSize,
    gamma: plan.gamma,
    embedVec: vectorWidth(d.hidden, elt),
    normThreads: NORM_THREADS,
    rmsEps: renderF32(Math.fround(plan.rmsEps)),
  });
}

/** A bucketed kernel's entry points with the GEMM row tile of each bucket. */
function rowTiled(plan: ModulePlan, spec: string) {
  return entryPoints(plan, spec).map((k) => ({ ...k, rowTile: gemmRowTile(k.maxRows!) }));
}

/** bf16 / fp16 weights run on tensor cores; fp32 weights on CUDA cores (mma.sync has no exact fp32 form). */
export const usesMma = (plan: ModulePlan): boolean => plan.deployment.dtype !== 'fp32';

/**
 * Unit roundoff of the activations a module's GEMMs consume: the tensor-core path rounds x to the storage
 * type (round to nearest even: 2^-8 for bf16's 8 significant bits, 2^-11 for fp16's 11), the fp32 path
 * none. Against a float64 reference on unrounded x, output n is off by sum_k x_k w_nk d_k with |d_k| <= u,
 * so over random operands the relative error concentrates at the rms of d (below u): the tests' bound.
 */
export function gemmActivationRoundoff(dtype: DType): number {
  return dtype === 'bf16' ? 2 ** -8 : dtype === 'fp16' ? 2 ** -11 : 0;
}

function renderGemms(plan: ModulePlan): string {
  const lmHead = gemmShapeFor(plan, lmHeadShape(plan));
  if (lmHead.bias) throw new Error(`module ${plan.name}: the lm_head projection has no bias`);
  const tiled = (spec: string, n: number) => rowTiled(plan, spec).map((k) => ({ ...k, ...mmaGemmTiling(n, k.maxRows!) }));
  return renderTemplate('cuda/gemm.cu.hbs', {
    ...common(plan),
    mma: usesMma(plan),
    lmHead,
    lmHeadArgmax: tiled('lm_head_argmax', lmHead.n),
    gemms: plan.gemms.map((g) => {
      const shape = gemmShapeFor(plan, g);
      return {
        ...shape,
        threads: shape.warps * 32,
        instances: tiled(`gemm_${g.role}`, g.n),
      };
    }),
  });
}

function renderAttention(plan: ModulePlan, pass: PassPlan): string {
  const d = plan.dims;
  const shape = attnShapeFor(plan);
  return renderTemplate('cuda/attn.cu.hbs', {
    ...common(plan),
    pass: pass.pass,
    attention: pass.ir.attention.name,
    policy: pass.ir.kv.name,
    passFunctions: renderPassFunctions(pass, 'static __device__ __forceinline__'),
    passStruct: renderPassStruct(pass, 'static __device__ __forceinline__', [`static constexpr float SCALE = ${renderF32(plan.scale)};  // 1 / sqrt(head_dim)`]),
    passType: passStructName(pass.pass),
    heads: d.heads,
    kvHeads: d.kvHeads,
    headDim: d.headDim,
    pageSize: plan.pageSize,
    chunk: plan.chunk,
    chunkPages: plan.chunk / plan.pageSize,
    maxChunks: plan.maxChunks,
    mma: shape.mma,
    vec: shape.vec,
    lanesPerPos: shape.lanesPerPos,
    vecV: shape.vecV,
    split: shape.split,
    rows: shape.rows,
    smemBytes: shape.smemBytes,
    targetCtas: ATTN_TARGET_CTAS,
    instances: entryPoints(plan, `attn_${pass.pass}`),
  });
}

/** The module's sources. Each .cu is one translation unit; the headers travel with them. */
export function emitCuda(plan: ModulePlan): EmittedFile[] {
  checkCudaLimits(plan);
  return [
    ...moduleHeaders(plan, 'cuda'),
    { path: 'md_cuda.cuh', contents: readFileSync(new URL('cuda/md_cuda.cuh', TEMPLATES_DIR), 'utf8') },
    // The host emulation md_cuda.cuh includes under MD_SIMT_EMU: a module directory holds every header.
    { path: 'md_simt_emu.h', contents: readFileSync(new URL('cuda/md_simt_emu.h', TEMPLATES_DIR), 'utf8') },
    { path: 'md_module.cu', contents: renderModuleExports(plan, 'cuda') },
    { path: 'md_elementwise.cu', contents: renderElementwise(plan) },
    { path: 'md_gemm.cu', contents: renderGemms(plan) },
    {
      path: 'md_sample.cu',
      contents: renderTemplate('cuda/sample.cu.hbs', {
        ...common(plan),
        vocab: plan.dims.vocab,
        gamma: plan.gamma,
        verifierFunctions: renderVerifierFunctions(plan, 'static __device__ __forceinline__'),
      }),
    },
    { path: 'md_attn_target.cu', contents: renderAttention(plan, plan.passes.target) },
    { path: 'md_attn_draft.cu', contents: renderAttention(plan, plan.passes.draft) },
  ];
}

export const cudaBackend: Backend = { name: 'cuda', emit: emitCuda };
