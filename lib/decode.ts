// Decoding a batch of prompts through the Node engine, and the statistics `run`, `demo` and `bench`
// print: one definition of "decode tokens/s", acceptance and tokens/round for all three.
import { createNativeEngine, Engine, KERNEL_CLASSES, type EngineOptions, type EngineStats, type Gamma, type Generation, type KernelTimes, type RequestOptions } from '../runtime/node/index.ts';
import { UserError } from './errors.ts';

/** `open()`, with the runtime's refusal (missing or corrupt model, model the module was not built for) as a UserError. */
async function opening<T>(modelDir: string, open: () => Promise<T>): Promise<T> {
  try {
    return await open();
  } catch (e) {
    throw new UserError(`cannot run model ${modelDir}: ${(e as Error).message}`);
  }
}

/** `submit` for every prompt, in order; a prompt the runtime refuses (too long, token outside the vocabulary) is a UserError naming it. */
function submitAll<T>(prompts: readonly (readonly number[])[], submit: (prompt: readonly number[], i: number) => T): T[] {
  return prompts.map((p, i) => {
    try {
      return submit(p, i);
    } catch (e) {
      throw new UserError(`prompt ${i}: ${(e as Error).message}`);
    }
  });
}

/** Opens an engine; the runtime's refusal is a UserError. */
export function openEngine(modelDir: string, library: string, opts: EngineOptions): Promise<Engine> {
  return opening(modelDir, () => Engine.create(modelDir, library, opts));
}

/** KV pages for `batch` live sequences of up to `positions` positions each. */
export function kvPagesFor(batch: number, positions: number, pageSize: number): number {
  return batch * Math.ceil(positions / pageSize);
}

export interface DecodeSummary {
  readonly mode: 'ar' | 'spec';
  readonly requests: number;
  readonly promptTokens: number;
  readonly generated: number;
  /** Tokens emitted by decode steps: each request's first token comes from its prefill and is not counted. */
  readonly decodeTokens: number;
  /** Decode time: AR steps, or draft + verify in speculative mode. Prefill is excluded. */
  readonly decodeS: number;
  readonly tokensPerS: number;
  readonly prefillS: number;
  readonly draftS: number;
  readonly verifyS: number;
  /** Decode steps of the whole batch: AR steps, or speculative rounds. */
  readonly steps: number;
  /** Accepted / drafted tokens (speculative only; 0 in AR). */
  readonly acceptance: number;
  /** Tokens per sequence per round, (accepted + rounds) / rounds, as in the cost model of docs/ARCHITECTURE.md (1 in AR). */
  readonly tokensPerRound: number;
  /** Speculative rounds per gamma drafted, and their mean gamma (gamma 'auto' chooses per round). */
  readonly gammaRounds: Readonly<Record<string, number>>;
  readonly meanGamma: number;
  /** Seconds inside module kernels by step kind and kernel class (EngineStats.kernelS). */
  readonly kernelS: EngineStats['kernelS'];
}

/** The engine's statistics over `gens` (all the requests it ran) in the form every command reports. */
export function summarize(mode: 'ar' | 'spec', stats: EngineStats, gens: readonly Generation[]): DecodeSummary {
  const generated = gens.reduce((s, g) => s + g.tokens.length, 0);
  const promptTokens = gens.reduce((s, g) => s + g.stats.promptTokens, 0);
  const decodeTokens = gens.reduce((s, g) => s + Math.max(0, g.tokens.length - 1), 0);
  const seqRounds = gens.reduce((s, g) => s + g.stats.rounds, 0);
  const accepted = gens.reduce((s, g) => s + g.stats.accepted, 0);
  const drafted = gens.reduce((s, g) => s + g.stats.drafted, 0);
  const decodeS = mode === 'spec' ? stats.draftS + stats.verifyS : stats.decodeS;
  return {
    mode,
    requests: gens.length,
    promptTokens,
    generated,
    decodeTokens,
    decodeS,
    tokensPerS: decodeS > 0 ? decodeTokens / decodeS : 0,
    prefillS: stats.prefillS,
    draftS: stats.draftS,
    verifyS: stats.verifyS,
    steps: mode === 'spec' ? stats.rounds : stats.arSteps,
    acceptance: drafted ? accepted / drafted : 0,
    tokensPerRound: mode === 'spec' ? (seqRounds ? (accepted + seqRounds) / seqRounds : 0) : 1,
    gammaRounds: stats.gammaRounds,
    meanGamma: stats.meanGamma,
    kernelS: stats.kernelS,
  };
}

