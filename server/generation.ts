// The glue between HTTP requests and the engine. The engine batches continuously on its own
// (runtime/src/engine.h, Engine::step: every request joins and leaves the batch at any step, decode rounds
// interleave with prefill chunks, admission waits for KV pages); this layer bounds how many requests the
// server holds (429 past --max-batch + --max-queue), turns each request's tokens into text as they arrive,
// cuts it at stop strings (cancelling the engine request there), cancels a request whose client went away
// or that a shutdown ends, and records what the metrics report. Each request settles only once the engine
// has let it go, so the in-flight count is what the engine holds.
import { performance } from 'node:perf_hooks';
import { CancelledError, type Engine, type RequestStats } from '../runtime/node/index.ts';
import { ApiError, badRequest, queueFull, shuttingDown } from './errors.ts';
import type { ServerMetrics } from './metrics.ts';
import type { GenerationRequest, ModelContext } from './requests.ts';
import { engineSampling, samples, type SamplingSupport } from './sampling.ts';
import { Detokenizer, StopMatcher } from './text.ts';

/** Text that became final, with the tokens it came from (the last delta may carry tokens and no text). */
export interface Delta {
  readonly text: string;
  readonly tokens: readonly number[];
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /**
   * magicdec's own: how speculation went for this request (null acceptance in AR mode), and, for a sampled
   * request, the seed its noise was keyed by (the one given, or the one the engine drew): sending it back
   * replays the same tokens.
   */
  magicdec: { mode: 'ar' | 'spec'; acceptance: number | null; tokens_per_round: number; rounds: number; drafted: number; accepted: number; seed?: number };
}

export interface Outcome {
  readonly finishReason: 'stop' | 'length';
  readonly text: string;
  /** The completion's tokens: up to and including the one that completed a stop string. */
  readonly tokens: readonly number[];
  readonly usage: Usage;
}

/** The client went away before its request finished; nobody is left to answer. */
export class ClientGone extends Error {}

const SHUTDOWN = 'shutdown';

export class Generations {
  private readonly active = new Set<AbortController>();
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly engine: Engine,
    private readonly ctx: ModelContext,
    private readonly metrics: ServerMetrics,
    private readonly mode: 'ar' | 'spec',
    /** Requests held at once (running or waiting for admission). */
    readonly limit: number,
    private readonly sampling: SamplingSupport,
  ) {}

  get inFlight(): number {
    return this.active.size;
  }

  /** Resolves once no request is in flight. */
  idle(): Promise<void> {
    if (this.active.size === 0) return Promise.resolve();
    return new Promise((res) => this.idleWaiters.push(res));
  }

  /** Cancels every request in flight: each settles with a 503 (shutting down) once the engine lets it go. */
  abortAll(): void {
    for (const ac of this.active) ac.abort(SHUTDOWN);
  }

  /**
   * Takes one request into the engine, synchronously, so that a refusal comes before any response is
   * started: a 429 when the server holds `limit` requests, a 400 for sampling it does not do or a request
   * the engine refuses. Then `run` follows it: `onDelta` gets text as it becomes final (streaming); the
   * promise resolves with the outcome, or rejects with an ApiError (500 if the engine fails the request,
   * 503 if a shutdown cancels it) or with ClientGone once `signal` has cancelled it.
   */
  admit(req: GenerationRequest, signal: AbortSignal): { run(onDelta?: (d: Delta) => void): Promise<Outcome> } {
    if (this.active.size >= this.limit) throw queueFull(this.limit);
    const sampling = engineSampling(req.sampling, this.sampling);
    if (signal.aborted) throw new ClientGone();
    const ac = new AbortController();
    let stream: ReturnType<Engine['stream']>;
    try {
      stream = this.engine.stream(req.prompt, { maxTokens: req.maxTokens, ignoreEos: req.ignoreEos, signal: ac.signal, ...sampling });
    } catch (e) {
      throw badRequest((e as Error).message, req.kind === 'chat' ? 'messages' : 'prompt');
    }
    this.active.add(ac);
    const forward = () => ac.abort('client');
    signal.addEventListener('abort', forward, { once: true });
    const started = performance.now();
    this.metrics.started();
    return {
      run: async (onDelta) => {
        try {
          return await this.follow(req, stream, ac, started, onDelta);
        } finally {
          signal.removeEventListener('abort', forward);
          this.active.delete(ac);
          if (this.active.size === 0) {
            const w = this.idleWaiters;
            this.idleWaiters = [];
            for (const f of w) f();
          }
        }
      },
    };
  }

  private async follow(
    req: GenerationRequest,
    stream: ReturnType<Engine['stream']>,
    ac: AbortController,
    started: number,
    onDelta?: (d: Delta) => void,
  ): Promise<Outcome> {
    const detok = new Detokenizer(this.ctx.tokenizer);
    const stopper = new StopMatcher(req.stop);
    const tokens: number[] = [];
    let text = '';
    let unsent: number[] = [];
    let last = started;
    const give = (out: string, final = false) => {
      text += out;
      if (onDelta && (out.length > 0 || (final && unsent.length > 0))) {
        onDelta({ text: out, tokens: unsent });
        unsent = [];
      }
    };
    let failure: unknown;
    try {
      for await (const t of stream) {
        const now = performance.now();
        if (tokens.length === 0) this.metrics.ttft.observe((now - started) / 1000);
        else this.metrics.itl.observe((now - last) / 1000);
        last = now;
        tokens.push(t);
        unsent.push(t);
        give(stopper.feed(detok.push(t)));
        if (stopper.stopped) break; // leaves the loop: the stream's return() cancels the engine request
      }
    } catch (e) {
      failure = e;
    }
    // Settle with the engine: once this resolves or rejects, the request's slot and pages are free.
    let stats: RequestStats | undefined;
    let seed: number | undefined;
    let reason: 'stop' | 'length' | 'cancelled' | 'error';
    try {
      const g = await stream.generation;
      stats = g.stats;
      seed = g.seed;
      reason = g.reason;
    } catch (e) {
      if (e instanceof CancelledError) {
        stats = e.stats;
        seed = e.seed;
        reason = 'cancelled';
      } else {
        failure ??= e;
        reason = 'error';
      }
    }
    if (stopper.stopped) reason = 'stop';
    this.metrics.finished(reason, req.prompt.length, tokens.length, stats, (performance.now() - started) / 1000);
    if (reason === 'cancelled') throw ac.signal.reason === SHUTDOWN ? shuttingDown() : new ClientGone();
    if (reason === 'error') throw new ApiError(500, `the engine failed this request: ${(failure as Error)?.message ?? 'unknown error'}`, 'server_error', null, 'engine_error');
    if (!stopper.stopped) give(stopper.feed(detok.flush()) + stopper.flush(), true);
    else give('', true);
    return { finishReason: reason === 'length' ? 'length' : 'stop', text, tokens, usage: this.usage(req, tokens.length, stats, seed) };
  }

  private usage(req: GenerationRequest, completion: number, s: RequestStats | undefined, seed: number | undefined): Usage {
    const spec = this.mode === 'spec';
    return {
      prompt_tokens: req.prompt.length,
      completion_tokens: completion,
      total_tokens: req.prompt.length + completion,
      magicdec: {
        mode: this.mode,
        acceptance: spec ? (s?.acceptance ?? 0) : null,
        tokens_per_round: spec ? (s?.tokensPerRound ?? 0) : 1,
        rounds: s?.rounds ?? 0,
        drafted: s?.drafted ?? 0,
        accepted: s?.accepted ?? 0,
        ...(samples(req.sampling) && seed !== undefined ? { seed } : {}),
      },
    };
  }
}
