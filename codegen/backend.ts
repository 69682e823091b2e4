// What a backend produces: source files of one module, rendered from a ModulePlan.
import type { ModulePlan } from './plan.ts';

export interface EmittedFile {
  /** Path relative to the module directory. */
  readonly path: string;
  readonly contents: string;
}

export interface Backend {
  readonly name: 'cpu' | 'cuda';
  emit(plan: ModulePlan): EmittedFile[];
}
