// The generated CUDA paged split-KV attention (md_attn_mma_kernel on tensor cores, or md_attn_chunk_kernel
// on CUDA cores, then md_attn_merge_kernel; both passes), run under the SIMT emulator, against the float64
// reference of the CPU kernels (test/reference/kernels.ts, with the kernel's numerics: 'cuda-mma' rounds q
// and P to the storage type, 'cuda' rounds nothing), on every emulated test module. As for the CPU kernels
// (test/kernels/attention.test.ts): every cached position no row may see is NaN and every output and the
// workspace start as NaN, so a skipped or masked position that reaches the arithmetic, or an unwritten
// output or chunk partial, shows. Row invariance is bitwise, and here it also spans the blocks of rows that
// share a CTA and the split of their KV chunks over CTAs (the launch sizes the chunk grid by blocks x KV
// heads): each row alone in the smallest
// bucket (its own length for a causal pass) equals the row in the batch, in every bucket that holds the
// batch, and under reversed and shuffled schedules. The draft never touches a page it skips: those pages
// are unreadable (PROT_NONE) and the call still matches, and a chunk it skips gets no partial (its
// workspace stays poison, while every chunk with a visible position has one). CUDA's documented clamping (codegen/abi.ts) where
// the CPU would refuse: a row without a sequence or with length <= 0 outputs zeros, a longer length is
// clamped to the cache.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attnShapeFor, attnUsesMma } from '../../codegen/backends/cuda.ts';
import { isCausal } from '../../codegen/passes/causal.ts';
import { planModule, type PassPlan } from '../../codegen/plan.ts';
import { attentionError, attentionRef, visibleRef } from '../reference/kernels.ts';
import { attentionDrawArb, buildAttention, mulberry32, withValueBits, type AttentionDraw, type BuiltAttention } from '../harness/kernels/attention-case.ts';
import { guardAttention } from '../harness/kernels/attention-guard.ts';
import { f32, KernelDriver, pageBytes, type Arg } from '../harness/kernels/driver.ts';
import { onGpu, openEmulatedModule, sanitizerEnv, useEmulatedModules, type EmulatedModule } from '../harness/emu/module.ts';
import { makeDeployment, modelConfig } from '../support/deployments.ts';
import { EMU_DEPLOYMENTS, heavy, type EmuDeploymentName } from './deployments.ts';

const { oddVocabBf16: _dense, ...ATTN_DEPLOYMENTS } = EMU_DEPLOYMENTS;
const NAMES = Object.keys(ATTN_DEPLOYMENTS) as Exclude<EmuDeploymentName, 'oddVocabBf16'>[];
const modules = useEmulatedModules(ATTN_DEPLOYMENTS);

/**
 * fp32 throughout on exactly decoded K/V, whatever the storage dtype: dot products of head_dim terms, an
 * online softmax over tiles and a merge over chunks. Measured worst ~3e-7 (the run prints it).
 */
const TOL = 2e-6;
let worst = 0;
afterAll(() => console.log(`emulated attention, worst relative error ${worst.toPrecision(2)}`));

const bits = (a: Float32Array) => new Uint32Array(a.slice().buffer);
const small = (m: EmulatedModule) => Math.min(...m.plan.buckets);
const large = (m: EmulatedModule) => Math.max(...m.plan.buckets);
const holding = (m: EmulatedModule, rows: number) => m.plan.buckets.filter((b) => b * (m.plan.gamma + 1) >= rows);

async function run(m: EmulatedModule, pass: PassPlan, args: Record<string, Arg>, rows: number, bucket = large(m), driver = m.driver) {
  const ws = await m.driver.workspaceFloats(rows);
  const res = await driver.call(`md_attn_${pass.pass}_b${bucket}`, { ...args, out: { out: rows * m.plan.dims.qDim * 4 }, workspace: { out: ws * 4 } });
  return { status: res.status, out: f32(res.out.out), workspace: f32(res.out.workspace) };
}

