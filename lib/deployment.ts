// Loading a deployment for the commands and the benchmark: the front end's diagnostics become one error that prints all of them.
import { existsSync, statSync } from 'node:fs';
import { formatDiagnostic, loadSpec } from '../codegen/frontend/index.ts';
import type { DeploymentIR } from '../codegen/spec.ts';
import { UserError } from './errors.ts';

/** A spec that did not compile; the message is every diagnostic, formatted, in the front end's order. */
export class DiagnosticsError extends UserError {
  override readonly preformatted = true;
  constructor(readonly count: number, text: string) {
    super(text);
  }
}

/** The deployment of `file`, or the built-in default when no file is given. */
export async function loadDeployment(file?: string): Promise<DeploymentIR> {
  if (file !== undefined) {
    if (!existsSync(file)) throw new UserError(`spec file not found: ${file}`);
    if (!statSync(file).isFile()) throw new UserError(`spec path is not a file: ${file}`);
  }
  const { deployment, diagnostics } = await loadSpec(file);
  if (diagnostics.length > 0) {
    const n = diagnostics.length;
    const text = `${diagnostics.map(formatDiagnostic).join('\n')}\n${n} error${n === 1 ? '' : 's'} in ${file ?? 'the default spec'}`;
    throw new DiagnosticsError(n, text);
  }
  if (!deployment) throw new Error(`front end returned neither a deployment nor diagnostics for ${file ?? 'the default spec'}`);
  return deployment;
}
