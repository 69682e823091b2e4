// The load generator of `magicdec bench-serve` (bench/serve.ts): streaming completions over OpenAI's API
// (plain fetch, server-sent events read as they arrive), driven open-loop (Poisson arrivals at a request
// rate) or closed-loop (N clients, each sending its next request when the last one ends). Per request it
// records the time to the first token, the gaps between tokens, the end-to-end latency, the token count and
// the server's usage (magicdec's acceptance and tokens per round); per load level it summarizes them
// (summarizeLevel). The statistics are pure functions, unit-tested against hand-computed cases
// (test/bench/load.test.ts).

/** How a level offers load: `rate` requests/s arriving as a Poisson process, or `clients` closed-loop clients. */
export type Load = { readonly kind: 'open'; readonly rate: number } | { readonly kind: 'closed'; readonly clients: number };

export function loadLabel(l: Load): string {
  return l.kind === 'open' ? `${l.rate} req/s` : `${l.clients} client${l.clients === 1 ? '' : 's'}`;
}

/** One request the generator sends: a prompt of token ids and how many tokens to generate. */
export interface LoadRequest {
  readonly prompt: readonly number[];
  readonly maxTokens: number;
}

/** What one request measured (times in seconds from its own start). */
export interface RequestRecord {
  readonly promptTokens: number;
  /** Offset of the request's start from the level's start. */
  readonly startS: number;
  readonly ok: boolean;
  /** HTTP status, or 0 when the connection failed. */
  readonly status: number;
  readonly error?: string;
  /** Time to the first generated token. */
  readonly ttftS: number;
  /** Gap before each token after the first; a chunk of k tokens counts its gap once and k - 1 zero gaps. */
  readonly itlS: readonly number[];
  readonly e2eS: number;
  readonly tokens: number;
  /** usage.magicdec from the last chunk (drafted / accepted / rounds: 0 in AR mode). */
  readonly drafted: number;
  readonly accepted: number;
  readonly rounds: number;
  /** The generated token ids (compared across modes; left out of the JSON). */
  readonly tokenIds: readonly number[];
}