/**
 * Chunk partials of the call (workspace [row, head, chunk] of m, l, acc) that are still poison, and every
 * chunk holding a position its row sees has one written (a chunk the draft skips gets none, md_cuda.cuh).
 */
function unwrittenPartials(m: EmulatedModule, pass: PassPlan, c: BuiltAttention, workspace: Float32Array): number {
  const { heads, headDim } = m.plan.dims;
  const { chunk, maxChunks, pageSize, pagesPerSeq } = m.plan;
  const seqLen = c.ref.seqLen as Int32Array;
  const [rowSeq, rowPos] = [c.ref.rowSeq as readonly number[], c.ref.rowPos as readonly number[]];
  const words = new Uint32Array(workspace.buffer, workspace.byteOffset, workspace.length);
  let unwritten = 0;
  for (let r = 0; r < c.rows; r++) {
    const len = rowSeq[r] < 0 ? 0 : Math.min(seqLen[rowSeq[r]], pagesPerSeq * pageSize, maxChunks * chunk);
    for (let ch = 0; ch * chunk < len; ch++) {
      let sees = false;
      for (let t = ch * chunk; t < Math.min(len, (ch + 1) * chunk) && !sees; t++) sees = visibleRef(pass, c.ref.params, rowPos[r], t);
      for (let h = 0; h < heads; h++) {
        const poisoned = words[((r * heads + h) * maxChunks + ch) * (headDim + 2)] === 0xffffffff;
        if (sees) expect(poisoned, `row ${r} head ${h} chunk ${ch}: a chunk with a visible position has a partial`).toBe(false);
        if (poisoned) unwritten++;
      }
    }
  }
  return unwritten;
}

function checkReference(m: EmulatedModule, pass: PassPlan, c: BuiltAttention, out: Float32Array) {
  expect(out.every(Number.isFinite), 'every output written and finite').toBe(true);
  const e = attentionError(out, attentionRef(m.plan, pass, c.ref, attnUsesMma(m.plan) ? 'cuda-mma' : 'cuda'));
  worst = Math.max(worst, e);
  expect(e).toBeLessThan(TOL);
}

describe.each(NAMES)('emulated CUDA attention, module %s', (name) => {
  for (const which of ['target', 'draft'] as const) {
    it(`${which} pass matches the float64 reference; bitwise row-invariant over rows, buckets and chunk splits`, async () => {
      const m = modules.get(name)!;
      const pass = m.plan.passes[which];
      const ownLength = isCausal(pass.visible);
      const D = m.plan.dims.qDim;
      // The Llama slice: two sequences of up to two chunks and a bit (each tile is 128 collectives to emulate).
      const [seqs, len] = heavy(m.plan) ? [2, 2 * m.plan.chunk + 5] : [large(m), 3 * m.plan.chunk + 5];
      await fc.assert(
        fc.asyncProperty(attentionDrawArb(m.plan, seqs, Math.min(m.plan.maxSeq, len)), async (d) => {
          const c = buildAttention(m.plan, pass, d);
          const { status, out } = await run(m, pass, c.args, c.rows);
          expect(status).toBe(0);
          checkReference(m, pass, c, out);
          for (const b of holding(m, c.rows).filter((b) => b !== large(m))) {
            const other = await run(m, pass, c.args, c.rows, b);
            expect(bits(other.out), `bucket ${b} vs ${large(m)}`).toEqual(bits(out));
          }
          for (let r = 0; r < c.rows; r += Math.max(1, Math.floor(c.rows / 4))) {
            const alone = await run(m, pass, c.rowArgs(r, { ownLength }), 1, small(m));
            expect(alone.status).toBe(0);
            expect(bits(alone.out), `row ${r} alone${ownLength ? ' (its own length)' : ''} vs in the batch of ${c.rows}`).toEqual(bits(out.slice(r * D, (r + 1) * D)));
          }
        }),
        { numRuns: heavy(m.plan) ? 2 : 6 },
      );
    }, 600_000);
  }

  it('no result depends on the order threads and blocks run in (reverse, shuffled schedules)', async () => {
    const m = modules.get(name)!;
    for (const which of ['target', 'draft'] as const) {
      const pass = m.plan.passes[which];
      const d: AttentionDraw = { seed: 5, seqs: [{ len: Math.min(m.plan.maxSeq, 2 * m.plan.chunk + 3), verify: true }, { len: m.plan.gamma + 4, verify: false }], paramPicks: [0.4, 0.6, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5] };
      const c = buildAttention(m.plan, pass, d);
      const base = await run(m, pass, c.args, c.rows);
      for (const schedule of ['reverse', 'shuffle:3']) {
        const other = await run(m, pass, c.args, c.rows, large(m), m.withSchedule(schedule));
        expect(bits(other.out), `${which} under ${schedule}`).toEqual(bits(base.out));
      }
    }
  });
});

