// Generated paged split-KV attention vs the float64 reference (naive softmax over the positions the IR
// interpreter calls visible), for both passes of every test module. Every input cache position that no
// row may see is NaN, so reading a skipped tile or a masked position would show; every output starts as
// NaN, so an unwritten element would show. Row invariance is checked bitwise: each row computed alone, in
// the smallest bucket instance on one thread, equals the same row inside the batch (other sequences'
// rows, gamma + 1 verification rows) in the largest bucket instance on two threads; for a causal pass the
// row alone also ends its sequence at itself (an AR step's partial last tile), where in the batch later
// positions follow it (a verification row's).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isCausal } from '../../codegen/passes/causal.ts';
import type { PassPlan } from '../../codegen/plan.ts';
import { attentionError, attentionRef } from '../reference/kernels.ts';
import { attentionDrawArb, buildAttention, withValueBits, type AttentionDraw } from '../harness/kernels/attention-case.ts';
import { KERNEL_DEPLOYMENTS, PAGED_BF16_DEPLOYMENTS, type KernelDeploymentName } from '../harness/kernels/deployments.ts';
import { f32, type Arg } from '../harness/kernels/driver.ts';
import { useModules, type ModuleUnderTest } from '../harness/kernels/module.ts';

/**
 * Besides the shared modules: bf16 GQA at the benchmark's shapes (head_dim 64, pages of 64: several
 * 16-position groups per tile, a sink and a window that end inside them), where AMX's P.V takes each
 * group's V straight from the cache or through a masked copy; and bf16 MHA (one query head per KV head:
 * an AR step's tile update has a single pair, verification's one per row) with a head tail (48 = 32 + 16).
 */
const DEPLOYMENTS = {
  ...KERNEL_DEPLOYMENTS,
  ...PAGED_BF16_DEPLOYMENTS,
};
const NAMES = Object.keys(DEPLOYMENTS) as (KernelDeploymentName | 'pagedBf16' | 'mhaBf16')[];
const modules = useModules(DEPLOYMENTS);

/**
 * The reference reads the stored (decoded) K/V values and models bf16's rounding of q for the dot and of P
 * for P.V (test/reference/kernels.ts), so what is left is f32 arithmetic, whatever the storage (~3e-7 measured).
 */
const ATTENTION_TOLERANCE = 1e-5;

/** One call of the pass's kernel on `rows` rows: the largest bucket on two threads, or `alone`, the smallest on one. */
async function attend(m: ModuleUnderTest, pass: PassPlan, args: Record<string, Arg>, rows: number, alone = false) {
  const bucket = alone ? Math.min(...m.plan.buckets) : Math.max(...m.plan.buckets);
  const ws = await m.driver.workspaceFloats(rows);
  const res = await m.driver.call(`md_attn_${pass.pass}_b${bucket}`, { ...args, out: { out: rows * m.plan.dims.qDim * 4 }, workspace: { out: ws * 4 } }, alone ? 1 : 2);
  return { status: res.status, out: f32(res.out.out) };
}

async function runAttention(m: ModuleUnderTest, pass: PassPlan, d: AttentionDraw) {
  const c = buildAttention(m.plan, pass, d);
  return { c, ...(await attend(m, pass, c.args, c.rows)) };
}

describe.each(NAMES)('attention, module %s', (name) => {
  for (const which of ['target', 'draft'] as const) {
    it(`${which} pass matches the float64 reference and is row-invariant`, async () => {
      const m = modules.get(name)!;
      const pass = m.plan.passes[which];
      await fc.assert(
        fc.asyncProperty(attentionDrawArb(m.plan, Math.max(...m.plan.buckets), Math.min(m.plan.maxSeq, 3 * m.plan.chunk + 5)), async (d) => {
          const { c, status, out } = await runAttention(m, pass, d);
          expect(status).toBe(0);
          expect(out.every(Number.isFinite), 'every output written and finite').toBe(true);
          const want = attentionRef(m.plan, pass, c.ref);
          expect(attentionError(out, want)).toBeLessThan(ATTENTION_TOLERANCE);
          // Row invariance, bitwise: each row alone, smallest bucket, one thread.
          const D = m.plan.dims.qDim;
          const ownLength = isCausal(pass.visible);
          for (let r = 0; r < c.rows; r++) {
            const alone = await attend(m, pass, c.rowArgs(r, { ownLength }), 1, true);
            expect(alone.status).toBe(0);
            expect(new Uint32Array(alone.out.buffer), `row ${r} alone${ownLength ? ' (its own length)' : ''} vs in the batch`).toEqual(
              new Uint32Array(out.slice(r * D, (r + 1) * D).buffer),
            );
          }
        }),
        { numRuns: 25 },
      );
    }, 300_000);
  }
});

