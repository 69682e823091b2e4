// The statistical test of a sampled decode: are the emitted tokens distributed as the target model's own
// samples? Each token t is tested against the distribution p of the logits it was emitted with (the
// target's row at its position, after the request's temperature and filters: model/sampling.ts). Its
// randomized probability integral transform U = P(< t) + V * p(t), V uniform from the test's own generator,
// is uniform on (0, 1) when t ~ p, and successive tokens' U are independent, so pooled they fall evenly into
// PIT_BINS bins. The chi-square statistic with PIT_BINS - 1 = 19 degrees of freedom exceeds PIT_CRITICAL
// with probability PIT_FALSE_ALARM for a correct sampler. A second statistic catches a sampler that favours
// likely tokens (accepting the draft's too often): the z-score of sum p(t) against its expectation sum p^2.
import { rowDistribution, type SamplingParams } from '../model/sampling.ts';
import { Prng } from '../model/prng.ts';

export const PIT_BINS = 20;
/** chi-square(19) exceeds 64 with probability 8.9e-7. */
export const PIT_CRITICAL = 64;
/** A standard normal exceeds 5 in absolute value with probability 5.7e-7. */
export const Z_CRITICAL = 5;
/** The chance that a correct sampler fails fitsTarget (either statistic): below 1.5e-6. */
export const PIT_FALSE_ALARM = 1.5e-6;

export interface Emitted {
  readonly tokens: readonly number[];
  /** The target's logits each token was emitted with. */
  readonly logits: readonly ArrayLike<number>[];
}

export interface Fit {
  readonly chi2: number;
  readonly z: number;
  readonly n: number;
  /** A token the target gives probability 0, if any (never emitted by a correct sampler). */
  readonly impossible?: { readonly request: number; readonly index: number; readonly token: number };
}

/** The two statistics of the tokens of `gens`, each against its row's distribution under `sampling`. */
export function fitTarget(gens: readonly Emitted[], sampling: SamplingParams, seed: number): Fit {
  const rng = new Prng(seed, 0x5747);
  const bins = new Array<number>(PIT_BINS).fill(0);
  let n = 0;
  let excess = 0;
  let variance = 0;
  let impossible: Fit['impossible'];
  gens.forEach((g, request) =>
    g.tokens.forEach((t, index) => {
      const dist = rowDistribution(g.logits[index], sampling);
      if (!(dist[t] > 0)) {
        impossible ??= { request, index, token: t };
        return;
      }
      let below = 0;
      for (let i = 0; i < t; i++) below += dist[i];
      bins[Math.floor(Math.min(below + rng.uniform() * dist[t], 1 - 1e-12) * PIT_BINS)]++;
      let m2 = 0;
      let m3 = 0;
      for (const x of dist) {
        m2 += x * x;
        m3 += x * x * x;
      }
      excess += dist[t] - m2;
      variance += m3 - m2 * m2;
      n++;
    }),
  );
  const e = n / PIT_BINS;
  const chi2 = n ? bins.reduce((s, o) => s + (o - e) ** 2 / e, 0) : 0;
  return { chi2, z: variance > 0 ? excess / Math.sqrt(variance) : 0, n, ...(impossible ? { impossible } : {}) };
}

/** Why `f` rejects the hypothesis that the tokens are the target's samples, or undefined if it does not. */
export function fitProblem(f: Fit): string | undefined {
  if (f.impossible) return `token ${f.impossible.token} (request ${f.impossible.request}, index ${f.impossible.index}) has probability 0 under the target`;
  if (f.chi2 >= PIT_CRITICAL) return `PIT chi-square ${f.chi2.toFixed(1)} >= ${PIT_CRITICAL} over ${f.n} tokens (19 degrees of freedom)`;
  if (Math.abs(f.z) >= Z_CRITICAL) return `drawn-probability z-score ${f.z.toFixed(2)} beyond ±${Z_CRITICAL} over ${f.n} tokens`;
  return undefined;
}