describe('emulated CUDA attention reads only what its pass keeps', () => {
  const OS_PAGE = pageBytes();
  const drivers = new Map<string, KernelDriver>();
  /** A driver of its own per module: a read of a guarded page kills it (ASan reports the SEGV). */
  const guarded = (m: EmulatedModule) => {
    let d = drivers.get(m.library);
    if (!d?.alive) drivers.set(m.library, (d = KernelDriver.open(m.library, sanitizerEnv())));
    return d;
  };
  afterAll(() => drivers.forEach((d) => d.close()));

  it.each(['mhaF32', 'gqaBf16', 'alibiF32', 'llamaSlice'] as const)('the draft of %s over long sequences never reads a page it skips, nor writes a partial for a chunk it skips', async (name) => {
    const m = modules.get(name)!;
    const pass = m.plan.passes.draft;
    let skipped = 0;
    let unwritten = 0;
    await fc.assert(
      fc.asyncProperty(attentionDrawArb(m.plan, heavy(m.plan) ? 1 : large(m), m.plan.maxSeq), async (draw) => {
        const long = { ...draw, seqs: draw.seqs.map((s) => ({ ...s, len: Math.max(s.len, m.plan.maxSeq - 20) })), paramPicks: draw.paramPicks.map((p) => p * 0.3) };
        const c = buildAttention(m.plan, pass, long);
        const g = guardAttention(m.plan, pass, c, OS_PAGE);
        skipped += g.skippedPages;
        const { status, out, workspace } = await run(m, pass, g.args, c.rows, large(m), guarded(m));
        expect(status).toBe(0);
        checkReference(m, pass, c, out);
        unwritten += unwrittenPartials(m, pass, c, workspace);
      }),
      { numRuns: heavy(m.plan) ? 2 : 4 },
    );
    expect(skipped).toBeGreaterThan(0);
    if (m.plan.maxChunks > 1) expect(unwritten, 'chunks the draft skips keep their poisoned partials').toBeGreaterThan(0);
  }, 600_000);

  it('the guard is live: one kept page unreadable faults', async () => {
    const m = modules.get('mhaF32')!;
    const pass = m.plan.passes.draft;
    const draw: AttentionDraw = { seed: 11, seqs: [{ len: m.plan.maxSeq - 3, verify: true }], paramPicks: [0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2] };
    const c = buildAttention(m.plan, pass, draw);
    const g = guardAttention(m.plan, pass, c, OS_PAGE);
    expect((await run(m, pass, g.args, c.rows, small(m), guarded(m))).status).toBe(0);
    await expect(run(m, pass, g.withKeptPageGuarded(), c.rows, small(m), guarded(m))).rejects.toThrow(/SEGV/);
  });
});

