// The benchmark's byte counts (bench/traffic.ts): a hand-computed case on `tiny`, the weight count against
// the random-model writer's own tensor list, and the KV positions read against a brute-force count of the
// visibility predicate.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  bandwidth,
  embeddingRowBytes,
  fixedWeightBytes,
  kvBytesPerPosition,
  meanStepBytes,
  positionsRead,
  stepBytes,
  weightBytesPerStep,
} from '../../bench/traffic.ts';
import { evaluate } from '../../codegen/interp.ts';
import { planModule, type ModulePlan } from '../../codegen/plan.ts';
import { models } from '../../dsl/models.ts';
import { resolveRandomConfig, weightSpecs } from '../../model/random.ts';
import { attentions, makeDeployment, policies } from '../support/deployments.ts';

// tiny: hidden 128, intermediate 384, 2 layers, 4 heads, 2 KV heads of 32, vocab 512, untied; bf16; pages of 16.
const plan = planModule(makeDeployment({ dtype: 'bf16', pageSize: 16, draft: { attention: attentions.causal(), kv: policies.streaming(4, 60) } }));

function bruteForce(p: ModulePlan, pass: 'target' | 'draft', qpos: number, params: Record<string, number>): number {
  const env = Object.fromEntries(p.passes[pass].params.map((d) => [d.key, params[d.key] ?? d.value]));
  let n = 0;
  for (let kv = 0; kv <= qpos; kv++) if (evaluate(p.passes[pass].visible, { vars: { q: qpos, kv }, params: env })) n++;
  return n;
}

describe('bench traffic: bytes a decode step reads', () => {
  it('counts tiny by hand', () => {
    // per layer: 2 norms 2*128, q 128*128, k and v 2*64*128, o 128*128, gate/up/down 3*384*128 = 196864
    // all layers + final norm 128 + LM head 512*128 = 459392 elements of 2 bytes
    expect(fixedWeightBytes(plan)).toBe(918784);
    expect(embeddingRowBytes(plan)).toBe(256);
    expect(weightBytesPerStep(plan, 8)).toBe(918784 + 8 * 256);
    // 2 layers x K and V x 2 KV heads x 32 x 2 bytes
    expect(kvBytesPerPosition(plan)).toBe(512);

    // Draft (sink 4 + window 60) at q = 200: kv < 4 or kv >= 201 - 60 = 141, so 4 + 60; at q = 30 all 31.
    expect(positionsRead(plan, 'draft', 200)).toBe(64);
    expect(positionsRead(plan, 'draft', 30)).toBe(31);
    expect(positionsRead(plan, 'target', 200)).toBe(201);
    expect(stepBytes(plan, 'draft', [200, 30])).toEqual({ weights: 918784 + 512, kv: 95 * 512, total: 918784 + 512 + 95 * 512 });
    expect(stepBytes(plan, 'target', [200, 30]).kv).toBe((201 + 31) * 512);
    // A runtime param override: window 100 keeps 4 + 100.
    expect(positionsRead(plan, 'draft', 200, { kv_window: 100 })).toBe(104);

    // Mean over q = 100..103 for 8 rows: (101 + 102 + 103 + 104) / 4 = 102.5 positions per row.
    const mean = meanStepBytes(plan, 'target', { firstPos: 100, positions: 4, rowsPerStep: 8 });
    expect(mean).toEqual({ weights: 918784 + 8 * 256, kv: 8 * 102.5 * 512, total: 918784 + 8 * 256 + 8 * 102.5 * 512 });
    // Past the draft budget the draft's count is flat.
    expect(meanStepBytes(plan, 'draft', { firstPos: 1000, positions: 50, rowsPerStep: 2.5 }).kv).toBe(2.5 * 64 * 512);

    const bw = bandwidth(mean, 0.001, 10);
    expect(bw.gbPerS).toBeCloseTo(mean.total / 0.001 / 1e9, 12);
    expect(bw.ofTriad).toBeCloseTo(bw.gbPerS / 10, 12);
  });

  it('counts every weight tensor once: fixed + a whole embedding table = the checkpoint (untied, tied, qkv bias, fp32)', () => {
    const cases = [
      { model: models.tiny, dtype: 'bf16' as const },
      { model: models.small, dtype: 'bf16' as const },
      { model: resolveRandomConfig('tiny', { architecture: 'qwen2', name: 'q' }), dtype: 'fp32' as const },
    ];
    for (const c of cases) {
      const p = planModule(makeDeployment({ model: c.model, dtype: c.dtype }));
      const elements = weightSpecs(c.model).reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1), 0);
      const bytes = c.dtype === 'fp32' ? 4 : 2;
      // Tied: the embedding is the LM head, counted in the fixed part, and rows add nothing.
      const embedTable = c.model.tieWordEmbeddings ? 0 : c.model.vocabSize * embeddingRowBytes(p);
      expect(fixedWeightBytes(p) + embedTable, c.model.name).toBe(elements * bytes);
    }
  });

  it('reads exactly the visible positions, like a brute-force count of the predicate', () => {
    const passes = [
      { attention: attentions.causal(), kv: policies.streaming(4, 60) },
      { attention: attentions.slidingWindow(50), kv: policies.full() },
      { attention: attentions.prefixLM(37), kv: policies.window(20) },
    ];
    for (const draft of passes) {
      const p = planModule(makeDeployment({ pageSize: 16, draft }));
      const keys = p.passes.draft.params.map((d) => d.key);
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 400 }), fc.array(fc.integer({ min: 0, max: 120 }), { minLength: keys.length, maxLength: keys.length }), (q, values) => {
          const params = Object.fromEntries(keys.map((k, i) => [k, values[i]]));
          expect(positionsRead(p, 'draft', q, params)).toBe(bruteForce(p, 'draft', q, params));
        }),
        { numRuns: 60, seed: 11 },
      );
    }
  });

  it('refuses bad input with a message naming it', () => {
    expect(() => positionsRead(plan, 'draft', 10, { kv_sinks: 3 })).toThrow("the draft pass has no param 'kv_sinks' (it has: kv_sink, kv_window)");
    expect(() => positionsRead(plan, 'target', -1)).toThrow('query position must be a whole number >= 0, got -1');
    expect(() => meanStepBytes(plan, 'target', { firstPos: 0, positions: 0, rowsPerStep: 1 })).toThrow('positions must be a whole number >= 1');
    expect(() => weightBytesPerStep(plan, -2)).toThrow('rows must be >= 0, got -2');
  });
});
