// A deployment's CPU module, built (content-hash cached by buildModule) and served by a kernel driver.
import { afterAll, beforeAll } from 'vitest';
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

/**
 * For a test file: builds every deployment's module before its tests and closes the drivers after. The map
 * fills in beforeAll, so read it inside tests, not at collection time.
 */
export function useModules<N extends string>(deployments: Readonly<Record<N, DeploymentIR>>): ReadonlyMap<N, ModuleUnderTest> {
  const modules = new Map<N, ModuleUnderTest>();
  beforeAll(async () => {
    for (const n of Object.keys(deployments) as N[]) modules.set(n, await openModule(deployments[n]));
  }, 600_000);
  afterAll(() => modules.forEach((m) => m.driver.close()));
  return modules;
}
