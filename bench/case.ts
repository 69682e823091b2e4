// One (model, context) case of `magicdec bench`, run in its own process (bench/grid.ts spawns it) so that its
// peak RSS belongs to this model and context alone. For each batch size: one speculative engine prefills the
// batch once and decodes one segment per (draft budget, gamma) point (lib/decode.ts, decodeSegments), each
// between two autoregressive segments (gamma 'off') on the same engine and cache, so that every point's
// baseline is timed seconds from it, at the same positions, whatever else the machine does meanwhile; then
// an autoregressive engine decodes the same prompts as far as the furthest speculative sequence got, and
// the speculative engine's tokens must equal its tokens (docs/ARCHITECTURE.md, invariant 1). Progress goes
// to stdout as `progress <text>` lines, the result as one `result <json>` line.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { decodeBatch, decodeSegments, kvPagesFor, type DecodeSummary, type Segment, type SegmentStats } from '../lib/decode.ts';
import { Prng } from '../model/prng.ts';

export interface CaseInput {
  /** The model's label (a preset name or the directory's name). */
  readonly model: string;
  readonly modelDir: string;
  readonly library: string;
  readonly context: number;
  readonly batches: readonly number[];
  /** Speculative segments, in the order they run: every (budget, gamma) point. */
  readonly segments: readonly (Segment & { readonly budget: number })[];
  /** Tokens per sequence each segment decodes. */
  readonly decodeTokens: number;
  /** The module's gamma (the most a round drafts, 'auto' included). */
  readonly moduleGamma: number;
  readonly prefillChunk: number;
  readonly pageSize: number;
  readonly vocab: number;
  /** Prompts start with BOS (when the model has one) and never contain BOS or EOS after it. */
  readonly bos?: number;
  readonly eos?: number;
  /** Bytes of one cached position across layers, K and V (layers * 2 * kvHeads * headDim * dtype bytes). */
  readonly kvBytesPerPosition: number;
}

export interface BatchResult {
  readonly batch: number;
  /** Prefill of the speculative engine (the AR engine prefills the same prompts again). */
  readonly prefillS: number;
  readonly segments: (SegmentStats & { readonly budget: number })[];
  /** The autoregressive segments around them: arSegments[k] and arSegments[k + 1] are point k's baseline. */
  readonly arSegments: SegmentStats[];
  /** The AR engine's run (the tokens the speculative engine's must equal): arTokens tokens per sequence, as many as the furthest speculative sequence. */
  readonly ar: DecodeSummary;
  readonly arTokens: number;
  /** Speculative tokens equal the AR tokens for every sequence, as far as each got. */
  readonly identical: boolean;
  readonly firstDifference?: string;
  /** KV pool of the speculative engine (the larger of the two). */
  readonly kvBytes: number;
}

export interface CaseResult {
  readonly model: string;
  readonly context: number;
  readonly batches: BatchResult[];
  readonly memory: { readonly peakRss: number; readonly startRss: number; readonly weightBytes: number; readonly kvBytes: number };
}

export function weightBytes(dir: string): number {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .reduce((s, f) => s + statSync(join(dir, f)).size, 0);
}

/**
 * Tokens per sequence a speculative run of `points` speculative segments (and the points + 2 autoregressive
 * ones: a warm-up, then one around each point) may need: the fastest sequence emits at most gamma + 1 per
 * round, one per AR step.
 */
export function specMaxTokens(points: number, decodeTokens: number, moduleGamma: number): number {
  return points * decodeTokens * (moduleGamma + 1) + (points + 2) * decodeTokens + 1;
}

/** Positions a speculative request reserves: the prompt, maxTokens and the module's gamma past them. */
export function specPositions(context: number, points: number, decodeTokens: number, moduleGamma: number): number {
  return context + specMaxTokens(points, decodeTokens, moduleGamma) + moduleGamma;
}

type ArSegment = { readonly gamma: 'off' };
const AR_SEGMENT: ArSegment = { gamma: 'off' };
const isAr = (s: Segment): s is ArSegment => s === AR_SEGMENT;

/**
 * The segments one engine decodes: an autoregressive warm-up (not reported: the first decode steps after a
 * prefill ran measurably slower, which would bias the first point's baseline), then an autoregressive
 * segment before each point and one after the last.
 */