describe('tile skipping', () => {
  it('a streaming draft over a long context reads only sink and window: the rest is NaN and the output stays exact', async () => {
    const m = modules.get('mhaF32')!;
    const pass = m.plan.passes.draft;
    let checked = 0;
    await fc.assert(
      fc.asyncProperty(attentionDrawArb(m.plan, 4, m.plan.maxSeq), async (d) => {
        const long = { ...d, seqs: d.seqs.map((s) => ({ ...s, len: Math.max(s.len, m.plan.maxSeq - 20) })), paramPicks: d.paramPicks.map((p) => p * 0.3) };
        const { c, status, out } = await runAttention(m, pass, long);
        expect(status).toBe(0);
        expect(c.poisoned).toBeGreaterThan(0.5);
        expect(out.every(Number.isFinite)).toBe(true);
        expect(attentionError(out, attentionRef(m.plan, pass, c.ref))).toBeLessThan(ATTENTION_TOLERANCE);
        checked++;
      }),
      { numRuns: 15 },
    );
    expect(checked).toBe(15);
  }, 300_000);

  it('a row that sees nothing outputs 0', async () => {
    const m = modules.get('gqaBf16')!;
    // Sliding window 0: q - kv < 0 never holds.
    const d: AttentionDraw = { seed: 7, seqs: [{ len: 50, verify: true }], paramPicks: [0, 0.5, 0, 0, 0, 0, 0, 0] };
    const { status, out } = await runAttention(m, m.plan.passes.draft, d);
    expect(status).toBe(0);
    expect(out.every((x) => Object.is(x, 0))).toBe(true);
  });
});

/** A verifying sequence of length len first (rows 0 .. gamma), then 7 decoding ones: enough work items that the verification rows share one block. */
function withDecoders(m: ModuleUnderTest, seed: number, len: number): ReturnType<typeof buildAttention> {
  const PS = m.plan.pageSize;
  const others = Array.from({ length: 7 }, (_, i) => ({ len: 2 * PS + 11 * i, verify: false }));
  return buildAttention(m.plan, m.plan.passes.target, { seed, seqs: [{ len, verify: true }, ...others], paramPicks: [0, 0, 0, 0, 0, 0, 0, 0] });
}

/** The bf16 modules whose tile updates run on AMX where the host has it (GQA and MHA). */
const AMX_MODULES = ['pagedBf16', 'mhaBf16'] as const;

describe.each(AMX_MODULES)('rows of one block that see different parts of a tile, module %s', (name) => {
  it('verification rows on both sides of a 16-position group boundary each get their own weights', async () => {
    // AMX's P.V reads every weight of a group some row of its set sees, so a row must hold zeros where it
    // sees nothing of the group (not the previous tile's weights).
    const m = modules.get(name)!;
    const pass = m.plan.passes.target;
    const { qDim } = m.plan.dims;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 0x7fffffff }), fc.integer({ min: 1, max: (3 * m.plan.pageSize) / 16 }), fc.integer({ min: 1, max: m.plan.gamma }), async (seed, k, off) => {
        const c = withDecoders(m, seed, 16 * k + off);
        const { status, out } = await attend(m, pass, c.args, c.rows);
        expect(status).toBe(0);
        expect(attentionError(out, attentionRef(m.plan, pass, c.ref))).toBeLessThan(ATTENTION_TOLERANCE);
        for (let r = 0; r <= m.plan.gamma; r++) {
          const alone = await attend(m, pass, c.rowArgs(r, { ownLength: true }), 1, true);
          expect(new Uint32Array(alone.out.buffer), `row ${r}`).toEqual(new Uint32Array(out.slice(r * qDim, (r + 1) * qDim).buffer));
        }
      }),
      { numRuns: 20 },
    );
  }, 300_000);
});

