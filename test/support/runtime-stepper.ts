// Drives the Node addon's engine one step at a time, below runtime/node/index.ts's pump, so that tests can
// see what each step did: which requests got how many tokens in which round, and when each one finished.
// (The public Engine wrapper hides step boundaries on purpose; raggedness is only visible here.)
import { createRequire } from 'node:module';
import { ADDON_PATH, type Addon, type EngineOptions, type EngineStats, type Gamma, type NativeEngine, type RequestOptions, type RequestStats } from '../../runtime/node/index.ts';

export interface Arrival {
  readonly prompt: readonly number[];
  readonly opts: RequestOptions;
  /** Added just before this step (0 = before the first). */
  readonly at: number;
}

export interface SteppedRequest {
  readonly tokens: number[];
  readonly logits: Float32Array[];
  reason: 'none' | 'stop' | 'length' | 'error' | 'cancelled';
  error?: string;
  stats?: RequestStats;
  /** Step in which it finished. */
  finishedAt: number;
  /** Per decode round it took part in (and did not finish in): tokens it got. */
  readonly roundTokens: Map<number, number>;
  /** Steps whose events gave it tokens, in order. */
  readonly tokenSteps: number[];
  /** Step whose event brought its first token (from its prefill), or -1. */
  firstTokenAt: number;
  /** The engine's id. */
  id: number;
}

export interface SteppedRun {
  readonly requests: SteppedRequest[];
  /** Steps that ran a speculative or autoregressive decode round (a step may also run a prefill chunk). */
  readonly decodeSteps: number[];
  /** Steps that ran a prefill chunk. */
  readonly prefillSteps: number[];
  /** Free KV pages after each step. */
  readonly freePages: number[];
  readonly stats: EngineStats;
}

export class Stepper {
  private constructor(
    private readonly native: NativeEngine,
    private readonly vocab: number,
  ) {}

  static async create(modelDir: string, modulePath: string, vocab: number, opts: EngineOptions): Promise<Stepper> {
    const addon = createRequire(import.meta.url)(ADDON_PATH) as Addon;
    return new Stepper(await addon.create(modelDir, modulePath, { keepLogits: true, ...opts }), vocab);
  }

  setParam(pass: 'target' | 'draft', key: string, value: number): void {
    this.native.setParam(pass, key, value);
  }

  info(): Record<string, unknown> {
    return JSON.parse(this.native.info()) as Record<string, unknown>;
  }

  setGamma(gamma: Gamma): void {
    this.native.setGamma(gamma);
  }

  close(): void {
    this.native.close();
  }

  cancel(id: number): boolean {
    return this.native.cancel(id);
  }

  stats(): EngineStats {
    return this.native.stats();
  }

  /**
   * Adds each arrival before its step and steps until every request has finished; `beforeStep` runs first
   * (with the requests so far: a test may cancel one by its id there).
   */
  async run(arrivals: readonly Arrival[], beforeStep?: (step: number, requests: readonly SteppedRequest[]) => void, maxSteps = 100_000): Promise<SteppedRun> {
    const requests: SteppedRequest[] = arrivals.map(() => ({
      tokens: [],
      logits: [],
      reason: 'none',
      finishedAt: -1,
      roundTokens: new Map(),
      tokenSteps: [],
      firstTokenAt: -1,
      id: -1,
    }));
    const byId = new Map<number, number>();
    const decodeSteps: number[] = [];
    const prefillSteps: number[] = [];
    const freePages: number[] = [];
    let finished = 0;
    for (let step = 0; finished < arrivals.length; step++) {
      if (step >= maxSteps) throw new Error(`requests still live after ${maxSteps} steps`);
      arrivals.forEach((a, i) => {
        if (a.at === step) {
          requests[i].id = this.native.addRequest(a.prompt, a.opts);
          byId.set(requests[i].id, i);
        }
      });
      beforeStep?.(step, requests);
      const before = this.native.stats();
      const { events } = await this.native.step();
      const after = this.native.stats();
      const decode = after.rounds + after.arSteps > before.rounds + before.arSteps;
      if (decode) decodeSteps.push(step);
      if (after.prefillSteps > before.prefillSteps) prefillSteps.push(step);
      freePages.push(after.freePages);
      for (const ev of events) {
        const i = byId.get(ev.id);
        if (i === undefined) throw new Error(`step ${step}: event for unknown request id ${ev.id}`);
        const r = requests[i];
        // A request's first token comes from its prefill, in a step of its own: it decodes from the next.
        const fromPrefill = r.tokens.length === 0 && ev.tokens.length > 0;
        if (fromPrefill) r.firstTokenAt = step;
        if (ev.tokens.length > 0) r.tokenSteps.push(step);
        r.tokens.push(...ev.tokens);
        for (let t = 0; t < ev.tokens.length; t++) r.logits.push(ev.logits!.slice(t * this.vocab, (t + 1) * this.vocab));
        if (decode && !ev.finished && !fromPrefill) r.roundTokens.set(step, ev.tokens.length);
        if (ev.finished) {
          r.reason = ev.reason;
          r.error = ev.error;
          r.stats = ev.stats;
          r.finishedAt = step;
          finished++;
        }
      }
    }
    return { requests, decodeSteps, prefillSteps, freePages, stats: this.native.stats() };
  }
}