export function interleaved<P extends Segment>(points: readonly P[]): (P | ArSegment)[] {
  return [AR_SEGMENT, ...points.flatMap((p) => [AR_SEGMENT, p]), AR_SEGMENT];
}

/** `batch` prompts of `context` tokens: BOS (if any), then seeded random tokens other than BOS and EOS. */
export function benchPrompts(c: Pick<CaseInput, 'context' | 'vocab' | 'bos' | 'eos'>, batch: number): number[][] {
  const special = new Set([c.bos, c.eos].filter((t): t is number => t !== undefined));
  const allowed = Array.from({ length: c.vocab }, (_, t) => t).filter((t) => !special.has(t));
  return Array.from({ length: batch }, (_, b) => {
    const rng = new Prng(c.context * 4099 + b, 7);
    const body = Array.from({ length: c.context - (c.bos !== undefined ? 1 : 0) }, () => allowed[rng.below(allowed.length)]);
    return c.bos !== undefined ? [c.bos, ...body] : body;
  });
}

function firstDifference(spec: readonly (readonly number[])[], ar: readonly (readonly number[])[]): string | undefined {
  for (let i = 0; i < spec.length; i++) {
    const j = spec[i].findIndex((t, k) => t !== ar[i][k]);
    if (j >= 0) return `sequence ${i}, token ${j}: autoregressive ${ar[i][j] ?? '(none)'}, speculative ${spec[i][j]}`;
  }
  return undefined;
}

export async function runCase(c: CaseInput, progress: (text: string) => void = () => {}): Promise<CaseResult> {
  const startRss = process.memoryUsage().rss;
  const batches: BatchResult[] = [];
  let kvMax = 0;
  for (const batch of c.batches) {
    const prompts = benchPrompts(c, batch);
    const maxTokens = specMaxTokens(c.segments.length, c.decodeTokens, c.moduleGamma);
    const specPages = kvPagesFor(batch, specPositions(c.context, c.segments.length, c.decodeTokens, c.moduleGamma), c.pageSize);
    const base = { maxBatch: batch, prefillChunk: c.prefillChunk };
    const where = `${c.model}, context ${c.context}, batch ${batch}`;
    progress(`${where}: prefill`);
    const all = interleaved(c.segments);
    const spec = await decodeSegments(c.modelDir, c.library, { ...base, kvPages: specPages }, prompts, maxTokens, all, c.decodeTokens, (k) => {
      if (k === 0) progress(`${where}: autoregressive warm-up`);
      else if (k < all.length) {
        const s = all[k];
        progress(`${where}: ${isAr(s) ? 'autoregressive segment' : `gamma ${s.gamma}, budget ${s.budget}`}`);
      }
    });
    const arTokens = Math.max(...spec.tokens.map((t) => t.length));
    progress(`${where}: autoregressive engine (the tokens to match)`);
    const arPages = kvPagesFor(batch, c.context + arTokens, c.pageSize);
    const ar = await decodeBatch(c.modelDir, c.library, { ...base, kvPages: arPages, mode: 'ar' }, prompts, { maxTokens: arTokens, ignoreEos: true });
    const diff = firstDifference(spec.tokens, ar.generations.map((g) => g.tokens));
    const kvBytes = specPages * c.pageSize * c.kvBytesPerPosition;
    kvMax = Math.max(kvMax, kvBytes);
    batches.push({
      batch,
      prefillS: spec.prefillS,
      segments: spec.segments.flatMap((s, k) => {
        const point = all[k];
        return isAr(point) ? [] : [{ ...s, budget: point.budget }];
      }),
      arSegments: spec.segments.filter((_, k) => k > 0 && isAr(all[k])),  // past the warm-up
      ar: ar.summary,
      arTokens,
      identical: diff === undefined,
      ...(diff ? { firstDifference: diff } : {}),
      kvBytes,
    });
  }
  return {
    model: c.model,
    context: c.context,
    batches,
    memory: { peakRss: process.resourceUsage().maxRSS * 1024, startRss, weightBytes: weightBytes(c.modelDir), kvBytes: kvMax },
  };
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  const result = await runCase(JSON.parse(process.argv[2]) as CaseInput, (text) => process.stdout.write(`progress ${text}\n`));
  process.stdout.write(`result ${JSON.stringify(result)}\n`);
}
