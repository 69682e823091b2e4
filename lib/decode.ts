// Decoding a batch of prompts through the Node engine, and the statistics `run`, `demo` and `bench`
// print: one definition of "decode tokens/s", acceptance and tokens/round for all three.
import { Engine, type EngineOptions, type EngineStats, type Generation, type RequestOptions } from '../runtime/node/index.ts';
import { UserError } from './errors.ts';

/** Opens an engine; the runtime's refusal (missing or corrupt model, model the module was not built for) is a UserError. */
export async function openEngine(modelDir: string, library: string, opts: EngineOptions): Promise<Engine> {
  try {
    return await Engine.create(modelDir, library, opts);
  } catch (e) {
    throw new UserError(`cannot run model ${modelDir}: ${(e as Error).message}`);
  }
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
    const pending = prompts.map((p, i) => {
      try {
        return engine.generate(p, { maxTokens: request.maxTokens, ignoreEos: request.ignoreEos ?? false, ...request.sampling, ...(request.seeds ? { seed: request.seeds[i] } : {}) });
      } catch (e) {
        throw new UserError(`prompt ${i}: ${(e as Error).message}`);
      }
    });
    const generations = await Promise.all(pending);
    return { generations, summary: summarize(opts.mode, engine.stats(), generations) };
  } finally {
    engine.close();
  }
}