export interface DecodeRun {
  readonly generations: Generation[];
  readonly summary: DecodeSummary;
}

/**
 * Runs every prompt on a fresh engine (all submitted at once; the engine batches up to maxBatch of them)
 * and closes it. A prompt the runtime refuses (too long, token outside the vocabulary) is a UserError.
 * An offline batch: the engine runs prefillFirst (unless opts says otherwise), so each decode round decodes
 * every admitted sequence and decode tokens/s means "at this batch", as run, demo and the benchmark report.
 */
export async function decodeBatch(
  modelDir: string,
  library: string,
  opts: EngineOptions & { mode: 'ar' | 'spec' },
  prompts: readonly (readonly number[])[],
  request: { maxTokens: number; ignoreEos?: boolean; sampling?: Pick<RequestOptions, 'temperature' | 'topK' | 'topP' | 'minP'>; seeds?: readonly number[] },
  /** Called on the new engine before any request (e.g. to set a runtime param). */
  configure?: (engine: Engine) => void,
): Promise<DecodeRun> {
  const engine = await openEngine(modelDir, library, { prefillFirst: true, ...opts });
  try {
    configure?.(engine);
    const pending = submitAll(prompts, (p, i) =>
      engine.generate(p, { maxTokens: request.maxTokens, ignoreEos: request.ignoreEos ?? false, ...request.sampling, ...(request.seeds ? { seed: request.seeds[i] } : {}) }),
    );
    const generations = await Promise.all(pending);
    return { generations, summary: summarize(opts.mode, engine.stats(), generations) };
  } finally {
    engine.close();
  }
}

/** One stretch of a segmented speculative run: the gamma and draft params it runs with. */
export interface Segment {
  /** 'off': the segment decodes autoregressively on the same engine and cache (a baseline timed beside the speculative segments). */
  readonly gamma: Gamma;
  /** Draft-pass runtime params set when the segment starts (e.g. kv_window). */
  readonly draftParams?: Readonly<Record<string, number>>;
}

/** What the engine did during one segment (differences of its statistics at the segment's two ends). */
export interface SegmentStats extends Segment {
  /** Mean tokens a sequence had emitted when the segment began (its first decode row sits one before). */
  readonly startTokensPerSeq: number;
  /** Tokens emitted in the segment, all sequences together. */
  readonly tokens: number;
  readonly rounds: number;
  readonly drafted: number;
  readonly accepted: number;
  readonly draftS: number;
  readonly verifyS: number;
  /** Autoregressive steps and their time (a segment with gamma 'off'). */
  readonly arSteps: number;
  readonly arS: number;
  readonly gammaRounds: Readonly<Record<string, number>>;
  /** Drafted tokens per round per sequence: the segment's draft steps are rounds * meanGamma. */
  readonly meanGamma: number;
  readonly kernelS: { readonly draft: KernelTimes; readonly verify: KernelTimes; readonly ar: KernelTimes };
}

export interface SegmentedRun {
  /** Every token each prompt got, in prompt order (also past the last segment's end: the step that ended it). */
  readonly tokens: number[][];
  readonly prefillS: number;
  readonly segments: SegmentStats[];
}

function minusKernels(a: KernelTimes, b: KernelTimes): KernelTimes {
  return Object.fromEntries(KERNEL_CLASSES.map((k) => [k, a[k] - b[k]])) as unknown as KernelTimes;
}

