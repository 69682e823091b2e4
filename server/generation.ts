// The glue between HTTP requests and the engine. The engine batches continuously on its own
// (runtime/src/engine.h, Engine::step: every request joins and leaves the batch at any step, decode rounds
// interleave with prefill chunks, admission waits for KV pages); this layer bounds how many requests the
// server holds (429 past --max-batch + --max-queue), turns each request's tokens into text as they arrive,
// cuts it at stop strings (cancelling the engine request there), cancels a request whose client went away
// or that a shutdown ends, and records what the metrics report. Each request settles only once the engine
// has let it go, so the in-flight count is what the engine holds.
//
// A request with `n` choices is n engine requests, submitted together (the engine admits them in FIFO
// order, so they run side by side once their KV pages are free) under one AbortController: a disconnect,
// a shutdown or one choice's failure cancels them all. With a seed s, choice i is keyed by
// (s + i) mod 2^53 (choiceSeed); without one, a request of several choices draws s itself, so the seed in
// its usage replays every choice.
import { performance } from 'node:perf_hooks';
import { randomInt } from 'node:crypto';
import { CancelledError, type Engine, type RequestStats, type TokenStream } from '../runtime/node/index.ts';
import { ApiError, badRequest, queueFull, shuttingDown } from './errors.ts';
import type { ServerMetrics } from './metrics.ts';
import type { GenerationRequest, ModelContext } from './requests.ts';
import { tokenLogprob, type TokenLogprob } from './logprobs.ts';
import { engineSampling, MAX_SEED, samples, type SamplingSupport } from './sampling.ts';
import { Detokenizer, StopMatcher } from './text.ts';

/** Text that became final, with the tokens it came from (the last delta may carry tokens and no text). */
export interface Delta {
  /** The choice it belongs to. */
  readonly index: number;
  readonly text: string;
  readonly tokens: readonly number[];
  /** With logprobs: one entry per token, and each token's offset in the choice's text. */
  readonly logprobs?: readonly TokenLogprob[];
  readonly offsets?: readonly number[];
}

export interface Usage {
  prompt_tokens: number;
  /** Summed over the choices. */
  completion_tokens: number;
  total_tokens: number;
  /**
   * magicdec's own: how speculation went for this request (all its choices; null acceptance in AR mode),
   * and, for a sampled request, the seed its noise was keyed by (the one given, or the one drawn): sending
   * it back replays the same tokens (choice i: choiceSeed(seed, i)).
   */
  magicdec: { mode: 'ar' | 'spec'; acceptance: number | null; tokens_per_round: number; rounds: number; drafted: number; accepted: number; seed?: number };
}

export interface Choice {
  readonly index: number;
  readonly finishReason: 'stop' | 'length';
  readonly text: string;
  /** The completion's tokens: up to and including the one that completed a stop string. */
  readonly tokens: readonly number[];
  /** With logprobs: one entry per token, and each token's offset in `text` (clamped to its length). */
  readonly logprobs?: readonly TokenLogprob[];
  readonly offsets?: readonly number[];
}

export interface Outcome {
  readonly choices: readonly Choice[];
  readonly usage: Usage;
}

/** Where a running request's output goes as it becomes final (streaming). */
export interface Listener {
  delta(d: Delta): void;
  /** A choice has ended (the others may go on). */
  finished(c: Choice): void;
}

/** The client went away before its request finished; nobody is left to answer. */
export class ClientGone extends Error {}

const SHUTDOWN = 'shutdown';

/** The seed of choice i of a request seeded s: (s + i) mod 2^53, so choice 0 is keyed by s itself. */
export function choiceSeed(seed: number, i: number): number {
  return (seed + i) % (MAX_SEED + 1);
}

/** One choice as it settles with the engine. */
interface Settled {
  readonly choice?: Choice;
  readonly stats?: RequestStats;
  readonly seed?: number;
  readonly reason: 'stop' | 'length' | 'cancelled' | 'error';
  readonly failure?: unknown;
}

