// Sampled CUDA deployments under the SIMT emulator: shapes the fixed test modules do not have (odd
// intermediate sizes, so K with no vector width above 1; vocabularies from 32; pages of 8 to 32; gamma 1
// to 6; bucket sets; QKV biases; rope scalings; random masks, scores and policies), each module built
// fresh and every kernel called once against the float64 references, with a row alone and the batch in
// another bucket compared bitwise. Two regression seeds and one fresh seed per run (test/support/seeds.ts:
// MAGICDEC_SEED replays a fresh one); each sample is a new emulated build.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isCausal } from '../../codegen/passes/causal.ts';
import { attnUsesMma } from '../../codegen/backends/cuda.ts';
import { attentionError, attentionRef, argmaxRef, gemmRef, relError, rmsnormRef, ropeRef, swigluRef } from '../reference/kernels.ts';
import { attentionDrawArb, buildAttention, mulberry32 } from '../harness/kernels/attention-case.ts';
import { f32, i32 } from '../harness/kernels/driver.ts';
import { openEmulatedModule, onGpu, type EmulatedModule } from '../harness/emu/module.ts';
import { store } from '../harness/kernels/storage.ts';
import { attentionArb, causalAttentionArb, policyArb, ropeArb } from '../cuda/deployments.ts';
import { forEachSeed } from '../support/seeds.ts';
import { gemmInput } from './gemm-numerics.ts';
import { makeDeployment, modelConfig } from '../support/deployments.ts';
import type { DeploymentIR } from '../../codegen/spec.ts';

/** As dense.test.ts and attention.test.ts: fp32 arithmetic on exactly decoded storage (GEMM activations as gemm-numerics.ts). */
const TOL = 2e-6;

const smallCudaDeploymentArb: fc.Arbitrary<DeploymentIR> = fc
  .record({
    headDim: fc.constantFrom(16, 32, 64),
    kvHeads: fc.constantFrom(1, 2),
    group: fc.constantFrom(1, 2, 4),
    intermediate: fc.integer({ min: 16, max: 300 }),
    vocab: fc.integer({ min: 32, max: 1200 }),
    qkvBias: fc.boolean(),
    rope: ropeArb,
    pageSize: fc.constantFrom(8, 16, 32),
    seqPages: fc.integer({ min: 1, max: 24 }),
    gamma: fc.integer({ min: 1, max: 6 }),
    buckets: fc.uniqueArray(fc.constantFrom(1, 2, 3, 4, 8), { minLength: 1, maxLength: 3 }),
    dtype: fc.constantFrom('bf16' as const, 'fp16' as const, 'fp32' as const),
    arch: fc.constantFrom('sm_80' as const, 'sm_90' as const),
  })
  .chain((s) => {
    const heads = s.kvHeads * s.group;
    return fc.record({ s: fc.constant(s), ta: causalAttentionArb(heads), tk: policyArb, da: attentionArb(heads), dk: policyArb });
  })
  .map(({ s, ta, tk, da, dk }) => {
    const heads = s.kvHeads * s.group;
    const model = modelConfig({ headDim: s.headDim, numHeads: heads, numKvHeads: s.kvHeads, intermediateSize: s.intermediate, vocabSize: s.vocab, qkvBias: s.qkvBias, ropeScaling: s.rope });
    const dep = makeDeployment({
      model: { ...model, name: `${model.name}x${s.intermediate}x${s.vocab}` },
      target: { attention: ta, kv: tk },
      draft: { attention: da, kv: dk },
      gamma: s.gamma,
      batch: [...s.buckets].sort((a, b) => a - b),
      maxSeq: s.pageSize * s.seqPages,
      pageSize: s.pageSize,
      dtype: s.dtype,
    });
    return onGpu(dep, s.arch);
  });

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.slice().buffer));
const rand = (rnd: () => number, n: number, scale = 1) => Float32Array.from({ length: n }, () => (2 * rnd() - 1) * scale);

