// `magicdec model random --preset tiny|small|mha|gqa|local --seed N --out DIR [--dtype bf16] [--shards K]`: write a random
// Llama-family model (config.json, safetensors, tokenizer.json) for tests and demos. Mounted by main.ts via
// addModelRandomCommand; modelRandomCommand is the same thing callable in-process.

import type { Command } from 'commander';
import { RANDOM_PRESETS, writeRandomModel, type RandomModelInfo, type WeightDtype } from '../model/random.ts';
import { UserError } from '../lib/errors.ts';
import { processIo, type Io } from '../lib/io.ts';

export const WEIGHT_DTYPES: readonly WeightDtype[] = ['fp32', 'bf16', 'fp16'];
const MAX_SHARDS = 64;

export interface ModelRandomFlags {
  preset?: string;
  /** A whole number (string as commander passes it, or a number). */
  seed?: string | number;
  out?: string;
  dtype?: string;
  shards?: string | number;
}

function wholeNumber(v: string | number, flag: string, min: number, max: number): number {
  const text = String(v).trim();
  if (!/^\d+$/.test(text)) throw new UserError(`${flag} must be a whole number, got '${v}'`);
  const n = Number(text);
  if (n < min || n > max) throw new UserError(`${flag} ${n} is out of range ${min}..${max}`);
  return n;
}

function oneOf<T extends string>(v: string, allowed: readonly T[], flag: string): T {
  if (!(allowed as readonly string[]).includes(v)) throw new UserError(`${flag} must be one of ${allowed.join(', ')}, got '${v}'`);
  return v as T;
}

export function describeRandomModel(info: RandomModelInfo, dtype: WeightDtype, seed: number): string {
  const c = info.config;
  const params = info.parameters >= 1e6 ? `${(info.parameters / 1e6).toFixed(1)}M` : `${(info.parameters / 1e3).toFixed(1)}k`;
  return (
    `${info.dir}: random ${c.architecture} model '${c.name}' (seed ${seed}, ${dtype}), ${params} parameters, ` +
    `${c.numLayers} layers, hidden ${c.hiddenSize}, heads ${c.numHeads}/${c.numKvHeads} kv, vocab ${c.vocabSize} ` +
    `(${info.tokenizer} BPE, bos ${info.bosId}, eos ${info.eosId}), ${info.files.length} safetensors file${info.files.length === 1 ? '' : 's'}\n`
  );
}

/** Validate the flags, write the model, print a one-line summary; bad flags throw a UserError. */
export async function modelRandomCommand(flags: ModelRandomFlags, io: Io = processIo): Promise<RandomModelInfo> {
  if (flags.out === undefined || flags.out === '') throw new UserError('--out <dir> is required');
  if (flags.seed === undefined) throw new UserError('--seed <n> is required');
  const preset = oneOf(flags.preset ?? 'tiny', RANDOM_PRESETS, '--preset');
  const dtype = oneOf(flags.dtype ?? 'bf16', WEIGHT_DTYPES, '--dtype');
  const seed = wholeNumber(flags.seed, '--seed', 0, Number.MAX_SAFE_INTEGER);
  const shards = flags.shards === undefined ? 1 : wholeNumber(flags.shards, '--shards', 1, MAX_SHARDS);
  let info: RandomModelInfo;
  try {
    info = writeRandomModel({ preset, seed, dtype, out: flags.out, shards });
  } catch (e) {
    throw new UserError(`cannot write a random model to ${flags.out}: ${(e as Error).message}`);
  }
  io.stdout.write(describeRandomModel(info, dtype, seed));
  return info;
}

/** Add `random` to the `model` command group (commander). */
export function addModelRandomCommand(model: Command, io: Io = processIo): Command {
  return model
    .command('random')
    .description('write a random Llama-family model (config.json, safetensors, tokenizer.json) for tests and demos')
    .option('--preset <name>', `model shape: ${RANDOM_PRESETS.join(', ')} (mha, gqa: the benchmark's 4-layer dim-512 models with 8 or 2 KV heads; local: mha's shape with synthetic sink + recent-position attention, docs/BENCH.md)`, 'tiny')
    .requiredOption('--seed <n>', 'PRNG seed: the same seed writes the same bytes; required')
    .requiredOption('--out <dir>', 'output directory (created; earlier model files in it are replaced); required')
    .option('--dtype <dtype>', `weight dtype: ${WEIGHT_DTYPES.join(', ')}`, 'bf16')
    .option('--shards <k>', 'number of safetensors shards (with model.safetensors.index.json when > 1)', '1')
    .action(async (flags: ModelRandomFlags) => {
      await modelRandomCommand(flags, io);
    });
}
