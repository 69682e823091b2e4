// Thin TypeScript wrapper over the Node-API addon (runtime/node/binding.cpp, built by cmake-js into
// runtime/build/). All work runs off the JS thread: each engine step is one Promise; this wrapper keeps one
// step in flight while any request is live and routes each step's tokens to the request's promise/iterator.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** Tokens a speculative round drafts: 1..the module's gamma, 'auto' (chosen per round) or 'off' (autoregressive rounds). */
export type Gamma = number | 'auto' | 'off';

export interface EngineOptions {
  /** Live sequences at once; default: the module's largest batch bucket. */
  maxBatch?: number;
  /** KV-cache pages in the pool; default: enough for maxBatch sequences of the module's maxSeq. */
  kvPages?: number;
  /** 'spec' (self-speculative, default) or 'ar' (autoregressive). */
  mode?: 'ar' | 'spec';
  /**
   * Tokens drafted per round: 1..the module's gamma, or 'auto' to let the engine pick 1..module gamma each
   * round from measured draft and verification times and its acceptance estimate (EngineStats.gammaRounds
   * shows what it chose), or 'off' to decode autoregressively (no draft) until setGamma says otherwise.
   * Default: the module's (its gamma, or 'auto' for a module built with gamma 'auto').
   * Whatever the gammas, the output is the autoregressive one, bit for bit.
   */
  gamma?: Gamma;
  /** Rows per prefill step; default: the largest bucket's row limit. */
  prefillChunk?: number;
  /**
   * Target rows per step: each step runs a decode round over the decoding requests, then a prefill chunk in
   * the rows left (runtime/src/engine.h, Engine::step). At least a full decode round, maxBatch * (gamma + 1)
   * (maxBatch in AR mode); default: the largest bucket's row limit.
   */
  stepTokens?: number;
  /** Keep the logits of every emitted token (Generation.logits). */
  keepLogits?: boolean;
  /**
   * Offline batches and benchmarks: run no decode round while any admitted prompt is still prefilling, so
   * every round decodes the whole batch (runtime/src/engine.h, Engine::step). Default false: a round every
   * step, as a server wants. Tokens are the same either way.
   */
  prefillFirst?: boolean;
  /**
   * Never capture the draft's steps as device graphs (like vLLM's enforce_eager): every launch is queued
   * as it comes. Default false: on a GPU (and the emulated device) a round's steps are replayed as one
   * graph once their shape has run twice. Tokens and logits are the same either way.
   */
  eager?: boolean;
}

export interface RequestOptions {
  maxTokens?: number;
  stopTokens?: readonly number[];
  /** Do not stop at the model's eos_token_id. */
  ignoreEos?: boolean;
  /** Aborting it cancels the request (Engine.cancel): generate() and the stream then reject with a CancelledError. */
  signal?: AbortSignal;
  /**
   * Sampling (docs/ABI.md, "Sampling"): 0 (default) is greedy; otherwise a finite number > 0 that divides
   * the logits before top-k, top-p and min-p, and the token is a Gumbel-max draw with noise keyed by
   * (seed, position). A speculative engine samples only with a module whose verifier samples.
   */
  temperature?: number;
  /** Keep the topK most likely tokens; 0 (default) keeps all. */
  topK?: number;
  /** In (0, 1]: keep the most likely tokens holding topP of the probability; 1 (default) keeps all. */
  topP?: number;
  /** In [0, 1]: keep tokens at least minP times as likely as the most likely; 0 (default) keeps all. */
  minP?: number;
  /** The request's seed, an integer in [0, 2^53); without one the engine draws one (Generation.seed). */
  seed?: number;
  /**
   * Keep this request's logits (Generation.logits, the stream's logits()) even when the engine was created
   * without keepLogits: one vocab-long row per token, the target's, before temperature and filtering.
   * Requests without it pay nothing for it.
   */
  keepLogits?: boolean;
}

/**
 * The first problem with a request's sampling options, as the engine words it, or undefined. Engine
 * methods throw it before any work; `magicdec run` checks its flags with it.
 */
