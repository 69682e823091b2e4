// The stock attention variants, KV policies and verifiers. They are written in the DSL itself, so the
// front end compiles them exactly like user code.
import { attention, kvPolicy, verifier } from './core.ts';

export const causal = attention({ name: 'causal', mask: (q, kv) => kv <= q });

/** Causal attention limited to the last `w` positions (Mistral-style sliding window). */
export const slidingWindow = (w: number) =>
  attention({ name: 'sliding_window', params: { window: w }, mask: (q, kv, p) => kv <= q && q - kv < p.window });

/** Causal attention with tanh logit soft-capping (Gemma 2, Grok). */
export const softcap = (cap: number) =>
  attention({ name: 'softcap', params: { cap }, mask: (q, kv) => kv <= q, score: (s, q, kv, head, p) => p.cap * Math.tanh(s / p.cap) });

/** Causal attention with ALiBi biases; slopes 2^(-8(h+1)/H) for `numHeads` heads. */
export const alibi = (numHeads: number) =>
  attention({
    name: 'alibi',
    params: { heads: numHeads },
    const: true,
    mask: (q, kv) => kv <= q,
    score: (s, q, kv, head, p) => s - Math.pow(2, (-8 * (head + 1)) / p.heads) * (q - kv),
  });

/** Bidirectional over the first `prefix` positions, causal after (prefix-LM). */
export const prefixLM = (prefix: number) =>
  attention({ name: 'prefix_lm', params: { prefix }, mask: (q, kv, p) => kv < p.prefix || kv <= q });

/** Read every cached position. */
export const full = kvPolicy({ name: 'full', keep: () => true });

/** StreamingLLM: the first `sink` positions plus the most recent `window`. */
export const streaming = (cfg: { sink: number; window: number }) =>
  kvPolicy({ name: 'streaming', params: { sink: cfg.sink, window: cfg.window }, keep: (kv, len, p) => kv < p.sink || kv >= len - p.window });

/** Only the most recent `w` positions. */
export const window = (w: number) => kvPolicy({ name: 'window', params: { window: w }, keep: (kv, len, p) => kv >= len - p.window });

/** Accept a drafted token iff it is the target's argmax; the correction is the argmax. */
export const greedy = verifier({ name: 'greedy', mode: 'greedy' });

/**
 * Sample-and-match: at each position the target's token is its own sample (the request's temperature,
 * top-k, top-p and min-p, Gumbel-max with the noise of (seed, position)), the draft samples with the same
 * noise, and drafted tokens are accepted while they equal the target's. Exact: a seeded speculative run
 * emits the seeded autoregressive run's tokens. At temperature 0 it is greedy.
 */
export const sampleAndMatch = verifier({ name: 'sample_and_match', mode: 'match' });

/**
 * Speculative (rejection) sampling: accept with probability min(1, p/q) (u is uniform in (0, 1), so
 * u * q < p; a token with p = q = 0 is never accepted), resample from max(0, p - q) normalised. Exact in
 * distribution: each emitted token is distributed as the target's own sample (docs/DSL.md, "Verifiers").
 */
export const rejection = verifier({
  name: 'rejection',
  mode: 'sample',
  accept: (p, q, u) => u * q < p,
  residual: (p, q) => Math.max(0, p - q),
});

/**
 * Typical acceptance (Medusa): accept a drafted token the target finds typical enough, p > min(eps, delta *
 * exp(-h)) with h the entropy of the target's distribution at the position (after temperature and
 * filters): a flat distribution accepts more. After a rejection the next token is the target's own sample
 * there. LOSSY: the emitted tokens are not distributed as the target's samples (drafted tokens the rule
 * accepts are kept however unlikely the target makes them, down to eps); greedy requests stay exact.
 */
export const typical = (cfg: { eps: number; delta: number } = { eps: 0.09, delta: 0.3 }) =>
  verifier({
    name: 'typical',
    mode: 'sample',
    lossy: true,
    accept: (p, q, u, h) => p > Math.min(cfg.eps, cfg.delta * Math.exp(-h)),
    residual: (p) => p,
  });
