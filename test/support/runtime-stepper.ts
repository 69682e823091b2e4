// Drives the Node addon's engine one step at a time, below runtime/node/index.ts's pump, so that tests can
// see what each step did: which requests got how many tokens in which round, and when each one finished.
// (The public Engine wrapper hides step boundaries on purpose; raggedness is only visible here.)
import { createRequire } from 'node:module';
import { ADDON_PATH, type Addon, type EngineOptions, type EngineStats, type NativeEngine, type RequestOptions, type RequestStats } from '../../runtime/node/index.ts';

export interface Arrival {
  readonly prompt: readonly number[];
  readonly opts: RequestOptions;
  /** Added just before this step (0 = before the first). */
  readonly at: number;
}

export interface SteppedRequest {
  readonly tokens: number[];
  readonly logits: Float32Array[];
  reason: 'none' | 'stop' | 'length' | 'error';
  error?: string;
  stats?: RequestStats;
  /** Step in which it finished. */
  finishedAt: number;
  /** Per decode round it took part in (and did not finish in): tokens it got. */
  readonly roundTokens: Map<number, number>;
}

export interface SteppedRun {
  readonly requests: SteppedRequest[];
  /** Steps that ran a speculative or autoregressive decode round (not a prefill chunk). */
  readonly decodeSteps: number[];
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

  setGamma(gamma: number | 'auto'): void {
    this.native.setGamma(gamma);
  }

  close(): void {
    this.native.close();
  }

  /** Adds each arrival before its step and steps until every request has finished; `beforeStep` runs first. */
  async run(arrivals: readonly Arrival[], beforeStep?: (step: number) => void, maxSteps = 100_000): Promise<SteppedRun> {
    const requests: SteppedRequest[] = arrivals.map(() => ({ tokens: [], logits: [], reason: 'none', finishedAt: -1, roundTokens: new Map() }));
    const byId = new Map<number, number>();
    const decodeSteps: number[] = [];
    let finished = 0;
    for (let step = 0; finished < arrivals.length; step++) {
      if (step >= maxSteps) throw new Error(`requests still live after ${maxSteps} steps`);
      beforeStep?.(step);
      arrivals.forEach((a, i) => {
        if (a.at === step) byId.set(this.native.addRequest(a.prompt, a.opts), i);
      });
      const before = this.native.stats();
      const { events } = await this.native.step();
      const after = this.native.stats();
      const decode = after.rounds + after.arSteps > before.rounds + before.arSteps;
      if (decode) decodeSteps.push(step);
      for (const ev of events) {
        const i = byId.get(ev.id);
        if (i === undefined) throw new Error(`step ${step}: event for unknown request id ${ev.id}`);
        const r = requests[i];
        r.tokens.push(...ev.tokens);
        for (let t = 0; t < ev.tokens.length; t++) r.logits.push(ev.logits!.slice(t * this.vocab, (t + 1) * this.vocab));
        if (decode && !ev.finished) r.roundTokens.set(step, ev.tokens.length);
        if (ev.finished) {
          r.reason = ev.reason;
          r.error = ev.error;
          r.stats = ev.stats;
          r.finishedAt = step;
          finished++;
        }
      }
    }
    return { requests, decodeSteps, stats: this.native.stats() };
  }
}
