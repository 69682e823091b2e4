// What `magicdec bench` reports for one grid point, from a case's raw measurements (bench/case.ts), the
// module plan and the run's triad: throughput, the step-time ratios of the cost model (docs/ARCHITECTURE.md,
// "The cost model"), the speedup it predicts, bytes per step (bench/traffic.ts) over measured times as a
// fraction of the triad, per step and per kernel class, and the per-kernel time breakdown.
import type { ModulePlan } from '../codegen/plan.ts';
import type { SegmentStats } from '../lib/decode.ts';
import { KERNEL_CLASSES, type KernelTimes } from '../runtime/node/index.ts';
import type { BatchResult } from './case.ts';
import { bandwidth, meanStepBytes, weightBytesPerStep, type Bandwidth, type StepBytes } from './traffic.ts';

/** Shares of a step's time: the four kernel classes, and the host's remainder (scheduling, Node, copies). */
export interface TimeShares {
  readonly attention: number;
  readonly gemm: number;
  readonly normRope: number;
  readonly other: number;
  readonly host: number;
}

/** A step kind's traffic: the whole step, and the two kernel classes that carry the bytes. */
export interface StepTraffic {
  readonly step: Bandwidth;
  /** KV bytes over the attention kernels' time. */
  readonly attention: Bandwidth;
  /** Weight bytes over the GEMMs' time. */
  readonly gemm: Bandwidth;
  readonly time: TimeShares;
}

export interface ArMetrics {
  readonly tokensPerS: number;
  readonly stepS: number;
  readonly steps: number;
  readonly traffic: StepTraffic;
}

export interface SpecMetrics {
  readonly tokensPerS: number;
  /** Accepted over drafted tokens in this point's segment, as measured. */
  readonly acceptance: number;
  /** Tokens per round per sequence. */
  readonly tokensPerRound: number;
  readonly rounds: number;
  /** Draft steps per round (the segment's mean gamma; for 'auto', what the engine chose). */
  readonly meanGamma: number;
  readonly gammaRounds: Readonly<Record<string, number>>;
  readonly draftStepS: number;
  readonly verifyStepS: number;
  readonly draftOverAr: number;
  readonly verifyOverAr: number;
  /** The per-token acceptance that gives the measured acceptance under the cost model (perTokenAcceptance). */
  readonly perTokenAcceptance: number;
  /**
   * The cost model's speedup from the measured ratios and that per-token acceptance:
   * expectedTokensPerRound(perTokenAcceptance) / (meanGamma * draftOverAr + verifyOverAr). (With the measured
   * tokens per round instead it would be the measured speedup exactly, by construction.)
   */
  readonly predictedSpeedup: number;
  /** The same with the tokens per round acceptance 0.8 gives at this point's gammas. */
  readonly predictedSpeedupAt08: number;
  /** Measured: tokensPerS over the AR tokens/s. */
  readonly speedup: number;
  readonly draft: StepTraffic;
  readonly verify: StepTraffic;
}

export interface PointMetrics {
  readonly model: string;
  readonly synthetic: boolean;
  readonly context: number;
  readonly batch: number;
  readonly gamma: number | 'auto';
  /** Draft budget: sink + window positions. */
  readonly budget: number;
  /** First query position of the point's segment (its AR steps span the whole run). */
  readonly firstPosition: number;
  readonly ar: ArMetrics;
  readonly spec: SpecMetrics;
  /** Speculative tokens equal the autoregressive ones for every sequence of the batch. */
  readonly identical: boolean;
}

const sum = (t: KernelTimes) => t.attention + t.gemm + t.normRope + t.other;

function shares(t: KernelTimes, stepTotalS: number): TimeShares {
  const f = (x: number) => (stepTotalS > 0 ? x / stepTotalS : 0);
  return { attention: f(t.attention), gemm: f(t.gemm), normRope: f(t.normRope), other: f(t.other), host: f(stepTotalS - sum(t)) };
}

function traffic(bytes: StepBytes, steps: number, totalS: number, kernels: KernelTimes, triad: number): StepTraffic {
  const per = (s: number) => (steps > 0 ? s / steps : 0);
  return {
    step: bandwidth(bytes, per(totalS), triad),
    attention: bandwidth({ weights: 0, kv: bytes.kv, total: bytes.kv }, per(kernels.attention), triad),
    gemm: bandwidth({ weights: bytes.weights, kv: 0, total: bytes.weights }, per(kernels.gemm), triad),
    time: shares(kernels, totalS),
  };
}

/** sum_{k=from..g} a^k */
function powers(a: number, from: number, g: number): number {
  let s = 0;
  for (let k = from; k <= g; k++) s += a ** k;
  return s;
}

function rounds(gammaRounds: Readonly<Record<string, number>>): [number, number][] {
  return Object.entries(gammaRounds)
    .map(([g, n]) => [Number(g), n] as [number, number])
    .filter(([, n]) => n > 0);
}

/**
 * Tokens per round per sequence when each drafted token is accepted with probability a independently
 * (the cost model's assumption), over the rounds' gammas: (1 - a^(g+1)) / (1 - a) = sum_{k=0..g} a^k.
 */
export function expectedTokensPerRound(a: number, gammaRounds: Readonly<Record<string, number>>): number {
  const r = rounds(gammaRounds);
  const n = r.reduce((s, [, c]) => s + c, 0);
  return n ? r.reduce((s, [g, c]) => s + c * powers(a, 0, g), 0) / n : 0;
}