export function samplingProblem(o: Pick<RequestOptions, 'temperature' | 'topK' | 'topP' | 'minP' | 'seed'>): string | undefined {
  const { temperature, topK, topP, minP, seed } = o;
  const shown = (x: unknown) => (typeof x === 'number' ? String(x) : JSON.stringify(x) ?? String(x));
  if (temperature !== undefined && !(typeof temperature === 'number' && Number.isFinite(temperature) && temperature >= 0))
    return `request: temperature must be a finite number >= 0 (0 is greedy), got ${shown(temperature)}`;
  if (topK !== undefined && !(Number.isInteger(topK) && topK >= 0 && topK <= 2 ** 31 - 1))
    return `request: top_k must be an integer >= 0 (0 keeps every token), got ${shown(topK)}`;
  if (topP !== undefined && !(typeof topP === 'number' && topP > 0 && topP <= 1)) return `request: top_p must be in (0, 1] (1 keeps every token), got ${shown(topP)}`;
  if (minP !== undefined && !(typeof minP === 'number' && minP >= 0 && minP <= 1)) return `request: min_p must be in [0, 1] (0 keeps every token), got ${shown(minP)}`;
  if (seed !== undefined && !(Number.isSafeInteger(seed) && seed >= 0)) return `request: seed must be an integer in [0, 2^53), got ${shown(seed)}`;
  return undefined;
}

export interface RequestStats {
  promptTokens: number;
  generated: number;
  rounds: number;
  drafted: number;
  accepted: number;
  acceptance: number;
  tokensPerRound: number;
  prefillS: number;
  draftS: number;
  verifyS: number;
  decodeS: number;
}

/** Kinds of forward pass: prefill chunks, AR steps, draft steps, verification passes. */
export type StepKind = 'prefill' | 'ar' | 'draft' | 'verify';
export const STEP_KINDS: readonly StepKind[] = ['prefill', 'ar', 'draft', 'verify'];

/**
 * Seconds inside one class of module kernel: attention; GEMMs (q/k/v, o, gate/up, down, LM head + argmax);
 * RMSNorm (also fused with the residual add) and RoPE + KV append; other (embedding, SwiGLU, residual add,
 * greedy verification, LM-row gather).
 */
export interface KernelTimes {
  attention: number;
  gemm: number;
  normRope: number;
  other: number;
}
export const KERNEL_CLASSES: readonly (keyof KernelTimes)[] = ['attention', 'gemm', 'normRope', 'other'];

export interface EngineStats {
  steps: number;
  prefillSteps: number;
  rounds: number;
  arSteps: number;
  prefillTokens: number;
  generated: number;
  drafted: number;
  accepted: number;
  acceptance: number;
  prefillS: number;
  draftS: number;
  verifyS: number;
  decodeS: number;
  /** Decode rounds per batch bucket. */
  bucketRounds: Record<string, number>;
  /** Speculative rounds per gamma drafted (with gamma 'auto': what the engine chose). */
  gammaRounds: Record<string, number>;
  /** Mean gamma over the speculative rounds (0 before the first). */
  meanGamma: number;
  /**
   * Speculative rounds whose draft steps were captured as a device graph, and rounds that replayed one
   * (info().draftGraphs says whether the steps are captured, and why not).
   */
  graphCaptures: number;
  graphReplays: number;
  /** Seconds inside module kernels by step kind and kernel class (the rest of a step is host time). */
  kernelS: Record<StepKind, KernelTimes>;
  /** The gamma of later rounds. */
  gamma: Gamma;
  /** The engine's running estimate of the per-token acceptance, the 'auto' choice's input. */
  acceptanceEstimate: number;
  freePages: number;
}

export interface Generation {
  id: number;
  tokens: number[];
  /** The seed its noise was keyed by: the one given, or the one the engine drew. */
  seed: number;
  /** One vocab-long row per token, when the engine or the request keeps logits. */
  logits?: Float32Array[];
  reason: 'stop' | 'length';
  stats: RequestStats;
}

/** What the addon's step() reports for one request (runtime/node/binding.cpp). */
export interface NativeEvent {
  id: number;
  tokens: Int32Array;
  logits?: Float32Array;
  finished: boolean;
  reason: 'none' | 'stop' | 'length' | 'error' | 'cancelled';
  error?: string;
  /** With `finished`: the request's seed. */
  seed?: number;
  stats?: RequestStats;
}

/** What the addon's step() resolves to: the step's events, then the requests live and queued after it. */
export interface NativeStep {
  events: NativeEvent[];
  live: number;
  /** Requests waiting for admission (a free slot and their KV pages). */
  queued: number;
}

/**
 * How a cancelled request ends (Engine.cancel, or its AbortSignal): generate() and the stream reject with
 * it once the engine has let the request go, its slot and KV pages freed. Named AbortError, as fetch's is.
 */
export class CancelledError extends Error {
  override readonly name = 'AbortError';
  constructor(
    readonly id: number,
    /** The tokens it had generated before the cancellation took effect. */
    readonly tokens: readonly number[],
    readonly stats?: RequestStats,
    /** The seed its noise was keyed by (the one given, or the one the engine drew). */
    readonly seed?: number,
  ) {
    super(`request ${id}: cancelled`);
  }
}

