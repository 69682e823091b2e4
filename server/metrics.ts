// GET /metrics in Prometheus' text format (prom-client), one registry per server. Request counts, tokens,
// latencies (histograms of time to first token, inter-token latency and request duration) and speculation
// totals are recorded as requests run; the engine's state (KV pages, waiting requests, steps, time per
// stage) is read at scrape time from Engine.snapshot(), the statistics as of the latest step, which never
// waits for a step in flight.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EngineSnapshot, RequestStats } from '../runtime/node/index.ts';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface EngineView {
  snapshot(): EngineSnapshot;
  readonly kvPages: number;
  inFlight(): number;
}

export class ServerMetrics {
  readonly registry = new Registry();
  readonly http: Counter<'route' | 'status'>;
  readonly ttft: Histogram;
  readonly itl: Histogram;
  private readonly duration: Histogram;
  private readonly requests: Counter;
  private readonly finishedBy: Counter<'reason'>;
  private readonly promptTokens: Counter;
  private readonly generationTokens: Counter;
  private readonly drafted: Counter;
  private readonly accepted: Counter;
  private readonly seqRounds: Counter;
  /** Totals of finished requests' speculation, for the acceptance and tokens-per-round gauges. */
  private spec = { drafted: 0, accepted: 0, rounds: 0 };

  constructor(view: EngineView) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'magicdec_' });
    this.http = new Counter({ name: 'magicdec_http_requests_total', help: 'HTTP requests answered, by route and status code', labelNames: ['route', 'status'], registers });
    this.requests = new Counter({ name: 'magicdec_requests_total', help: 'Generation requests handed to the engine', registers });
    this.finishedBy = new Counter({
      name: 'magicdec_requests_finished_total',
      help: 'Generation requests the engine let go, by how they ended (stop, length, cancelled, error)',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of ['stop', 'length', 'cancelled', 'error']) this.finishedBy.inc({ reason }, 0); // every series from the start
    this.promptTokens = new Counter({ name: 'magicdec_prompt_tokens_total', help: 'Prompt tokens of finished requests', registers });
    this.generationTokens = new Counter({ name: 'magicdec_generation_tokens_total', help: 'Completion tokens returned to clients', registers });
    this.drafted = new Counter({ name: 'magicdec_spec_drafted_tokens_total', help: 'Tokens drafted for finished requests (speculative mode)', registers });
    this.accepted = new Counter({ name: 'magicdec_spec_accepted_tokens_total', help: 'Drafted tokens the target accepted, finished requests', registers });
    this.seqRounds = new Counter({ name: 'magicdec_spec_sequence_rounds_total', help: 'Speculative rounds summed over finished requests', registers });
    const spec = () => this.spec;
    new Gauge({
      name: 'magicdec_spec_acceptance',
      help: 'Accepted / drafted tokens over the finished requests',
      registers,
      collect() {
        const s = spec();
        this.set(s.drafted ? s.accepted / s.drafted : 0);
      },
    });
    new Gauge({
      name: 'magicdec_spec_tokens_per_round',
      help: 'Tokens emitted per sequence per speculative round, (accepted + rounds) / rounds, over the finished requests',
      registers,
      collect() {
        const s = spec();
        this.set(s.rounds ? (s.accepted + s.rounds) / s.rounds : 0);
      },
    });
    this.ttft = new Histogram({ name: 'magicdec_time_to_first_token_seconds', help: 'From a request reaching the engine to its first token', buckets: LATENCY_BUCKETS, registers });
    this.itl = new Histogram({ name: 'magicdec_inter_token_latency_seconds', help: 'Between consecutive tokens of a request', buckets: LATENCY_BUCKETS, registers });
    this.duration = new Histogram({ name: 'magicdec_request_duration_seconds', help: 'From a request reaching the engine to the engine letting it go', buckets: LATENCY_BUCKETS, registers });

    new Gauge({ name: 'magicdec_kv_pages_total', help: 'KV-cache pages in the pool', registers, collect() { this.set(view.kvPages); } });
    new Gauge({ name: 'magicdec_kv_pages_free', help: 'Free KV-cache pages, as of the latest engine step', registers, collect() { this.set(view.snapshot().stats.freePages); } });
    new Gauge({ name: 'magicdec_requests_in_flight', help: 'Requests the server holds: running or waiting', registers, collect() { this.set(view.inFlight()); } });
    new Gauge({ name: 'magicdec_queue_depth', help: 'Requests waiting for admission (a slot and their KV pages), as of the latest step', registers, collect() { this.set(view.snapshot().queued); } });
    new Gauge({ name: 'magicdec_requests_running', help: 'Requests in the engine and admitted, as of the latest step', registers, collect() { const s = view.snapshot(); this.set(s.live - s.queued); } });
    // Engine totals are monotonic: each scrape adds what they grew by since the last.
    const seen = new Map<string, number>();
    const grow = (c: Counter<string>, key: string, now: number, labels?: Record<string, string>) => {
      const d = now - (seen.get(key) ?? 0);
      if (d > 0) (labels ? c.inc(labels, d) : c.inc(d));
      seen.set(key, Math.max(now, seen.get(key) ?? 0));
    };
    new Counter({
      name: 'magicdec_engine_steps_total',
      help: 'Engine steps (each a decode round and/or a prefill chunk)',
      registers,
      collect() {
        grow(this, 'steps', view.snapshot().stats.steps);
      },
    });
    new Counter({
      name: 'magicdec_engine_stage_seconds_total',
      help: 'Time the engine spent per stage: prefill, draft, verify (speculative) and decode (autoregressive)',
      labelNames: ['stage'],
      registers,
      collect() {
        const s = view.snapshot().stats;
        for (const [stage, v] of [['prefill', s.prefillS], ['draft', s.draftS], ['verify', s.verifyS], ['decode', s.decodeS]] as const) grow(this, stage, v, { stage });
      },
    });
  }

  started(): void {
    this.requests.inc();
  }

  finished(reason: string, prompt: number, completion: number, stats: RequestStats | undefined, seconds: number): void {
    this.finishedBy.inc({ reason });
    this.promptTokens.inc(prompt);
    this.generationTokens.inc(completion);
    this.duration.observe(seconds);
    if (stats && stats.drafted > 0) {
      this.drafted.inc(stats.drafted);
      this.accepted.inc(stats.accepted);
      this.seqRounds.inc(stats.rounds);
      this.spec.drafted += stats.drafted;
      this.spec.accepted += stats.accepted;
      this.spec.rounds += stats.rounds;
    }
  }
}