/**
 * One speculative engine, one prefill: all prompts are prefilled together (prefillFirst: no round runs
 * before the last prompt is in, so the first segment starts with every sequence at its prompt's end), then the batch decodes the
 * segments one after another, each until the batch has emitted `tokensPerSegment` tokens per sequence, with
 * the segment's gamma and draft params set between two steps. So every configuration decodes the same
 * sequences on the same cache, each a little further along (segment k starts about k * tokensPerSegment
 * positions after the prompt). No sequence may finish before the last segment ends (maxTokens must cover
 * the fastest one); the engine is closed after it.
 */
export async function decodeSegments(
  modelDir: string,
  library: string,
  opts: EngineOptions,
  prompts: readonly (readonly number[])[],
  maxTokens: number,
  segments: readonly Segment[],
  tokensPerSegment: number,
  /** Called after the prefill and after each segment. */
  onProgress?: (done: number) => void,
): Promise<SegmentedRun> {
  const native = await opening(modelDir, () => createNativeEngine(modelDir, library, { prefillFirst: true, ...opts, mode: 'spec' }));
  try {
    const ids = submitAll(prompts, (p) => native.addRequest(p, { maxTokens, ignoreEos: true }));
    const tokens = new Map<number, number[]>(ids.map((id) => [id, []]));
    const step = async (): Promise<void> => {
      const { events } = await native.step();
      for (const ev of events) {
        if (ev.reason === 'error') throw new Error(`request ${ev.id}: ${ev.error ?? 'failed'}`);
        tokens.get(ev.id)!.push(...ev.tokens);
        if (ev.finished) throw new Error(`request ${ev.id} finished (${ev.reason}) before the last segment ended: maxTokens ${maxTokens} is too small`);
      }
    };
    const promptTokens = prompts.reduce((s, p) => s + p.length, 0);
    while (native.stats().prefillTokens < promptTokens) await step();
    const prefillS = native.stats().prefillS;
    onProgress?.(0);
    const out: SegmentStats[] = [];
    for (const [k, seg] of segments.entries()) {
      native.setGamma(seg.gamma);
      for (const [key, value] of Object.entries(seg.draftParams ?? {})) native.setParam('draft', key, value);
      const a = native.stats();
      const startTokens = [...tokens.values()].reduce((s, t) => s + t.length, 0);
      while ([...tokens.values()].reduce((s, t) => s + t.length, 0) < startTokens + tokensPerSegment * prompts.length) await step();
      const b = native.stats();
      const gammaRounds = Object.fromEntries(
        Object.keys(b.gammaRounds)
          .map((g) => [g, b.gammaRounds[g] - (a.gammaRounds[g] ?? 0)] as const)
          .filter(([, n]) => n > 0),
      );
      const rounds = b.rounds - a.rounds;
      out.push({
        ...seg,
        startTokensPerSeq: startTokens / prompts.length,
        tokens: [...tokens.values()].reduce((s, t) => s + t.length, 0) - startTokens,
        rounds,
        drafted: b.drafted - a.drafted,
        accepted: b.accepted - a.accepted,
        draftS: b.draftS - a.draftS,
        verifyS: b.verifyS - a.verifyS,
        arSteps: b.arSteps - a.arSteps,
        arS: b.decodeS - a.decodeS,
        gammaRounds,
        meanGamma: rounds ? Object.entries(gammaRounds).reduce((s, [g, n]) => s + Number(g) * n, 0) / rounds : 0,
        kernelS: { draft: minusKernels(b.kernelS.draft, a.kernelS.draft), verify: minusKernels(b.kernelS.verify, a.kernelS.verify), ar: minusKernels(b.kernelS.ar, a.kernelS.ar) },
      });
      onProgress?.(k + 1);
    }
    return { tokens: ids.map((id) => tokens.get(id)!), prefillS, segments: out };
  } finally {
    native.close();
  }
}