/** The addon's engine, below this wrapper's pump: tests drive it step by step (test/support/runtime-stepper.ts). */
export interface NativeEngine {
  addRequest(prompt: Int32Array | readonly number[], opts: RequestOptions): number;
  step(): Promise<NativeStep>;
  /** Cancels at the next step (never waits for one in flight); false for an id never issued. */
  cancel(id: number): boolean;
  live(): number;
  stats(): EngineStats;
  info(): string;
  setParam(pass: 'target' | 'draft', key: string, value: number): void;
  setGamma(gamma: Gamma): void;
  close(): void;
}

export interface Addon {
  create(modelDir: string, modulePath: string, opts: EngineOptions): Promise<NativeEngine>;
  checkModel(modelDir: string, dtype: string): Promise<string>;
  cudaAvailable(): { available: boolean; reason: string };
}

export const ADDON_PATH = process.env.MAGICDEC_ADDON ?? fileURLToPath(new URL('../build/magicdec_node.node', import.meta.url));

let addon: Addon | undefined;
function load(): Addon {
  if (!addon) {
    try {
      addon = createRequire(import.meta.url)(ADDON_PATH) as Addon;
    } catch (e) {
      throw new Error(`magicdec runtime addon not found at ${ADDON_PATH} (build it: npx cmake-js compile -d runtime): ${(e as Error).message}`);
    }
  }
  return addon;
}

/**
 * The addon's engine itself, below Engine's pump: the caller steps it (one prefill chunk or decode round
 * per step()) and may change gamma or params between steps at exactly the boundaries it chooses.
 */
export function createNativeEngine(modelDir: string, modulePath: string, opts: EngineOptions = {}): Promise<NativeEngine> {
  return load().create(modelDir, modulePath, opts);
}

/** Validates a model directory (config.json + every tensor); resolves to a one-line summary. */
export function checkModel(modelDir: string, dtype: 'bf16' | 'fp16' | 'fp32'): Promise<string> {
  return load().checkModel(modelDir, dtype);
}

/**
 * Whether this runtime runs CUDA (sm_80 / sm_90) modules on a GPU here; if not, why (built without
 * -DMAGICDEC_CUDA=ON, no GPU, driver too old). CPU modules and emulated CUDA builds run either way.
 */
export function cudaAvailable(): { available: boolean; reason: string } {
  return load().cudaAvailable();
}

/** Where one request's output goes as steps produce it. */
class Sink {
  readonly tokens: number[] = [];
  readonly logits: Float32Array[] = [];
  private waiters: (() => void)[] = [];
  done = false;
  error?: Error;
  readonly result: Promise<Generation>;
  private resolve!: (g: Generation) => void;
  private reject!: (e: Error) => void;

  constructor(
    readonly id: number,
    private readonly vocab: number,
  ) {
    this.result = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.result.catch(() => {}); // a stream consumer may never look at `result`
  }

  push(ev: NativeEvent): void {
    for (const t of ev.tokens) this.tokens.push(t);
    if (ev.logits) for (let i = 0; i < ev.tokens.length; i++) this.logits.push(ev.logits.slice(i * this.vocab, (i + 1) * this.vocab));
    if (ev.finished) {
      if (ev.reason === 'error') this.fail(new Error(`request ${this.id}: ${ev.error ?? 'failed'}`));
      else if (ev.reason === 'cancelled') this.fail(new CancelledError(this.id, this.tokens, ev.stats, ev.seed));
      else {
        this.done = true;
        this.resolve({
          id: this.id,
          tokens: this.tokens,
          seed: ev.seed!,
          ...(this.logits.length ? { logits: this.logits } : {}),
          reason: ev.reason as 'stop' | 'length',
          stats: ev.stats!,
        });
      }
    }
    this.wake();
  }

  fail(e: Error): void {
    this.done = true;
    this.error = e;
    this.reject(e);
    this.wake();
  }

