// Attention reads only what its pass keeps. NaN poison (attention.test.ts) catches a skipped position that
// reaches the arithmetic, not one that is loaded and then masked; here every KV page that no row of its
// sequence sees is PROT_NONE memory in the kernel driver (test/harness/kernels/attention-guard.ts), so a
// kernel that so much as loads it dies of SIGSEGV. Long sequences and small windows make most pages
// unreadable for the sink/window policies; the output must still match the float64 reference.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { attentionError, attentionRef } from '../reference/kernels.ts';
import { attentionDrawArb, buildAttention, type AttentionDraw } from '../harness/kernels/attention-case.ts';
import { guardAttention } from '../harness/kernels/attention-guard.ts';
import { KERNEL_DEPLOYMENTS, type KernelDeploymentName } from '../harness/kernels/deployments.ts';
import { f32, KernelDriver, pageBytes, type Arg } from '../harness/kernels/driver.ts';
import { useModules, type ModuleUnderTest } from '../harness/kernels/module.ts';

const NAMES = Object.keys(KERNEL_DEPLOYMENTS) as KernelDeploymentName[];
const modules = useModules(KERNEL_DEPLOYMENTS);
const OS_PAGE = pageBytes();

/** Drivers of their own (a fault kills the process), reopened after one dies. */
const drivers = new Map<string, KernelDriver>();
function driverFor(m: ModuleUnderTest): KernelDriver {
  let d = drivers.get(m.library);
  if (!d?.alive) drivers.set(m.library, (d = KernelDriver.open(m.library)));
  return d;
}
afterAll(() => drivers.forEach((d) => d.close()));

async function call(m: ModuleUnderTest, symbol: string, args: Record<string, Arg>, rows: number) {
  const ws = await m.driver.workspaceFloats(rows);
  return driverFor(m).call(symbol, { ...args, out: { out: rows * m.plan.dims.qDim * 4 }, workspace: { out: ws * 4 } }, 2);
}

/** Every sequence near the longest a module holds; windows and sinks drawn small. */
const longDraw = (m: ModuleUnderTest, d: AttentionDraw): AttentionDraw => ({
  ...d,
  seqs: d.seqs.map((s) => ({ ...s, len: Math.max(s.len, m.plan.maxSeq - 20) })),
  paramPicks: d.paramPicks.map((p) => p * 0.3),
});

describe.each(NAMES)('attention reads, module %s', (name) => {
  for (const which of ['target', 'draft'] as const) {
    it(`${which} pass never reads a page no row of its sequence sees`, async () => {
      const m = modules.get(name)!;
      const pass = m.plan.passes[which];
      const bucket = Math.max(...m.plan.buckets);
      let skipped = 0;
      await fc.assert(
        fc.asyncProperty(attentionDrawArb(m.plan, bucket, m.plan.maxSeq), async (draw) => {
          const c = buildAttention(m.plan, pass, longDraw(m, draw));
          const g = guardAttention(m.plan, pass, c, OS_PAGE);
          skipped += g.skippedPages;
          const res = await call(m, `md_attn_${pass.pass}_b${bucket}`, g.args, c.rows);
          expect(res.status).toBe(0);
          const out = f32(res.out.out);
          expect(out.every(Number.isFinite)).toBe(true);
          expect(attentionError(out, attentionRef(m.plan, pass, c.ref))).toBeLessThan(1e-5); // as attention.test.ts
        }),
        { numRuns: 10 },
      );
      // A pass that keeps every position has nothing to guard; the others must have had pages to skip.
      if (pass.ir.kv.name !== 'full') expect(skipped).toBeGreaterThan(0);
    }, 300_000);
  }

  it('the guard is live: the same call with one kept page unreadable faults', async () => {
    const m = modules.get(name)!;
    const pass = m.plan.passes.draft;
    const draw: AttentionDraw = { seed: 11, seqs: [{ len: m.plan.maxSeq - 3, verify: true }], paramPicks: [0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2] };
    const c = buildAttention(m.plan, pass, draw);
    const g = guardAttention(m.plan, pass, c, OS_PAGE);
    const symbol = `md_attn_draft_b${Math.min(...m.plan.buckets)}`;
    expect((await call(m, symbol, g.args, c.rows)).status).toBe(0);
    await expect(call(m, symbol, g.withKeptPageGuarded(), c.rows)).rejects.toThrow(/SIGSEGV/);
  });
});
