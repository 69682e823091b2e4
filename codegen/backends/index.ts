// Which backend renders which target. Backends differ by data, not by entry point: every CUDA arch
// shares one renderer and reads the arch from the plan.
import type { Target } from '../../dsl/deploy.ts';
import type { Backend } from '../backend.ts';
import { cpuBackend } from './cpu.ts';
import { cudaBackend } from './cuda.ts';

export const BACKENDS: Readonly<Record<Target, Backend>> = {
  cpu: cpuBackend,
  sm_80: cudaBackend,
  sm_90: cudaBackend,
};

export function backendFor(target: Target): Backend {
  const b = BACKENDS[target];
  if (!b) throw new Error(`no backend for target '${String(target)}' (known: ${Object.keys(BACKENDS).join(', ')})`);
  return b;
}