describe("emulated CUDA attention: the split of a row's chunks over CTAs changes no bit", () => {
  // Chunks of 32 positions, up to 32 of them: 32 sequences verifying 4 rows each are 32 blocks x 2 KV heads,
  // which get 17 chunk slots (md_attn_launch: ceil(1056 / (ceil(rows / block rows) x KV heads))), so each
  // CTA walks one to two chunks of a 19-to-31-chunk sequence, while a row alone gets a CTA per chunk. The
  // small test modules never get fewer slots than chunks.
  const split = onGpu(
    makeDeployment({ model: modelConfig({ numHeads: 2, numKvHeads: 2, headDim: 16, name: 'split' }), batch: [1, 32], gamma: 3, maxSeq: 1024, pageSize: 4, dtype: 'fp32' }),
  );
  let m: EmulatedModule;
  beforeAll(async () => {
    m = await openEmulatedModule(split);
  }, 600_000);
  afterAll(() => m?.close());

  it.each(['target', 'draft'] as const)('%s: a CTA walking several chunks gives the bits of a CTA per chunk, and the reference', async (which) => {
    const pass = m.plan.passes[which];
    const blockRows = attnShapeFor(m.plan).rows;
    const slots = (rows: number) => Math.min(m.plan.maxChunks, Math.ceil(1056 / (Math.ceil(rows / blockRows) * m.plan.dims.kvHeads)));
    const rnd = mulberry32(which === 'target' ? 17 : 18);
    const seqs = Array.from({ length: 32 }, () => ({ len: 600 + Math.floor(rnd() * 400), verify: true }));
    const c = buildAttention(m.plan, pass, { seed: 23, seqs, paramPicks: [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5] });
    const chunks = Math.ceil(Math.min(...seqs.map((s) => s.len)) / m.plan.chunk);
    expect(slots(c.rows), 'the batch has fewer chunk slots than its sequences have chunks').toBeLessThan(chunks);
    expect(slots(1)).toBe(m.plan.maxChunks);
    const { status, out } = await run(m, pass, c.args, c.rows);
    expect(status).toBe(0);
    checkReference(m, pass, c, out);
    const D = m.plan.dims.qDim;
    for (const r of [0, 13, 66, c.rows - 1]) {
      const alone = await run(m, pass, c.rowArgs(r, { ownLength: isCausal(pass.visible) }), 1, 1);
      expect(bits(alone.out), `row ${r} alone vs in the batch of ${c.rows}`).toEqual(bits(out.slice(r * D, (r + 1) * D)));
    }
  }, 600_000);
});

/** The emulated test modules whose attention runs on tensor cores (md_attn_mma_kernel). */
const MMA_NAMES = NAMES.filter((n) => attnUsesMma(planModule(ATTN_DEPLOYMENTS[n])));

describe.each(MMA_NAMES)('emulated CUDA attention on tensor cores, non-finite values, module %s', (name) => {
  it("an infinite or NaN V that only a block's last verification row sees leaves the rows before it as they are alone", async () => {
    // The P.V mma gives the block's other rows zero weight at that position, and 0 * inf would be NaN:
    // the kernel must notice and work that tile row by row. Row k, the last of the first block, is the
    // first to see the value (at its own position).
    const m = modules.get(name)!;
    const pass = m.plan.passes.target;
    const { gamma } = m.plan;
    const k = Math.min(gamma, attnShapeFor(m.plan).rows - 1);
    const { kvHeads, headDim: D, qDim } = m.plan.dims;
    const PS = m.plan.pageSize;
    const specials = m.plan.deployment.dtype === 'fp16' ? [0x7c00, 0xfc00, 0x7e00] : [0x7f80, 0xff80, 0x7fc0];
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 0x7fffffff }),
        fc.integer({ min: gamma + 2, max: 3 * PS + 7 }),
        fc.integer({ min: 0, max: kvHeads - 1 }),
        fc.integer({ min: 0, max: D - 1 }),
        fc.constantFrom(...specials),
        async (seed, len, kvh, e, special) => {
          const c = buildAttention(m.plan, pass, { seed, seqs: [{ len, verify: true }, { len: PS + 3, verify: false }], paramPicks: [1, 1, 1, 1, 1, 1, 1, 1] }); // the widest windows
          const args = { ...c.args, v_cache: withValueBits(m.plan, c, len - 1 - gamma + k, kvh, e, special) }; // +inf, -inf or NaN
          const all = await run(m, pass, args, c.rows);
          expect(all.status).toBe(0);
          for (let r = 0; r < k; r++) {
            const alone = await run(m, pass, { ...c.rowArgs(r, { ownLength: true }), v_cache: args.v_cache }, 1, small(m));
            expect(bits(alone.out), `row ${r} alone vs in its block`).toEqual(bits(all.out.slice(r * qDim, (r + 1) * qDim)));
            expect(alone.out.every(Number.isFinite)).toBe(true);
          }
          const seer = all.out.slice(k * qDim, (k + 1) * qDim);
          expect(seer.some((x) => !Number.isFinite(x)), 'the row that sees it').toBe(true);
        },
      ),
      { numRuns: heavy(m.plan) ? 2 : 8 },
    );
  }, 600_000);
});

