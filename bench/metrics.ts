// What `magicdec bench` reports for one grid point, from a case's raw measurements (bench/case.ts), the
// module plan and the run's triad: throughput, the step-time ratios of the cost model (docs/ARCHITECTURE.md,
// "The cost model"), the speedup it predicts, bytes per step (bench/traffic.ts) over measured times as a
// fraction of the triad, per step and per kernel class, and the per-kernel time breakdown.
import type { ModulePlan } from '../codegen/plan.ts';
import type { DecodeSummary, SegmentStats } from '../lib/decode.ts';
import type { KernelTimes } from '../runtime/node/index.ts';
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
  /** tokensPerRound / (meanGamma * draftOverAr + verifyOverAr). */
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

/** Tokens per round at per-token acceptance a, over the rounds' gammas: (1 - a^(g+1)) / (1 - a). */
export function expectedTokensPerRound(a: number, gammaRounds: Readonly<Record<string, number>>): number {
  const entries = Object.entries(gammaRounds).filter(([, n]) => n > 0);
  const rounds = entries.reduce((s, [, n]) => s + n, 0);
  if (rounds === 0) return 0;
  return entries.reduce((s, [g, n]) => s + n * ((1 - a ** (Number(g) + 1)) / (1 - a)), 0) / rounds;
}

function arMetrics(plan: ModulePlan, context: number, batch: number, ar: DecodeSummary, arTokens: number, triad: number): ArMetrics {
  // AR steps decode positions context .. context + arTokens - 2 for every sequence.
  const bytes = meanStepBytes(plan, 'target', { firstPos: context, positions: Math.max(1, arTokens - 1), rowsPerStep: batch });
  return { tokensPerS: ar.tokensPerS, stepS: ar.decodeS / ar.steps, steps: ar.steps, traffic: traffic(bytes, ar.steps, ar.decodeS, ar.kernelS.ar, triad) };
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
    acceptance: s.drafted ? s.accepted / s.drafted : 0,
    tokensPerRound,
    rounds: s.rounds,
    meanGamma: s.meanGamma,
    gammaRounds: s.gammaRounds,
    draftStepS,
    verifyStepS,
    draftOverAr,
    verifyOverAr,
    predictedSpeedup: tokensPerRound / cost,
    predictedSpeedupAt08: expectedTokensPerRound(0.8, s.gammaRounds) / cost,
    speedup: tokensPerS / ar.tokensPerS,
    draft: traffic(draftBytes, draftSteps, s.draftS, s.kernelS.draft, triad),
    verify: traffic(verifyBytes, s.rounds, s.verifyS, s.kernelS.verify, triad),
  };
}

/** Every (budget, gamma) point of one batch of a case. */
export function batchMetrics(plan: ModulePlan, model: { name: string; synthetic: boolean }, context: number, b: BatchResult, sink: number, triad: number): PointMetrics[] {
  const ar = arMetrics(plan, context, b.batch, b.ar, b.arTokens, triad);
  return b.segments.map((s) => ({
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
  }));
}
