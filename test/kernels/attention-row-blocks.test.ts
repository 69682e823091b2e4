// The CPU attention kernel walks each chunk once for a block of rows of one sequence (rows grouped by slot,
// at most 8 to a block, fewer when the threads would otherwise idle). Grouping must never change a bit:
// here rows of a sequence are interleaved with other sequences' rows in a random order, a sequence gets
// more rows than one block holds (repeated positions with fresh queries, as a prefill chunk's rows share
// a slot), and the call runs at 1 and 3 threads; every row must equal the same row computed alone — for a
// causal pass alone in a sequence that ends at the row (seq_len = position + 1, an AR step), where the call
// has later positions after it. The pairs (row, query head) of a KV head update a tile two at a time, so
// `oddGroup` (3 query heads per KV head, pages of 16: tiles whose groups of 16 positions are all visible)
// pairs a row's last head with the next row's first in a call but not alone.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isCausal } from '../../codegen/passes/causal.ts';
import { attentionDrawArb, buildAttention, mulberry32 } from '../harness/kernels/attention-case.ts';
import { KERNEL_DEPLOYMENTS, type KernelDeploymentName } from '../harness/kernels/deployments.ts';
import { f32, type Arg } from '../harness/kernels/driver.ts';
import { useModules, type ModuleUnderTest } from '../harness/kernels/module.ts';
import { attentions, makeDeployment, modelConfig, policies } from '../support/deployments.ts';

const DEPLOYMENTS = {
  ...KERNEL_DEPLOYMENTS,
  oddGroup: makeDeployment({
    model: modelConfig({ numHeads: 6, numKvHeads: 2, headDim: 32 }),
    target: { attention: attentions.causal(), kv: policies.full() },
    draft: { attention: attentions.causal(), kv: policies.streaming(4, 60) },
    batch: [1, 2],
    maxSeq: 256,
    pageSize: 16,
    dtype: 'bf16',
  }),
};
const NAMES = Object.keys(DEPLOYMENTS) as (KernelDeploymentName | 'oddGroup')[];
const modules = useModules(DEPLOYMENTS);

/** Rows as (slot, position, query) triples, in call order. */
interface Row {
  readonly slot: number;
  readonly pos: number;
  readonly q: Float32Array;
}

/** A row alone, in a sequence that ends at its position. */
function ownLength(base: Record<string, Arg>, row: Row): Record<string, Arg> {
  const seqLen = Int32Array.from(base.seq_len as Int32Array);
  seqLen[row.slot] = row.pos + 1;
  return { ...base, seq_len: seqLen };
}

function rowArgs(base: Record<string, Arg>, rows: readonly Row[], qDim: number): Record<string, Arg> {
  const q = new Float32Array(rows.length * qDim);
  rows.forEach((r, i) => q.set(r.q, i * qDim));
  return {
    ...base,
    q,
    row_seq: Int32Array.from(rows.map((r) => r.slot)),
    row_pos: Int32Array.from(rows.map((r) => r.pos)),
    rows: rows.length,
  };
}

describe.each(NAMES)('attention row blocks, module %s', (name) => {
  for (const which of ['target', 'draft'] as const) {
    it(`${which} pass: shuffled rows, more rows per sequence than a block, any thread count: each row as alone`, async () => {
      const m = modules.get(name)!;
      const pass = m.plan.passes[which];
      const D = m.plan.dims.qDim;
      const big = Math.max(...m.plan.buckets);
      const small = Math.min(...m.plan.buckets);
      const maxRows = big * (m.plan.gamma + 1);
      const draws = fc.record({
        draw: attentionDrawArb(m.plan, big, Math.min(m.plan.maxSeq, 3 * m.plan.chunk + 5)),
        oneSequence: fc.boolean(),
        threads: fc.constantFrom(1, 3),
      });
      await fc.assert(
        fc.asyncProperty(draws, async ({ draw, oneSequence, threads }) => {
          const d = oneSequence ? { ...draw, seqs: [{ ...draw.seqs[0], verify: true }] } : draw;
          const c = buildAttention(m.plan, pass, d);
          const rnd = mulberry32(d.seed ^ 0x5bd1e995);
          const slots = c.ref.rowSeq as readonly number[];
          const positions = c.ref.rowPos as readonly number[];
          const rows: Row[] = slots.map((slot, r) => ({ slot, pos: positions[r], q: (c.ref.q as Float32Array).slice(r * D, (r + 1) * D) }));
          // Extra rows repeat positions the built case already reads (so no poisoned position becomes
          // visible) with fresh queries, up to the bucket's row limit.
          while (rows.length < maxRows) {
            const from = rows[Math.floor(rnd() * rows.length)];
            rows.push({ ...from, q: Float32Array.from({ length: D }, () => (2 * rnd() - 1) * 3) });
          }
          for (let i = rows.length - 1; i > 0; i--) {
            const j = Math.floor(rnd() * (i + 1));
            [rows[i], rows[j]] = [rows[j], rows[i]];
          }
          const ws = await m.driver.workspaceFloats(rows.length);
          const all = await m.driver.call(`md_attn_${pass.pass}_b${big}`, { ...rowArgs(c.args, rows, D), out: { out: rows.length * D * 4 }, workspace: { out: ws * 4 } }, threads);
          expect(all.status).toBe(0);
          const out = f32(all.out.out);
          const ws1 = await m.driver.workspaceFloats(1);
          const causal = isCausal(pass.visible);
          for (const [r, row] of rows.entries()) {
            const base = causal ? ownLength(c.args, row) : c.args;
            const alone = await m.driver.call(`md_attn_${pass.pass}_b${small}`, { ...rowArgs(base, [row], D), out: { out: D * 4 }, workspace: { out: ws1 * 4 } }, 1);
            expect(alone.status).toBe(0);
            expect(new Uint32Array(out.slice(r * D, (r + 1) * D).buffer), `row ${r} (slot ${row.slot}, position ${row.pos}) in the call vs alone`).toEqual(
              new Uint32Array(f32(alone.out.out).buffer),
            );
          }
        }),
        { numRuns: 12 },
      );
    }, 300_000);
  }
});