describe('emulated CUDA attention: edge rows', () => {
  it('a row that sees nothing outputs 0', async () => {
    const m = modules.get('gqaBf16')!;
    // The draft's sliding window of 0: q - kv < 0 never holds.
    const d: AttentionDraw = { seed: 7, seqs: [{ len: 50, verify: true }], paramPicks: [0, 0.5, 0, 0, 0, 0, 0, 0] };
    const c = buildAttention(m.plan, m.plan.passes.draft, d);
    const { status, out } = await run(m, m.plan.passes.draft, c.args, c.rows);
    expect(status).toBe(0);
    expect(out.every((x) => Object.is(x, 0))).toBe(true);
  });
});

describe('emulated CUDA attention: what the CUDA kernels clamp instead of refusing (codegen/abi.ts)', () => {
  it('a row without a sequence or with length <= 0 outputs zeros; a length past the cache is clamped to it', async () => {
    const m = modules.get('mhaF32')!;
    const pass = m.plan.passes.target;
    const D = m.plan.dims.qDim;
    const d: AttentionDraw = { seed: 21, seqs: [{ len: 40, verify: true }, { len: 9, verify: false }], paramPicks: [0.5, 0.5, 0, 0, 0, 0, 0, 0] };
    const c = buildAttention(m.plan, pass, d);
    const base = await run(m, pass, c.args, c.rows);
    const seqLen = c.ref.seqLen as Int32Array;
    const rowSeq = c.ref.rowSeq as readonly number[];
    const [s0, s1] = [rowSeq[0], rowSeq[c.rows - 1]];
    // Slot -1 for the last row: zeros there, the other rows unchanged.
    const noSeq = await run(m, pass, { ...c.args, row_seq: Int32Array.from(rowSeq, (s, r) => (r === c.rows - 1 ? -1 : s)) }, c.rows);
    expect(noSeq.status).toBe(0);
    expect(Array.from(noSeq.out.slice((c.rows - 1) * D))).toEqual(new Array(D).fill(0));
    expect(bits(noSeq.out.slice(0, (c.rows - 1) * D))).toEqual(bits(base.out.slice(0, (c.rows - 1) * D)));
    for (const len of [0, -1]) {
      const empty = await run(m, pass, { ...c.args, seq_len: Int32Array.from(seqLen, (l, s) => (s === s1 ? len : l)) }, c.rows);
      expect(empty.status).toBe(0);
      expect(Array.from(empty.out.slice((c.rows - 1) * D)), `seq_len ${len}`).toEqual(new Array(D).fill(0));
    }
    // Past the cache: clamped to pages_per_seq * page_size; the first sequence's rows read only what exists.
    const cap = m.plan.pagesPerSeq * m.plan.pageSize;
    const pageTable = Int32Array.from(c.ref.pageTable as Int32Array, (p, i) => (Math.floor(i / m.plan.pagesPerSeq) === s0 && p < 0 ? 0 : p));
    const at = (len: number) => run(m, pass, { ...c.args, page_table: pageTable, seq_len: Int32Array.from(seqLen, (l, s) => (s === s0 ? len : l)) }, c.rows);
    const [over, exact] = [await at(cap + 1000), await at(cap)];
    expect(over.status).toBe(0);
    expect(bits(over.out)).toEqual(bits(exact.out));
  });
});