/** Percentiles, mean and count of a sample. */
export interface Summary {
  readonly n: number;
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

/**
 * The q-quantile (0 <= q <= 1) of `xs` by linear interpolation between closest ranks (NumPy's default,
 * Hyndman-Fan type 7): rank h = (n - 1) q, between sorted[floor h] and sorted[ceil h]. NaN when empty.
 */
export function percentile(xs: readonly number[], q: number): number {
  if (!(q >= 0 && q <= 1)) throw new Error(`percentile: q must be in [0, 1], got ${q}`);
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const h = (s.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.ceil(h);
  return s[lo] + (h - lo) * (s[hi] - s[lo]);
}

export function summarize(xs: readonly number[]): Summary {
  const n = xs.length;
  return {
    n,
    mean: n ? xs.reduce((a, b) => a + b, 0) / n : NaN,
    p50: percentile(xs, 0.5),
    p90: percentile(xs, 0.9),
    p99: percentile(xs, 0.99),
    max: n ? Math.max(...xs) : NaN,
  };
}

/** A load level's results. */
export interface LevelSummary {
  readonly requests: number;
  readonly failed: number;
  /** From the first request's start to the last one's end. */
  readonly durationS: number;
  /** Completed requests per second of the level. */
  readonly requestsPerS: number;
  /** Generated tokens (of completed requests) per second of the level. */
  readonly outputTokensPerS: number;
  readonly ttftS: Summary;
  /** Over every gap of every completed request. */
  readonly itlS: Summary;
  readonly e2eS: Summary;
  /** Per-request time per output token after the first: (e2e - ttft) / (tokens - 1). */
  readonly tpotS: Summary;
  /** Accepted over drafted tokens summed over the level's requests; null when nothing was drafted (AR). */
  readonly acceptance: number | null;
  /** Generated tokens over speculative rounds, summed over the level's requests; null in AR mode. */
  readonly tokensPerRound: number | null;
}

export function summarizeLevel(records: readonly RequestRecord[]): LevelSummary {
  const ok = records.filter((r) => r.ok);
  const start = Math.min(...records.map((r) => r.startS));
  const end = Math.max(...records.map((r) => r.startS + r.e2eS));
  const durationS = records.length ? end - start : 0;
  const tokens = ok.reduce((s, r) => s + r.tokens, 0);
  const drafted = ok.reduce((s, r) => s + r.drafted, 0);
  const accepted = ok.reduce((s, r) => s + r.accepted, 0);
  const rounds = ok.reduce((s, r) => s + r.rounds, 0);
  return {
    requests: records.length,
    failed: records.length - ok.length,
    durationS,
    requestsPerS: durationS > 0 ? ok.length / durationS : 0,
    outputTokensPerS: durationS > 0 ? tokens / durationS : 0,
    ttftS: summarize(ok.map((r) => r.ttftS)),
    itlS: summarize(ok.flatMap((r) => r.itlS)),
    e2eS: summarize(ok.map((r) => r.e2eS)),
    tpotS: summarize(ok.filter((r) => r.tokens > 1).map((r) => (r.e2eS - r.ttftS) / (r.tokens - 1))),
    acceptance: drafted > 0 ? accepted / drafted : null,
    tokensPerRound: rounds > 0 ? tokens / rounds : null,
  };
}

/** mulberry32: a small seeded PRNG, so that a level's arrivals and prompts repeat from run to run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Start offsets (s) of `n` Poisson arrivals at `rate` per second: exponential gaps, the first at 0. */
export function poissonArrivals(n: number, rate: number, random: () => number): number[] {
  if (!(rate > 0)) throw new Error(`poissonArrivals: rate must be > 0, got ${rate}`);
  const out: number[] = [];
  let t = 0;
  for (let i = 0; i < n; i++) {
    out.push(t);
    t += -Math.log(1 - random()) / rate;
  }
  return out;
}

interface Chunk {
  choices?: { token_ids?: number[]; text?: string; finish_reason?: string | null }[];
  usage?: { completion_tokens?: number; magicdec?: { drafted?: number; accepted?: number; rounds?: number } };
  error?: { message?: string };
}

/**
 * Sends one streaming completion to `url` (the server's base URL) and times its tokens as the chunks
 * arrive. Tokens are counted from each chunk's token_ids (return_token_ids), so a chunk that carries
 * several tokens (a speculative round) counts them all.
 */
export async function streamCompletion(url: string, model: string, req: LoadRequest, levelStart: number): Promise<RequestRecord> {
  const t0 = performance.now();
  const startS = (t0 - levelStart) / 1000;
  const base = { promptTokens: req.prompt.length, startS, ttftS: NaN, itlS: [] as number[], tokenIds: [] as number[], tokens: 0, drafted: 0, accepted: 0, rounds: 0 };
  const fail = (status: number, error: string): RequestRecord => ({ ...base, ok: false, status, error, e2eS: (performance.now() - t0) / 1000 });
  let res: Response;
  try {
    res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, prompt: req.prompt, max_tokens: req.maxTokens, stream: true, ignore_eos: true, return_token_ids: true, temperature: 0 }),
    });
  } catch (e) {
    return fail(0, (e as Error).message);
  }
  if (!res.ok || !res.body) return fail(res.status, (await res.text()).slice(0, 300));
  const itl: number[] = [];
  let first = NaN;
  let last = t0;
  let tokens = 0;
  const tokenIds: number[] = [];
  let usage: Chunk['usage'];
  let error: string | undefined;
  const decoder = new TextDecoder();
  let buf = '';
  for await (const bytes of res.body) {
    const now = performance.now();
    buf += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, end);
      buf = buf.slice(end + 2);
      if (!event.startsWith('data: ')) continue;
      const data = event.slice(6);
      if (data === '[DONE]') continue;
      const chunk = JSON.parse(data) as Chunk;
      if (chunk.error) error = chunk.error.message ?? 'error event';
      if (chunk.usage) usage = chunk.usage;
      const ids = (chunk.choices ?? []).flatMap((c) => c.token_ids ?? []);
      const k = ids.length;
      if (k === 0) continue;
      tokenIds.push(...ids);
      if (tokens === 0) {
        first = now;
        for (let i = 1; i < k; i++) itl.push(0);
      } else {
        itl.push((now - last) / 1000);
        for (let i = 1; i < k; i++) itl.push(0);
      }
      last = now;
      tokens += k;
    }
  }
  const e2eS = (performance.now() - t0) / 1000;
  if (error !== undefined) return { ...fail(res.status, error), e2eS };
  const m = usage?.magicdec ?? {};
  return {
    ...base,
    ok: true,
    status: res.status,
    ttftS: (first - t0) / 1000,
    itlS: itl,
    e2eS,
    tokens,
    tokenIds,
    drafted: m.drafted ?? 0,
    accepted: m.accepted ?? 0,
    rounds: m.rounds ?? 0,
  };
}

/**
 * Runs one load level over `requests` (sent in order) and resolves with every request's record.
 * Open loop: request i starts at arrivals[i] whatever the others do. Closed loop: `clients` workers each
 * take the next request as soon as their previous one has ended.
 */
export async function runLevel(
  url: string,
  model: string,
  load: Load,
  requests: readonly LoadRequest[],
  seed: number,
  onDone: () => void = () => {},
): Promise<RequestRecord[]> {
  const t0 = performance.now();
  const out: RequestRecord[] = new Array(requests.length);
  const one = async (i: number) => {
    out[i] = await streamCompletion(url, model, requests[i], t0);
    onDone();
  };
  if (load.kind === 'open') {
    const arrivals = poissonArrivals(requests.length, load.rate, rng(seed));
    await Promise.all(
      arrivals.map(async (at, i) => {
        const wait = at * 1000 - (performance.now() - t0);
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        await one(i);
      }),
    );
  } else {
    let next = 0;
    const worker = async () => {
      while (next < requests.length) await one(next++);
    };
    await Promise.all(Array.from({ length: Math.min(load.clients, requests.length) }, worker));
  }
  return out;
}
