// md_verify_sample of the CUDA backend under the SIMT emulator (test/harness/emu/module.ts: the kernel body
// nvcc compiles, launched through MD_LAUNCH, built as host C++ with ASan and UBSan), for the typical
// verifier (LOSSY; its accept reads h, so the kernel runs its entropy reduction: strided -p log p per
// thread, then the fixed tree) and for the standard rule, on vocab 97 (the last thread stride and Philox
// block partial). Against model/sampling.ts's verifySample with each rule written in TypeScript: on known
// distributions (flat, peaked, one-hot under top-k 1, q = 0) the results are equal; on random rows, where
// the CUDA sums run in another order than the reference's (docs/ABI.md) so a p or h within an ulp of a
// threshold, or a near-tie of two Gumbel scores, may differ, almost all are (a fixed seed, so the count is
// the same on every run).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { entropy, rowDistribution, sampleRow, verifySample, type VerifierRule } from '../../model/sampling.ts';
import { mulberry32 } from '../harness/kernels/attention-case.ts';
import { i32 } from '../harness/kernels/driver.ts';
import { logitsFor, T1, verifySampleArgs, type Seq } from '../harness/kernels/verify-sample-case.ts';
import { onGpu, useEmulatedModules, type EmulatedModule } from '../harness/emu/module.ts';
import { makeDeployment, modelConfig, verifiers } from '../support/deployments.ts';

const base = makeDeployment({ model: modelConfig({ numHeads: 1, numKvHeads: 1, headDim: 16, vocabSize: 97, name: 'emu-verify' }), batch: [1], gamma: 3, maxSeq: 64, pageSize: 8, dtype: 'fp32' });
const modules = useEmulatedModules({
  typical: onGpu({ ...base, verify: verifiers.typical() }),
  standard: onGpu({ ...base, verify: verifiers.rejection() }),
});

const f = Math.fround;
const RULES: Record<'typical' | 'standard', VerifierRule> = {
  typical: { accept: (p, _q, _u, h) => f(p) > Math.min(f(0.09), f(f(0.3) * f(Math.exp(-f(h))))), residual: (p) => p },
  standard: { accept: (p, q, u) => f(f(u) * f(q)) < f(p), residual: (p, q) => Math.max(0, f(f(p) - f(q))) },
};

async function verify(m: EmulatedModule, seqs: readonly Seq[], gamma: number): Promise<{ accepted: number; next: number }[]> {
  const res = await m.driver.call('md_verify_sample', verifySampleArgs(m.plan.dims.vocab, seqs, gamma));
  expect(res.status).toBe(0);
  const a = i32(res.out.accepted);
  const n = i32(res.out.next);
  return seqs.map((_, b) => ({ accepted: a[b], next: n[b] }));
}

describe('emulated CUDA md_verify_sample', () => {
  it('typical on known p: flat accepts, peaked rejects below eps, q = 0 does not matter, top-k 1 has entropy 0', async () => {
    const m = modules.get('typical')!;
    const V = m.plan.dims.vocab;
    const flat = new Float32Array(V).fill(0);
    const peaked = logitsFor(V, [5, 6, 70], [0.9, 0.08, 0.02]);
    expect(Math.min(0.09, 0.3 * Math.exp(-entropy(rowDistribution(peaked, T1))))).toBe(0.09);
    const noQ = logitsFor(V, [5], [1]);
    const seqs: Seq[] = [
      { target: [flat, flat], draft: [noQ], tokens: [96], params: T1, seed: 1n, pos: 0 },
      { target: [peaked, flat], draft: [noQ], tokens: [5], params: T1, seed: 1n, pos: 0 },
      { target: [peaked, flat], draft: [flat], tokens: [6], params: T1, seed: 1n, pos: 0 },
      { target: [peaked, flat], draft: [noQ], tokens: [70], params: T1, seed: 1n, pos: 0 },
      { target: [peaked, flat], draft: [flat], tokens: [40], params: T1, seed: 1n, pos: 0 },
      { target: [flat, flat], draft: [flat], tokens: [0], params: { ...T1, topK: 1 }, seed: 1n, pos: 0 },
      { target: [flat, flat], draft: [flat], tokens: [1], params: { ...T1, topK: 1 }, seed: 1n, pos: 0 },
    ];
    const got = await verify(m, seqs, 1);
    expect(got.map((g) => g.accepted)).toEqual([1, 1, 0, 0, 0, 1, 0]);
    expect(got).toEqual(seqs.map((s) => verifySample(s.target, s.draft, s.tokens, s.params, s.seed, s.pos, RULES.typical)));
    expect(got.every((g) => g.next >= 0 && g.next < V)).toBe(true);
  }, 120_000);

  it.each(['typical', 'standard'] as const)('%s on random rows agrees with the reference (all but near-threshold cases)', async (name) => {
    const m = modules.get(name)!;
    const V = m.plan.dims.vocab;
    const gamma = m.plan.gamma;
    const rnd = mulberry32(name === 'typical' ? 17 : 18);
    const paramsArb = fc.record({
      temperature: fc.constantFrom(0, 0.3, 0.7, 1, 1.5),
      topK: fc.constantFrom(0, 1, 5, 50),
      topP: fc.constantFrom(1, 0.9, 0.5),
      minP: fc.constantFrom(0, 0.05),
    });
    const params = fc.sample(paramsArb, { numRuns: 48, seed: 5 });
    const seqs: Seq[] = params.map((p, i) => {
      const scale = [1, 3, 8][i % 3];
      const target = Array.from({ length: gamma + 1 }, () => Float32Array.from({ length: V }, () => (rnd() * 2 - 1) * scale));
      const draft = target.slice(0, gamma).map((t) => Float32Array.from(t, (x) => x + (rnd() * 2 - 1) * [0.3, 1, 4][i % 3]));
      const seed = BigInt(1 + i) * 0x9e3779b97f4a7c15n % (1n << 64n);
      const tokens = draft.map((d, j) => sampleRow(d, p, seed, 100 + j));
      return { target, draft, tokens, params: p, seed, pos: 100 };
    });
    const got = await verify(m, seqs, gamma);
    const want = seqs.map((s) => verifySample(s.target, s.draft, s.tokens, s.params, s.seed, s.pos, RULES[name]));
    const same = got.filter((g, b) => g.accepted === want[b].accepted && g.next === want[b].next).length;
    expect(same, JSON.stringify({ got, want })).toBeGreaterThanOrEqual(seqs.length - 1);
    expect(got.every((g) => g.accepted >= 0 && g.accepted <= gamma && g.next >= 0 && g.next < V)).toBe(true);
    expect(new Set(want.map((w) => w.accepted)).size).toBeGreaterThan(1);
  }, 120_000);
});