/** Every kernel of the module once, against the references; bitwise row invariance on a few rows. */
async function checkModule(m: EmulatedModule, seed: number): Promise<void> {
  const { plan, driver } = m;
  const { hidden: H, intermediate: I, vocab: V, heads, kvHeads, headDim: D, qDim } = plan.dims;
  const dtype = plan.deployment.dtype;
  const rnd = mulberry32(seed);
  const small = Math.min(...plan.buckets);
  const large = Math.max(...plan.buckets);
  const rows = 1 + Math.floor(rnd() * large * (plan.gamma + 1));
  const where = `${plan.name}, ${rows} rows`;
  console.log(`sampled: ${where}, buckets ${plan.buckets.join('/')}, gamma ${plan.gamma}, page ${plan.pageSize}, max ${plan.maxSeq}, ${plan.deployment.arch}`);

  for (const { role, n: N, k: K } of plan.gemms) {
    const x = rand(rnd, rows * K, 2);
    const w = store(dtype, rand(rnd, N * K, 0.5));
    const bias = rnd() < 0.5 ? store(dtype, rand(rnd, N, 1)) : undefined;
    const call = (b: number, xs: Float32Array, r: number) => driver.call(`md_gemm_${role}_b${b}`, { x: xs, w: w.bytes, bias: bias?.bytes ?? null, y: { out: r * N * 4 }, rows: r });
    const res = await call(large, x, rows);
    expect(res.status, `${where}: gemm_${role}`).toBe(0);
    const y = f32(res.out.y);
    expect(y.every(Number.isFinite), `${where}: gemm_${role} finite`).toBe(true);
    expect(relError(y, gemmRef(gemmInput(plan, x), w.values, bias?.values, rows, N, K)), `${where}: gemm_${role}`).toBeLessThan(TOL);
    const r = rows - 1;
    const alone = await call(small, x.slice(r * K), 1);
    expect(bits(f32(alone.out.y)), `${where}: gemm_${role} last row alone`).toEqual(bits(y.slice(r * N)));
  }

  const x = rand(rnd, rows * H, 2);
  const lm = store(dtype, rand(rnd, V * H, 0.5));
  const fused = await driver.call(`md_lm_head_argmax_b${large}`, { x, w: lm.bytes, logits: { out: rows * V * 4 }, tokens: { out: rows * 4 }, rows });
  const plain = await driver.call(`md_gemm_lm_head_b${large}`, { x, w: lm.bytes, bias: null, y: { out: rows * V * 4 }, rows });
  expect(fused.status, `${where}: lm_head_argmax`).toBe(0);
  expect(bits(f32(fused.out.logits)), `${where}: lm_head_argmax logits`).toEqual(bits(f32(plain.out.y)));
  expect(Array.from(i32(fused.out.tokens)), `${where}: lm_head_argmax tokens`).toEqual(Array.from(argmaxRef(f32(plain.out.y), rows, V)));

  const w = store(dtype, rand(rnd, H, 2));
  const norm = await driver.call('md_rmsnorm', { x, w: w.bytes, y: { out: rows * H * 4 }, rows });
  expect(relError(f32(norm.out.y), rmsnormRef(x, w.values, rows, H, plan.rmsEps)), `${where}: rmsnorm`).toBeLessThan(TOL);
  const gate = rand(rnd, rows * I, 6);
  const up = rand(rnd, rows * I, 2);
  const sw = await driver.call('md_swiglu', { gate, up, out: { out: rows * I * 4 }, rows });
  expect(relError(f32(sw.out.out), swigluRef(gate, up)), `${where}: swiglu`).toBeLessThan(TOL);

  const kvDim = kvHeads * D;
  const q = rand(rnd, rows * heads * D, 2);
  const k = rand(rnd, rows * kvDim, 2);
  const pos = Int32Array.from({ length: rows }, () => Math.floor(rnd() * plan.maxSeq));
  const pages = Int32Array.from({ length: rows * plan.pagesPerSeq }, (_, i) => i);
  const cache = new Uint8Array(rows * plan.pagesPerSeq * plan.pageSize * kvDim * (dtype === 'fp32' ? 4 : 2));
  const rope = await driver.call('md_rope_append', { q, k, v: k, k_cache: cache, v_cache: cache, page_table: pages, pages_per_seq: plan.pagesPerSeq, row_seq: Int32Array.from({ length: rows }, (_, r) => r), row_pos: pos, rows });
  expect(rope.status).toBe(0);
  expect(relError(f32(rope.out.q), ropeRef(q, pos, heads, D, plan.ropeInvFreq)), `${where}: rope q`).toBeLessThan(TOL);
  expect(relError(f32(rope.out.k), ropeRef(k, pos, kvHeads, D, plan.ropeInvFreq)), `${where}: rope k`).toBeLessThan(TOL);

  for (const which of ['target', 'draft'] as const) {
    const pass = plan.passes[which];
    const draw = fc.sample(attentionDrawArb(plan, large, Math.min(plan.maxSeq, 3 * plan.chunk + 5)), { seed, numRuns: 1 })[0];
    const c = buildAttention(plan, pass, draw);
    const ws = await driver.workspaceFloats(c.rows);
    const bucket = plan.buckets.find((b) => b * (plan.gamma + 1) >= c.rows);
    if (bucket === undefined) continue; // more rows than the largest bucket holds
    const res = await driver.call(`md_attn_${which}_b${bucket}`, { ...c.args, out: { out: c.rows * qDim * 4 }, workspace: { out: ws * 4 } });
    expect(res.status, `${where}: attn_${which}`).toBe(0);
    const out = f32(res.out.out);
    expect(out.every(Number.isFinite), `${where}: attn_${which} finite`).toBe(true);
    expect(attentionError(out, attentionRef(plan, pass, c.ref, attnUsesMma(plan) ? 'cuda-mma' : 'cuda')), `${where}: attn_${which}`).toBeLessThan(TOL);
    const r = c.rows - 1;
    const ws1 = await driver.workspaceFloats(1);
    const alone = await driver.call(`md_attn_${which}_b${small}`, { ...c.rowArgs(r, { ownLength: isCausal(pass.visible) }), out: { out: qDim * 4 }, workspace: { out: ws1 * 4 } });
    expect(bits(f32(alone.out.out)), `${where}: attn_${which} last row alone`).toEqual(bits(out.slice(r * qDim)));
  }
}

describe('sampled CUDA deployments under the SIMT emulator', () => {
  it('every kernel matches its reference and keeps row invariance', async () => {
    await forEachSeed(4100, { regression: 2, fresh: 1 }, async (seed, numRuns) => {
      for (const dep of fc.sample(smallCudaDeploymentArb, { seed, numRuns })) {
        const m = await openEmulatedModule(dep);
        try {
          await checkModule(m, seed);
        } finally {
          m.close();
        }
      }
    });
  }, 900_000);
});