describe.each(AMX_MODULES)('non-finite values, module %s', (name) => {
  it('an infinite V that only the last verification row sees leaves the other rows as they are alone', async () => {
    // AMX's P.V gives the other rows of the block zero weight at that position, and 0 * inf would be
    // NaN: the kernel must notice and keep each row to what it sees.
    const m = modules.get(name)!;
    const pass = m.plan.passes.target;
    const { gamma } = m.plan;
    const { kvHeads, headDim: D, qDim } = m.plan.dims;
    const PS = m.plan.pageSize;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 0x7fffffff }),
        fc.integer({ min: gamma + 2, max: 3 * PS + 7 }),
        fc.integer({ min: 0, max: kvHeads - 1 }),
        fc.integer({ min: 0, max: D - 1 }),
        fc.constantFrom(0x7f80, 0xff80, 0x7fc0),
        async (seed, len, kvh, e, bits) => {
          const c = withDecoders(m, seed, len);
          const args = { ...c.args, v_cache: withValueBits(m.plan, c, len - 1, kvh, e, bits) }; // +inf, -inf or NaN
          const all = await attend(m, pass, args, c.rows);
          expect(all.status).toBe(0);
          const out = new Uint32Array(all.out.buffer);
          for (let r = 0; r < gamma; r++) {
            const alone = await attend(m, pass, { ...c.rowArgs(r, { ownLength: true }), v_cache: args.v_cache }, 1, true);
            expect(new Uint32Array(alone.out.buffer), `row ${r}`).toEqual(out.slice(r * qDim, (r + 1) * qDim));
            expect(alone.out.every(Number.isFinite)).toBe(true);
          }
          const last = all.out.slice(gamma * qDim, (gamma + 1) * qDim);
          expect(last.some((x) => !Number.isFinite(x)), 'the row that sees it').toBe(true);
        },
      ),
      { numRuns: 20 },
    );
  }, 300_000);
});

describe('attention argument checks', () => {
  it('rejects too many rows, a negative length and a missing page without touching the output', async () => {
    const m = modules.get('mhaF32')!;
    const d: AttentionDraw = { seed: 3, seqs: [{ len: 40, verify: true }], paramPicks: [0.5, 0.5, 0, 0, 0, 0, 0, 0] };
    const c = buildAttention(m.plan, m.plan.passes.target, d);
    const call = (over: Record<string, unknown>, symbol = 'md_attn_target_b1') =>
      m.driver.call(symbol, { ...c.args, out: { out: c.rows * m.plan.dims.qDim * 4 }, workspace: { out: 1 << 16 }, ...over } as never);
    expect((await call({})).status).toBe(0);
    const tooMany = await call({ rows: m.plan.gamma + 2, row_seq: new Int32Array(m.plan.gamma + 2), row_pos: new Int32Array(m.plan.gamma + 2), q: new Float32Array((m.plan.gamma + 2) * m.plan.dims.qDim) });
    expect(tooMany.status).toBe(1);
    const badLen = await call({ seq_len: Int32Array.from(c.ref.seqLen as Int32Array, () => -1) });
    expect(badLen.status).toBe(1);
    expect(f32(badLen.out.out).every(Number.isNaN)).toBe(true);
    const holes = Int32Array.from(c.ref.pageTable as Int32Array, (p) => p);
    holes[holes.findIndex((p) => p >= 0)] = -1;
    expect((await call({ page_table: holes })).status).toBe(1);
    expect((await call({ page_table: null })).status).toBe(1);
  });
});
