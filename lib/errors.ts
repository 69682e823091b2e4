// The two kinds of failure the commands report (lib/ throws them, cli/main.ts prints them). A user error (bad flag, missing file, diagnostics, missing
// compiler, a deployment planModule refuses, a shape the CUDA backend cannot launch) is the user's to fix:
// its message is printed alone. Anything else is a bug in magicdec and is printed with its stack.
import { CudaPlanError } from '../codegen/backends/cuda.ts';
import { BuildError } from '../codegen/build.ts';
import { ModuleWriteError } from '../codegen/module.ts';
import { PlanError } from '../codegen/plan.ts';
import type { Io } from './io.ts';

export class UserError extends Error {
  /** The message is complete as it is (e.g. formatted diagnostics) and gets no 'magicdec: error:' prefix. */
  readonly preformatted: boolean = false;
}

/** Exit status of a command that failed on bad input (flags, spec, environment). */
export const EXIT_USER = 1;
/** Exit status of an internal error (a magicdec bug). */
export const EXIT_INTERNAL = 2;

export function isUserError(e: unknown): boolean {
  return e instanceof UserError || e instanceof BuildError || e instanceof ModuleWriteError || e instanceof PlanError || e instanceof CudaPlanError;
}

/** Print `e` the way its kind deserves and return the exit status. */
export function reportError(e: unknown, io: Io): number {
  if (e instanceof UserError && e.preformatted) {
    io.stderr.write(`${e.message}\n`);
    return EXIT_USER;
  }
  if (isUserError(e)) {
    io.stderr.write(`magicdec: error: ${(e as Error).message}\n`);
    return EXIT_USER;
  }
  const text = e instanceof Error ? (e.stack ?? e.message) : String(e);
  io.stderr.write(`magicdec: internal error (please report it):\n${text}\n`);
  return EXIT_INTERNAL;
}
