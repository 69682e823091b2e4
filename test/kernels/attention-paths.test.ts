// The CPU attention kernels' fallbacks compute exactly what the VDPBF16PS / f32 build does: the same modules
// built with MD_PORTABLE (plain lane loops for every vector helper) and, for bf16 storage, MD_NO_AVX512BF16
// (the VDPBF16PS emulation) and MD_NO_AVX512 (the AVX2 path), called with the same draws, give that build's
// bits; some draws plant values where the emulation's fast path must give way to its every flush. So the reduction order is
// one thing, whichever instructions carry it out on the machine at hand. For bf16 that build is MD_NO_AMX:
// where the host has AMX, the native build runs q.k and P.V on tiles, whose accumulation is the hardware's
// own (test/kernels/attention.test.ts holds it to the float64 reference and to row invariance).
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuBackend } from '../../codegen/backends/cpu.ts';
import { buildModule } from '../../codegen/build.ts';
import { planModule, type ModulePlan } from '../../codegen/plan.ts';
import { attentionDrawArb, buildAttention } from '../harness/kernels/attention-case.ts';
import { KERNEL_DEPLOYMENTS, PAGED_BF16_DEPLOYMENTS } from '../harness/kernels/deployments.ts';
import { KernelDriver } from '../harness/kernels/driver.ts';
import { useModules } from '../harness/kernels/module.ts';

const DEPLOYMENTS = { gqaBf16: KERNEL_DEPLOYMENTS.gqaBf16, tailF16: KERNEL_DEPLOYMENTS.tailF16, mhaBf16: PAGED_BF16_DEPLOYMENTS.mhaBf16 };
const native = useModules(DEPLOYMENTS);
const VARIANTS = [
  { module: 'gqaBf16', define: 'MD_PORTABLE' },
  { module: 'gqaBf16', define: 'MD_NO_AVX512BF16' },
  { module: 'gqaBf16', define: 'MD_NO_AVX512' },
  { module: 'tailF16', define: 'MD_PORTABLE' },
  { module: 'mhaBf16', define: 'MD_PORTABLE' },
] as const;
/** The build whose bits the variants must give: the native one, or for bf16 its MD_NO_AMX build. */
const BASELINE: Partial<Record<(typeof VARIANTS)[number]['module'], string>> = { gqaBf16: 'MD_NO_AMX', mhaBf16: 'MD_NO_AMX' };

/** Draws, some with values below the emulated VDPBF16PS's coarse bound (md_cpu.h dot_bf16_coarse) planted. */
const draws = (plan: ModulePlan, bucket: number) =>
  fc.tuple(attentionDrawArb(plan, bucket, plan.maxSeq), fc.constantFrom(0, 0.002, 0.02)).map(([d, fine]) => ({ ...d, fine }));

const variants = new Map<string, KernelDriver>();
beforeAll(async () => {
  const builds = [...VARIANTS, ...Object.entries(BASELINE).map(([module, define]) => ({ module: module as keyof typeof BASELINE, define }))];
  for (const v of builds) {
    const plan = planModule(DEPLOYMENTS[v.module]);
    const files = cpuBackend.emit(plan).map((f) => (f.path === 'md_cpu.h' ? { ...f, contents: `#define ${v.define} 1\n${f.contents}` } : f));
    const { library } = await buildModule({ name: `${plan.name}.${v.define}`, files, target: 'cpu' });
    variants.set(`${v.module}/${v.define}`, KernelDriver.open(library));
  }
}, 600_000);
afterAll(() => variants.forEach((d) => d.close()));

describe.each(VARIANTS)('attention of $module built with $define', ({ module, define }) => {
  for (const which of ['target', 'draft'] as const) {
    it(`${which} pass: the ${BASELINE[module] ?? 'native'} build's bits`, async () => {
      const m = native.get(module)!;
      const base = BASELINE[module] ? variants.get(`${module}/${BASELINE[module]}`)! : m.driver;
      const other = variants.get(`${module}/${define}`)!;
      const pass = m.plan.passes[which];
      const bucket = Math.max(...m.plan.buckets);
      await fc.assert(
        fc.asyncProperty(draws(m.plan, bucket), async (d) => {
          const c = buildAttention(m.plan, pass, d);
          const ws = await m.driver.workspaceFloats(c.rows);
          const args = { ...c.args, out: { out: c.rows * m.plan.dims.qDim * 4 }, workspace: { out: ws * 4 } };
          const [a, b] = await Promise.all([base.call(`md_attn_${which}_b${bucket}`, args, 2), other.call(`md_attn_${which}_b${bucket}`, args, 2)]);
          expect([a.status, b.status]).toEqual([0, 0]);
          expect(Buffer.from(b.out.out).equals(Buffer.from(a.out.out)), 'the same bits').toBe(true);
        }),
        { numRuns: 10 },
      );
    }, 300_000);
  }
});