/**
 * The per-token acceptance a under which the cost model expects the measured accepted / drafted ratio:
 * drafted tokens past the first rejection are never accepted, so accepted / drafted = sum_g n_g
 * sum_{k=1..g} a^k / sum_g n_g g, which grows with a; solved by bisection.
 */
export function perTokenAcceptance(acceptance: number, gammaRounds: Readonly<Record<string, number>>): number {
  const r = rounds(gammaRounds);
  const drafted = r.reduce((s, [g, c]) => s + g * c, 0);
  if (drafted === 0) return 0;
  const ratio = (a: number) => r.reduce((s, [g, c]) => s + c * powers(a, 1, g), 0) / drafted;
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (ratio(mid) < acceptance) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/**
 * A point's autoregressive baseline: the AR segments just before and after it on the same engine (bench/case.ts),
 * together. Each AR step decodes one position per sequence, from its segment's first row on.
 */
function arMetrics(plan: ModulePlan, context: number, batch: number, around: readonly SegmentStats[], triad: number): ArMetrics {
  const steps = around.reduce((n, s) => n + s.arSteps, 0);
  const seconds = around.reduce((t, s) => t + s.arS, 0);
  const tokens = around.reduce((n, s) => n + s.tokens, 0);
  const kernels = Object.fromEntries(KERNEL_CLASSES.map((k) => [k, around.reduce((t, s) => t + s.kernelS.ar[k], 0)])) as unknown as KernelTimes;
  // Step bytes averaged over both segments' steps (their rows sit at different positions).
  const spans = around.map((s) => meanStepBytes(plan, 'target', { firstPos: context + Math.round(s.startTokensPerSeq) - 1, positions: Math.max(1, s.arSteps), rowsPerStep: batch }));
  const mean = (f: (b: StepBytes) => number) => (steps > 0 ? around.reduce((x, s, i) => x + f(spans[i]) * s.arSteps, 0) / steps : 0);
  const bytes = { weights: mean((b) => b.weights), kv: mean((b) => b.kv), total: mean((b) => b.total) };
  return { tokensPerS: seconds > 0 ? tokens / seconds : 0, stepS: steps > 0 ? seconds / steps : 0, steps, traffic: traffic(bytes, steps, seconds, kernels, triad) };
}

function specMetrics(plan: ModulePlan, context: number, batch: number, s: SegmentStats & { budget: number }, sink: number, ar: ArMetrics, triad: number): SpecMetrics {
  const draftSteps = s.rounds * s.meanGamma;
  const draftStepS = s.draftS / draftSteps;
  const verifyStepS = s.verifyS / s.rounds;
  const tokensPerRound = s.tokens / (s.rounds * batch);
  const draftOverAr = draftStepS / ar.stepS;
  const verifyOverAr = verifyStepS / ar.stepS;
  const cost = s.meanGamma * draftOverAr + verifyOverAr;
  const tokensPerS = s.tokens / (s.draftS + s.verifyS);
  const acceptance = s.drafted ? s.accepted / s.drafted : 0;
  const a = perTokenAcceptance(acceptance, s.gammaRounds);
  // The segment's draft rows sit at positions firstPos .. firstPos + span - 1 of each sequence; a
  // verification pass reads each sequence's cache once (its rows share every tile load) up to its last row.
  const firstPos = context + Math.round(s.startTokensPerSeq) - 1;
  const span = { firstPos, positions: Math.max(1, Math.round(s.tokens / batch)), rowsPerStep: batch };
  const draftBytes = meanStepBytes(plan, 'draft', span, { kv_window: s.budget - sink });
  const verifyKv = meanStepBytes(plan, 'target', { ...span, firstPos: firstPos + Math.round(s.meanGamma) }).kv;
  const verifyWeights = weightBytesPerStep(plan, batch * (s.meanGamma + 1));
  const verifyBytes = { weights: verifyWeights, kv: verifyKv, total: verifyWeights + verifyKv };
  return {
    tokensPerS,
    acceptance,
    tokensPerRound,
    rounds: s.rounds,
    meanGamma: s.meanGamma,
    gammaRounds: s.gammaRounds,
    draftStepS,
    verifyStepS,
    draftOverAr,
    verifyOverAr,
    perTokenAcceptance: a,
    predictedSpeedup: expectedTokensPerRound(a, s.gammaRounds) / cost,
    predictedSpeedupAt08: expectedTokensPerRound(0.8, s.gammaRounds) / cost,
    speedup: tokensPerS / ar.tokensPerS,
    draft: traffic(draftBytes, draftSteps, s.draftS, s.kernelS.draft, triad),
    verify: traffic(verifyBytes, s.rounds, s.verifyS, s.kernelS.verify, triad),
  };
}

/** Every (budget, gamma) point of one batch of a case. */
export function batchMetrics(plan: ModulePlan, model: { name: string; synthetic: boolean }, context: number, b: BatchResult, sink: number, triad: number): PointMetrics[] {
  return b.segments.map((s, k) => {
    if (s.gamma === 'off') throw new Error(`internal: point ${k} is an autoregressive segment`);
    const ar = arMetrics(plan, context, b.batch, [b.arSegments[k], b.arSegments[k + 1]], triad);
    return {
      model: model.name,
      synthetic: model.synthetic,
      context,
      batch: b.batch,
      gamma: s.gamma,
      budget: s.budget,
      firstPosition: context + Math.round(s.startTokensPerSeq) - 1,
      ar,
      spec: specMetrics(plan, context, b.batch, s, sink, ar, triad),
      identical: b.identical,
    };
  });
}
