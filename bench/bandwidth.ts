// Achieved memory bandwidth of a benchmark case's AR steps and draft steps: bench/traffic.ts's byte counts
// for the positions the case decoded, over the measured step times, as GB/s and as a fraction of the
// triad measured in the same run.
import type { ModulePlan } from '../codegen/plan.ts';
import type { CaseResult, SpecResult } from './case.ts';
import { bandwidth, meanStepBytes, type Bandwidth } from './traffic.ts';

export interface SpecWithBandwidth extends SpecResult {
  /** One draft step of the batch (one row per live sequence, the draft's KV policy). */
  readonly draftBandwidth: Bandwidth;
}

export interface CaseWithBandwidth extends Omit<CaseResult, 'spec'> {
  /** One AR step of the batch (one row per live sequence, the target's full KV). */
  readonly arBandwidth: Bandwidth;
  readonly spec: SpecWithBandwidth[];
}

/**
 * Every prompt of a case is `context` tokens and decodes the same positions: its first token comes from
 * prefill, then decode steps run at query positions context .. context + decodeTokens - 2. AR steps are
 * exactly those; draft steps fall on the same positions (averaged over them, see meanStepBytes).
 */
export function caseBandwidth(plan: ModulePlan, c: CaseResult, decodeTokens: number, triadGbPerS: number): CaseWithBandwidth {
  const positions = decodeTokens - 1;
  if (positions < 1) throw new Error(`caseBandwidth: a case needs at least 2 tokens per sequence to have decode steps, got ${decodeTokens}`);
  const ar = c.ar;
  const arBytes = meanStepBytes(plan, 'target', { firstPos: c.context, positions, rowsPerStep: ar.decodeTokens / ar.steps });
  const spec = c.spec.map((s): SpecWithBandwidth => {
    const draftSteps = s.summary.steps * c.gamma;
    const params: Record<string, number> = s.draftWindow === undefined ? {} : { kv_window: s.draftWindow };
    const bytes = meanStepBytes(plan, 'draft', { firstPos: c.context, positions, rowsPerStep: s.sequenceRounds / s.summary.steps }, params);
    return { ...s, draftBandwidth: bandwidth(bytes, s.summary.draftS / draftSteps, triadGbPerS) };
  });
  return { ...c, arBandwidth: bandwidth(arBytes, ar.decodeS / ar.steps, triadGbPerS), spec };
}
