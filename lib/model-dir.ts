// A Hugging Face model directory as the commands and the benchmark take it: its config.json read with the
// compiler's rules (docs/MODEL-FILES.md), every problem one UserError.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readHfConfigFile } from '../codegen/model-config.ts';
import type { ModelConfig } from '../dsl/models.ts';
import { UserError } from './errors.ts';

/** The model of a Hugging Face model directory, read from its config.json; a UserError names what is wrong. */
export function readModelDir(dir: string): ModelConfig {
  if (!existsSync(dir)) throw new UserError(`model directory not found: ${dir}`);
  if (!statSync(dir).isDirectory()) throw new UserError(`model path is not a directory: ${dir}`);
  const file = join(dir, 'config.json');
  if (!existsSync(file)) throw new UserError(`${dir}: no config.json (expected a Hugging Face model directory)`);
  try {
    return readHfConfigFile(file);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
}
