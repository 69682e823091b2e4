// One benchmark case, run in its own process (bench/run.ts spawns it) so that its peak RSS belongs to this
// model and context alone: prefill a batch of prompts, then decode autoregressively and speculatively
// (optionally with other draft windows), each on a fresh engine, and print one JSON line of results.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { decodeBatch, kvPagesFor, type DecodeSummary } from '../lib/decode.ts';
import { Prng } from '../model/prng.ts';

export interface CaseInput {
  readonly model: string;
  readonly modelDir: string;
  readonly library: string;
  readonly context: number;
  readonly batch: number;
  readonly decodeTokens: number;
  readonly prefillChunk: number;
  readonly gamma: number;
  readonly pageSize: number;
  readonly vocab: number;
  /** Bytes of one cached position across layers, K and V (layers * 2 * kvHeads * headDim * dtype bytes). */
  readonly kvBytesPerPosition: number;
  /** Draft windows (draft param kv_window) to run speculatively; null = the module's default. */
  readonly draftWindows: readonly (number | null)[];
}

export interface SpecResult {
  readonly draftWindow?: number;
  readonly summary: DecodeSummary;
  /** Speculative tokens equal the autoregressive ones for every request (docs/ARCHITECTURE.md, invariant 1). */
  readonly identical: boolean;
  /** Rounds summed over sequences (a round's draft steps carry one row per live sequence). */
  readonly sequenceRounds: number;
  /** Time of one draft step of the batch over one AR step (gamma draft steps per round). */
  readonly draftOverAr: number;
  /** Time of one verification pass (gamma + 1 rows per sequence) over one AR step. */
  readonly verifyOverAr: number;
  /** the cost model (docs/ARCHITECTURE.md): tokens/round / (gamma * T_draft/T_ar + T_verify/T_ar). */
  readonly predictedSpeedup: number;
  readonly speedup: number;
}

export interface CaseResult {
  readonly model: string;
  readonly context: number;
  readonly batch: number;
  readonly gamma: number;
  readonly ar: DecodeSummary;
  readonly spec: SpecResult[];
  readonly memory: { readonly peakRss: number; readonly startRss: number; readonly weightBytes: number; readonly kvBytes: number };
}

function weightBytes(dir: string): number {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .reduce((s, f) => s + statSync(join(dir, f)).size, 0);
}

export async function runCase(c: CaseInput): Promise<CaseResult> {
  const startRss = process.memoryUsage().rss;
  const rng = new Prng(c.context, 7);
  const prompts = Array.from({ length: c.batch }, () => Array.from({ length: c.context }, () => rng.nextU32() % c.vocab));
  const positions = c.context + c.decodeTokens + c.gamma;
  const kvPages = kvPagesFor(c.batch, positions, c.pageSize);
  const opts = { maxBatch: c.batch, kvPages, prefillChunk: c.prefillChunk, gamma: c.gamma };
  const request = { maxTokens: c.decodeTokens, ignoreEos: true };

  const ar = await decodeBatch(c.modelDir, c.library, { ...opts, mode: 'ar' }, prompts, request);
  const tAr = ar.summary.decodeS / ar.summary.steps;
  const spec: SpecResult[] = [];
  for (const w of c.draftWindows) {
    const run = await decodeBatch(c.modelDir, c.library, { ...opts, mode: 'spec' }, prompts, request, (e) => {
      if (w !== null) e.setParam('draft', 'kv_window', w);
    });
    const s = run.summary;
    const draftOverAr = s.draftS / (s.steps * c.gamma) / tAr;
    const verifyOverAr = s.verifyS / s.steps / tAr;
    spec.push({
      ...(w !== null ? { draftWindow: w } : {}),
      summary: s,
      identical: run.generations.every((g, i) => g.tokens.join() === ar.generations[i].tokens.join()),
      sequenceRounds: run.generations.reduce((n, g) => n + g.stats.rounds, 0),
      draftOverAr,
      verifyOverAr,
      predictedSpeedup: s.tokensPerRound / (c.gamma * draftOverAr + verifyOverAr),
      speedup: s.tokensPerS / ar.summary.tokensPerS,
    });
  }
  return {
    model: c.model,
    context: c.context,
    batch: c.batch,
    gamma: c.gamma,
    ar: ar.summary,
    spec,
    memory: {
      peakRss: process.resourceUsage().maxRSS * 1024,
      startRss,
      weightBytes: weightBytes(c.modelDir),
      kvBytes: kvPages * c.pageSize * c.kvBytesPerPosition,
    },
  };
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  const result = await runCase(JSON.parse(process.argv[2]) as CaseInput);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
