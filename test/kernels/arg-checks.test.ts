// The host-value argument contract (codegen/abi.ts), checked on every entry point of a CPU module from
// the ABI's data alone, so a kernel added to the list is covered with no test edit: a negative count, or
// one past a bucket's bound, is MD_ERR_ARG; a zero count is MD_OK with every pointer NULL (nothing is
// read); with one row, each required pointer NULL and each `positive` integer at 0 is MD_ERR_ARG. A check
// the rendering dropped lets the kernel run on NULL or dummy buffers: a wrong status or a crashed driver.
import { describe, expect, it } from 'vitest';
import type { ArgSpec } from '../../codegen/abi.ts';
import type { KernelInstance, ModulePlan } from '../../codegen/plan.ts';
import { KERNEL_DEPLOYMENTS } from '../harness/kernels/deployments.ts';
import type { Arg } from '../harness/kernels/driver.ts';
import { isPointer, wireArgs } from '../harness/kernels/driver-source.ts';
import { useModules } from '../harness/kernels/module.ts';

// mhaF32: a target pass without runtime params and a draft with two (md_attn_args.params optional / required).
const modules = useModules({ mhaF32: KERNEL_DEPLOYMENTS.mhaF32 });

/** Whether the ABI lets `a` be NULL for this kernel instance of `plan`. */
function nullable(plan: ModulePlan, k: KernelInstance, a: ArgSpec): boolean {
  if (a.nullable === 'without-params') return plan.passes[k.spec.pass!].params.length === 0;
  return a.nullable === true;
}

/** One row's worth of arguments: every pointer a small zeroed buffer, every integer 1 (the count too). */
function oneRow(k: KernelInstance): Record<string, Arg> {
  return Object.fromEntries(wireArgs(k.spec.args).map((a) => [a.name, isPointer(a) ? (a.type.startsWith('const') ? new Uint8Array(64) : { out: 64 }) : 1]));
}

describe('argument checks of every entry point (from codegen/abi.ts)', () => {
  it('the module has the draft with params and the target without that the cases below need', () => {
    const { passes } = modules.get('mhaF32')!.plan;
    expect([passes.target.params.length, passes.draft.params.length]).toEqual([0, 2]);
  });

  it('count < 0 or past the bucket: MD_ERR_ARG; count 0: MD_OK with every pointer NULL', async () => {
    const { plan, driver } = modules.get('mhaF32')!;
    for (const k of plan.kernels) {
      const wire = wireArgs(k.spec.args);
      const count = wire.find((a) => a.check === 'count')!;
      const call = async (n: number, base: Record<string, Arg>) => (await driver.call(k.symbol, { ...base, [count.name]: n })).status;
      expect(await call(-1, oneRow(k)), `${k.symbol} with ${count.name} = -1`).toBe(1);
      if (k.maxRows !== undefined) expect(await call(k.maxRows + 1, oneRow(k)), `${k.symbol} with ${count.name} = ${k.maxRows + 1}`).toBe(1);
      const empty = Object.fromEntries(wire.map((a) => [a.name, isPointer(a) ? null : 0]));
      expect(await call(0, empty), `${k.symbol} with ${count.name} = 0 and NULL pointers`).toBe(0);
    }
  });

  it('one row with a required pointer NULL, or a positive integer 0: MD_ERR_ARG', async () => {
    const { plan, driver } = modules.get('mhaF32')!;
    let cases = 0;
    for (const k of plan.kernels) {
      for (const a of wireArgs(k.spec.args)) {
        const broken = isPointer(a) && !nullable(plan, k, a) ? null : a.check === 'positive' ? 0 : undefined;
        if (broken === undefined) continue;
        const { status } = await driver.call(k.symbol, { ...oneRow(k), [a.name]: broken });
        expect(status, `${k.symbol} with ${a.name} = ${broken}`).toBe(1);
        cases++;
      }
    }
    expect(cases).toBeGreaterThan(plan.kernels.length);
  });
});
