// A deployment's CPU module, built (content-hash cached by buildModule) and served by a kernel driver.
import { cpuBackend } from '../../../codegen/backends/cpu.ts';
import { buildModule } from '../../../codegen/build.ts';
import { planModule, type ModulePlan } from '../../../codegen/plan.ts';
import type { DeploymentIR } from '../../../codegen/spec.ts';
import { KernelDriver } from './driver.ts';

export interface ModuleUnderTest {
  readonly plan: ModulePlan;
  readonly library: string;
  readonly driver: KernelDriver;
}

export async function openModule(dep: DeploymentIR, env: Record<string, string> = {}): Promise<ModuleUnderTest> {
  const plan = planModule(dep);
  const { library } = await buildModule({ name: plan.name, files: cpuBackend.emit(plan), target: 'cpu' });
  return { plan, library, driver: KernelDriver.open(library, env) };
}
