// A Hugging Face checkpoint directory: `model.safetensors`, or shards listed by
// `model.safetensors.index.json` ({metadata, weight_map: {tensor: file}}). Opening one validates that
// the index and the shards agree, so a missing or misplaced tensor is reported before anything runs.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseStrictJson, readRegularFile } from '../codegen/strict-json.ts';
import type { Dtype } from './dtypes.ts';
import { INDEX_FILE, SINGLE_FILE, SafetensorsError, readSafetensors, type SafetensorsFile } from './safetensors.ts';

export interface CheckpointTensor {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  readonly file: string;
}

export class Checkpoint {
  private constructor(
    readonly dir: string,
    private readonly where: ReadonlyMap<string, SafetensorsFile>,
  ) {}

  static open(dir: string): Checkpoint {
    const indexPath = join(dir, INDEX_FILE);
    if (existsSync(indexPath)) return Checkpoint.openSharded(dir, indexPath);
    const single = join(dir, SINGLE_FILE);
    if (!existsSync(single)) throw new SafetensorsError(`${dir}: no ${SINGLE_FILE} or ${INDEX_FILE}`);
    const f = readSafetensors(single);
    return new Checkpoint(dir, new Map(f.names().map((n) => [n, f])));
  }

  private static openSharded(dir: string, indexPath: string): Checkpoint {
    let index: unknown;
    try {
      // Strict like the runtime's reader: a tensor mapped twice is a duplicate key, not the last one winning.
      const text = readRegularFile(indexPath);
      parseStrictJson(text, indexPath);
      index = JSON.parse(text);
    } catch (e) {
      throw new SafetensorsError((e as Error).message);
    }
    const map = (index as { weight_map?: unknown } | null)?.weight_map;
    if (typeof map !== 'object' || map === null || Array.isArray(map)) {
      throw new SafetensorsError(`${indexPath}: "weight_map" must be an object {tensor: file}`);
    }
    const files = new Map<string, SafetensorsFile>();
    const where = new Map<string, SafetensorsFile>();
    for (const [name, file] of Object.entries(map)) {
      if (typeof file !== 'string' || file.includes('/') || file.includes('\\')) {
        throw new SafetensorsError(`${indexPath}: tensor "${name}" maps to ${JSON.stringify(file)}, not a file name in ${dir}`);
      }
      let f = files.get(file);
      if (!f) {
        const path = join(dir, file);
        if (!existsSync(path)) throw new SafetensorsError(`${indexPath}: tensor "${name}" is in ${file}, which does not exist`);
        f = readSafetensors(path);
        files.set(file, f);
      }
      if (!f.tensors.has(name)) throw new SafetensorsError(`${indexPath}: tensor "${name}" is listed in ${file} but that file has no such tensor`);
      where.set(name, f);
    }
    for (const [file, f] of files) {
      for (const name of f.names()) {
        if (where.get(name) !== f) throw new SafetensorsError(`${join(dir, file)}: tensor "${name}" is not listed for this file in ${INDEX_FILE}`);
      }
    }
    return new Checkpoint(dir, where);
  }

  names(): string[] {
    return [...this.where.keys()].sort();
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  info(name: string): CheckpointTensor {
    const f = this.file(name);
    const t = f.info(name);
    return { name, dtype: t.dtype, shape: t.shape, file: f.file };
  }

  float64(name: string): Float64Array {
    return this.file(name).toFloat64(name);
  }

  private file(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (!f) throw new SafetensorsError(`${this.dir}: checkpoint has no tensor "${name}"`);
    return f;
  }
}