  wait(): Promise<void> {
    return new Promise((res) => this.waiters.push(res));
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** Engine.stream's tokens as they are produced, with the request's id, outcome and (kept) logits. */
export interface TokenStream extends AsyncIterableIterator<number> {
  readonly generation: Promise<Generation>;
  readonly id: number;
  /** The logits row of token i once the stream has yielded it (keepLogits: the engine's or the request's), else undefined. */
  logits(i: number): Float32Array | undefined;
}

/** The engine as of the end of the latest step, read without waiting for the step in flight. */
export interface EngineSnapshot {
  readonly stats: EngineStats;
  /** Requests queued or running. */
  readonly live: number;
  /** Requests waiting for admission (a free slot and their KV pages). */
  readonly queued: number;
}

export class Engine {
  private readonly sinks = new Map<number, Sink>();
  private pumping = false;
  private closed = false;
  private last: EngineSnapshot;
  readonly vocabSize: number;

  private constructor(private readonly native: NativeEngine) {
    this.vocabSize = JSON.parse(native.info()).model.vocabSize;
    this.last = { stats: native.stats(), live: 0, queued: 0 };
  }

  /** Loads the module and the model (off the JS thread) and checks one against the other. */
  static async create(modelDir: string, modulePath: string, opts: EngineOptions = {}): Promise<Engine> {
    return new Engine(await load().create(modelDir, modulePath, opts));
  }

  /** Generates for one prompt; resolves when it stops (a stop token, EOS or maxTokens). */
  generate(prompt: readonly number[] | Int32Array, opts: RequestOptions = {}): Promise<Generation> {
    return this.submit(prompt, opts).result;
  }

  /**
   * Tokens as they are produced. `generation` resolves like generate() once the stream ends; `id` is the
   * request's (for cancel()). Leaving a `for await` loop early (break, throw) cancels the request.
   */
  stream(prompt: readonly number[] | Int32Array, opts: RequestOptions = {}): TokenStream {
    const sink = this.submit(prompt, opts);
    let next = 0;
    const it = {
      generation: sink.result,
      id: sink.id,
      logits: (i: number) => sink.logits[i],
      async next(): Promise<IteratorResult<number>> {
        while (next >= sink.tokens.length && !sink.done) await sink.wait();
        if (next < sink.tokens.length) return { value: sink.tokens[next++], done: false };
        if (sink.error) throw sink.error;
        return { value: undefined, done: true };
      },
      return: async (): Promise<IteratorResult<number>> => {
        if (!sink.done) this.cancel(sink.id);
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return it;
      },
    };
    return it;
  }

  /**
   * Cancels a request: at the next step it leaves the queue or frees its slot and KV pages, and its
   * generate() / stream rejects with a CancelledError (unless it finished first). A no-op for a finished
   * request; false for an id this engine never issued.
   */
  cancel(id: number): boolean {
    if (this.closed) return false;
    return this.native.cancel(id);
  }

  /** Statistics now (waits for the step in flight, if any, to end). */
  stats(): EngineStats {
    return this.native.stats();
  }

  /** Statistics, live and queued requests as of the end of the latest step; never waits for a step. */
  snapshot(): EngineSnapshot {
    return this.last;
  }

  /** Model, module, params and options as the runtime sees them. */
  info(): Record<string, unknown> {
    return JSON.parse(this.native.info());
  }

  /** Changes a pass's runtime param (manifest key, e.g. 'kv_window') for later steps; no recompilation. */
  setParam(pass: 'target' | 'draft', key: string, value: number): void {
    this.native.setParam(pass, key, value);
  }

  /** Sets the gamma of later rounds (1..module gamma, 'auto' or 'off'); requests in flight go on losslessly. */
  setGamma(gamma: Gamma): void {
    this.native.setGamma(gamma);
  }

  /** Frees the engine once the step in flight (if any) ends; live requests are rejected. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.native.close();
    for (const s of this.sinks.values()) s.fail(new Error(`request ${s.id}: engine closed`));
    this.sinks.clear();
  }

  private submit(prompt: readonly number[] | Int32Array, opts: RequestOptions): Sink {
    if (this.closed) throw new Error('engine is closed');
    const { signal } = opts;
    signal?.throwIfAborted();
    const problem = samplingProblem(opts);
    if (problem) throw new Error(problem);
    const id = this.native.addRequest(prompt, opts); // throws on a bad prompt or options
    const sink = new Sink(id, this.vocabSize);
    this.sinks.set(id, sink);
    if (signal) {
      const abort = () => this.cancel(id);
      signal.addEventListener('abort', abort, { once: true });
      sink.result.then(
        () => signal.removeEventListener('abort', abort),
        () => signal.removeEventListener('abort', abort),
      );
    }
    void this.pump();
    return sink;
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.closed && this.sinks.size > 0) {
        const { events, live, queued } = await this.native.step();
        this.last = { stats: this.native.stats(), live, queued }; // no step in flight here: does not wait
        for (const ev of events) {
          const sink = this.sinks.get(ev.id);
          if (!sink) continue;
          sink.push(ev);
          if (ev.finished) this.sinks.delete(ev.id);
        }
      }
    } catch (e) {
      for (const s of this.sinks.values()) s.fail(e as Error);
      this.sinks.clear();
    } finally {
      this.pumping = false;
    }
  }
}
