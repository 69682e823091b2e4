// Bytes a decode step must read from memory, from the module plan and the rows' positions: what the
// benchmark divides by a step's time to get achieved bandwidth. Counted (storage dtype throughout):
//   weights, once per step whatever the row count: every layer's q/k/v/o, gate/up/down projections,
//     q/k/v biases if any, both RMSNorm weights, the final norm and the LM head; plus one embedding row per
//     row of the step (for tied embeddings those rows lie inside the LM head, already counted);
//   KV cache: for each row, the positions its pass actually reads (as the attention kernel does: tiles the
//     interval analysis skips are never read, and within a tile only visible positions are), times
//     layers x K and V x kv heads x head dim.
// Not counted: activations, the K/V the step writes, the page table, RoPE tables (all small next to these).
import { evaluate } from '../codegen/interp.ts';
import type { ModulePlan, PassPlan } from '../codegen/plan.ts';
import type { DType } from '../dsl/deploy.ts';

const DTYPE_BYTES: Readonly<Record<DType, number>> = { bf16: 2, fp16: 2, fp32: 4 };
export type PassName = 'target' | 'draft';
/** Runtime param values by key (e.g. kv_window); missing keys take the manifest's value. */
export type ParamValues = Readonly<Record<string, number>>;

export interface StepBytes {
  readonly weights: number;
  readonly kv: number;
  readonly total: number;
}

/** Storage bytes of one element of the module's weights and KV cache. */
export function storageBytes(plan: ModulePlan): number {
  return DTYPE_BYTES[plan.deployment.dtype];
}

/** Weight bytes every forward step reads once, whatever its row count: all but the embedding rows. */
export function fixedWeightBytes(plan: ModulePlan): number {
  const { hidden: H, intermediate: I, qDim, kvDim, vocab: V, layers } = plan.dims;
  const bias = plan.model.qkvBias ? qDim + 2 * kvDim : 0;
  const perLayer = 2 * H /* input, post-attention norms */ + qDim * H + 2 * kvDim * H + bias + H * qDim + 3 * I * H;
  return (layers * perLayer + H /* final norm */ + V * H /* LM head */) * storageBytes(plan);
}

/** Bytes of the embedding row each row of a step reads; 0 when tied (the row is part of the LM head). */
export function embeddingRowBytes(plan: ModulePlan): number {
  return plan.model.tieWordEmbeddings ? 0 : plan.dims.hidden * storageBytes(plan);
}

/** Weight bytes one forward step over `rows` rows reads. */
export function weightBytesPerStep(plan: ModulePlan, rows: number): number {
  if (!(rows >= 0)) throw new Error(`weightBytesPerStep: rows must be >= 0, got ${rows}`);
  return fixedWeightBytes(plan) + rows * embeddingRowBytes(plan);
}

/** KV bytes of one cached position across layers, K and V. */
export function kvBytesPerPosition(plan: ModulePlan): number {
  return plan.dims.layers * 2 * plan.dims.kvDim * storageBytes(plan);
}

function paramEnv(pass: PassPlan, values: ParamValues): Record<string, number> {
  const known = new Set(pass.params.map((p) => p.key));
  for (const k of Object.keys(values)) {
    if (!known.has(k)) throw new Error(`the ${pass.pass} pass has no param '${k}' (it has: ${[...known].join(', ') || 'none'})`);
  }
  return Object.fromEntries(pass.params.map((p) => [p.key, values[p.key] ?? p.value]));
}

/**
 * Cached positions a row at query position `qpos` reads in `pass` (per layer and KV head), walking the
 * sequence's pages [0, qpos] as the attention kernel does: a tile that cannot be visible is skipped, a
 * fully visible one counts whole, a partial one counts its visible positions.
 */
export function positionsRead(plan: ModulePlan, pass: PassName, qpos: number, params: ParamValues = {}): number {
  if (!Number.isInteger(qpos) || qpos < 0) throw new Error(`positionsRead: query position must be a whole number >= 0, got ${qpos}`);
  const p = plan.passes[pass];
  const env = paramEnv(p, params);
  const len = qpos + 1;
  let n = 0;
  for (let p0 = 0; p0 < len; p0 += plan.pageSize) {
    const p1 = Math.min(p0 + plan.pageSize, len) - 1;
    const tileVars = { vars: { q: qpos, p0, p1 }, params: env };
    if (!evaluate(p.tile.may, tileVars)) continue;
    if (evaluate(p.tile.must, tileVars)) {
      n += p1 - p0 + 1;
      continue;
    }
    for (let kv = p0; kv <= p1; kv++) if (evaluate(p.visible, { vars: { q: qpos, kv }, params: env })) n++;
  }
  return n;
}

/** Bytes one step of `pass` reads with one row per sequence at the given query positions. */
export function stepBytes(plan: ModulePlan, pass: PassName, rowPositions: readonly number[], params: ParamValues = {}): StepBytes {
  const weights = weightBytesPerStep(plan, rowPositions.length);
  const kv = rowPositions.reduce((s, q) => s + positionsRead(plan, pass, q, params), 0) * kvBytesPerPosition(plan);
  return { weights, kv, total: weights + kv };
}

export interface DecodeSpan {
  /** Query position of a sequence's first decode step (its prompt length). */
  readonly firstPos: number;
  /** Positions decoded per sequence: query positions firstPos .. firstPos + positions - 1. */
  readonly positions: number;
  /** Mean rows (live sequences) per step. */
  readonly rowsPerStep: number;
}

/**
 * Mean bytes per step of `pass` over a decode span: weights once per step, and per row the KV positions
 * read averaged over the span's query positions. Exact for AR decoding of equal-length prompts (every step
 * is one of those positions for every row); for draft steps, whose positions depend on acceptance, it is
 * the average over the same positions (exact when the count is flat there, as for sink + window).
 */
export function meanStepBytes(plan: ModulePlan, pass: PassName, span: DecodeSpan, params: ParamValues = {}): StepBytes {
  if (!Number.isInteger(span.positions) || span.positions < 1) throw new Error(`meanStepBytes: positions must be a whole number >= 1, got ${span.positions}`);
  if (!(span.rowsPerStep >= 0)) throw new Error(`meanStepBytes: rowsPerStep must be >= 0, got ${span.rowsPerStep}`);
  let read = 0;
  for (let i = 0; i < span.positions; i++) read += positionsRead(plan, pass, span.firstPos + i, params);
  const kv = (span.rowsPerStep * read * kvBytesPerPosition(plan)) / span.positions;
  const weights = weightBytesPerStep(plan, span.rowsPerStep);
  return { weights, kv, total: weights + kv };
}

export interface Bandwidth {
  readonly bytesPerStep: StepBytes;
  readonly stepS: number;
  /** bytesPerStep.total / stepS / 1e9 */
  readonly gbPerS: number;
  /** gbPerS over the triad's GB/s measured in the same run. */
  readonly ofTriad: number;
}

export function bandwidth(bytesPerStep: StepBytes, stepS: number, triadGbPerS: number): Bandwidth {
  const gbPerS = stepS > 0 ? bytesPerStep.total / stepS / 1e9 : 0;
  return { bytesPerStep, stepS, gbPerS, ofTriad: triadGbPerS > 0 ? gbPerS / triadGbPerS : 0 };
}