export class Generations {
  private readonly active = new Set<AbortController>();
  /** Engine requests (choices) held: what `limit` bounds. */
  private held = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly engine: Engine,
    private readonly ctx: ModelContext,
    private readonly metrics: ServerMetrics,
    private readonly mode: 'ar' | 'spec',
    /** Engine requests (choices) held at once, running or waiting for admission. */
    readonly limit: number,
    private readonly sampling: SamplingSupport,
  ) {}

  /** HTTP requests in flight. */
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
   * Takes one request (its n choices) into the engine, synchronously, so that a refusal comes before any
   * response is started: a 429 when the server would hold more than `limit` engine requests, a 400 for
   * sampling it does not do or a request the engine refuses. Then `run` follows it: `listener` gets text as
   * it becomes final and each choice as it ends (streaming); the promise resolves with the outcome, or
   * rejects with an ApiError (500 if the engine fails a choice, 503 if a shutdown cancels it) or with
   * ClientGone once `signal` has cancelled it.
   */
  admit(req: GenerationRequest, signal: AbortSignal): { run(listener?: Listener): Promise<Outcome> } {
    if (this.held + req.n > this.limit) throw queueFull(this.limit);
    const sampling = engineSampling(req.sampling, this.sampling);
    if (signal.aborted) throw new ClientGone();
    // Several sampled choices share one seed the server draws when the request has none (see the header).
    const seed = sampling.seed ?? (req.n > 1 && samples(req.sampling) ? randomInt(0, 2 ** 48 - 1) : undefined);
    const ac = new AbortController();
    const streams: TokenStream[] = [];
    try {
      for (let i = 0; i < req.n; i++) {
        const own = seed === undefined ? {} : { seed: choiceSeed(seed, i) };
        const keep = req.logprobs === undefined ? {} : { keepLogits: true };
        streams.push(this.engine.stream(req.prompt, { maxTokens: req.maxTokens, ignoreEos: req.ignoreEos, signal: ac.signal, ...sampling, ...own, ...keep }));
      }
    } catch (e) {
      ac.abort('refused'); // the choices already submitted
      throw badRequest((e as Error).message, req.kind === 'chat' ? 'messages' : 'prompt');
    }
    this.active.add(ac);
    this.held += req.n;
    const forward = () => ac.abort('client');
    signal.addEventListener('abort', forward, { once: true });
    const started = performance.now();
    for (let i = 0; i < req.n; i++) this.metrics.started();
    return {
      run: async (listener) => {
        try {
          const settled = await Promise.all(
            streams.map((s, i) =>
              this.follow(req, i, s, started, listener).then((r) => {
                if (r.reason === 'error') ac.abort('failed'); // one failed choice ends the request
                return r;
              }),
            ),
          );
          return this.outcome(req, settled, ac, seed);
        } finally {
          signal.removeEventListener('abort', forward);
          this.active.delete(ac);
          this.held -= req.n;
          if (this.active.size === 0) {
            const w = this.idleWaiters;
            this.idleWaiters = [];
            for (const f of w) f();
          }
        }
      },
    };
  }

  /** The request's outcome once every choice has settled, or the error that ended it. */
  private outcome(req: GenerationRequest, settled: readonly Settled[], ac: AbortController, seed: number | undefined): Outcome {
    const failed = settled.find((s) => s.reason === 'error');
    if (failed) {
      const msg = (failed.failure as Error | undefined)?.message ?? 'unknown error';
      throw new ApiError(500, `the engine failed this request: ${msg}`, 'server_error', null, 'engine_error');
    }
    if (settled.some((s) => s.reason === 'cancelled')) throw ac.signal.reason === SHUTDOWN ? shuttingDown() : new ClientGone();
    const choices = settled.map((s) => s.choice!);
    return { choices, usage: this.usage(req, settled, seed ?? settled[0].seed) };
  }

  /** Follows choice `index` to its end; never rejects (what happened is in the result). */
  private async follow(req: GenerationRequest, index: number, stream: TokenStream, started: number, listener?: Listener): Promise<Settled> {
    const detok = new Detokenizer(this.ctx.tokenizer);
    const stopper = new StopMatcher(req.stop);
    const tokens: number[] = [];
    const logprobs: TokenLogprob[] | undefined = req.logprobs === undefined ? undefined : [];
    const offsets: number[] = [];
    let raw = 0; // length of the detokenized text before the next token (before stop strings cut it)
    let text = '';
    let unsent = 0; // tokens[unsent..] are not in a delta yet
    let last = started;
    const give = (out: string, final = false) => {
      text += out;
      if (listener && (out.length > 0 || (final && unsent < tokens.length))) {
        const lp = logprobs ? { logprobs: logprobs.slice(unsent), offsets: offsets.slice(unsent).map((o) => Math.min(o, text.length)) } : {};
        listener.delta({ index, text: out, tokens: tokens.slice(unsent), ...lp });
        unsent = tokens.length;
      }
    };
    let failure: unknown;
    try {
      for await (const t of stream) {
        const now = performance.now();
        if (tokens.length === 0) this.metrics.ttft.observe((now - started) / 1000);
        else this.metrics.itl.observe((now - last) / 1000);
        last = now;
        if (logprobs) {
          const row = stream.logits(tokens.length);
          if (!row) throw new Error(`the engine kept no logits for token ${tokens.length}`);
          logprobs.push(tokenLogprob(row, t, req.logprobs!));
          offsets.push(raw);
        }
        tokens.push(t);
        const piece = detok.push(t);
        raw += piece.length;
        give(stopper.feed(piece));
        if (stopper.stopped) break; // leaves the loop: the stream's return() cancels the engine request
      }
    } catch (e) {
      failure = e;
      stream.return?.(); // cancels the engine request if it is still going
    }
    // Settle with the engine: once this resolves or rejects, the request's slot and pages are free.
    let stats: RequestStats | undefined;
    let seed: number | undefined;
    let reason: Settled['reason'];
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
    if (failure !== undefined && !(failure instanceof CancelledError)) reason = 'error'; // a failure here, not a cancellation
    else if (stopper.stopped) reason = 'stop';
    this.metrics.finished(reason, req.prompt.length, tokens.length, stats, (performance.now() - started) / 1000);
    if (reason === 'cancelled' || reason === 'error') return { reason, stats, seed, failure };
    if (!stopper.stopped) give(stopper.feed(detok.flush()) + stopper.flush(), true);
    else give('', true);
    const lp = logprobs ? { logprobs, offsets: offsets.map((o) => Math.min(o, text.length)) } : {};
    const choice: Choice = { index, finishReason: reason === 'length' ? 'length' : 'stop', text, tokens, ...lp };
    listener?.finished(choice);
    return { choice, stats, seed, reason };
  }

  private usage(req: GenerationRequest, settled: readonly Settled[], seed: number | undefined): Usage {
    const spec = this.mode === 'spec';
    const sum = (f: (s: RequestStats) => number) => settled.reduce((a, s) => a + (s.stats ? f(s.stats) : 0), 0);
    const rounds = sum((s) => s.rounds);
    const drafted = sum((s) => s.drafted);
    const accepted = sum((s) => s.accepted);
    const completion = settled.reduce((a, s) => a + (s.choice?.tokens.length ?? 0), 0);
    return {
      prompt_tokens: req.prompt.length,
      completion_tokens: completion,
      total_tokens: req.prompt.length + completion,
      magicdec: {
        mode: this.mode,
        acceptance: spec ? (drafted ? accepted / drafted : 0) : null,
        tokens_per_round: spec ? (rounds ? (accepted + rounds) / rounds : 0) : 1,
        rounds,
        drafted,
        accepted,
        ...(samples(req.sampling) && seed !== undefined ? { seed } : {}),
      },
    };
  }
}
