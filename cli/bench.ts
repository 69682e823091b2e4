// `magicdec bench [--models LIST] [--batch LIST] [--context LIST] [--gamma LIST] [--budget LIST]
// [--decode-tokens N] [--out DIR] [--cache DIR]`: parses and checks the flags, then runs the grid
// (bench/grid.ts). Values are checked here rather than by commander so that a bad one is one line.
import type { Command } from 'commander';
import { MAX_BATCH, MAX_GAMMA } from '../codegen/limits.ts';
import { DEFAULT_BENCH, runBench, type BenchOptions } from '../bench/grid.ts';
import { UserError } from '../lib/errors.ts';
import type { Io } from '../lib/io.ts';

export interface BenchFlags {
  models?: string;
  batch?: string;
  context?: string;
  gamma?: string;
  budget?: string;
  decodeTokens?: string;
  out?: string;
  cache?: string;
}

const MAX_CONTEXT = 1 << 20;
const MAX_DECODE_TOKENS = 1 << 16;

export function items(flag: string, text: string): string[] {
  const parts = text.split(',').map((s) => s.trim());
  if (parts.some((p) => p === '')) throw new UserError(`${flag} takes a comma-separated list, got '${text}'`);
  if (new Set(parts).size !== parts.length) throw new UserError(`${flag} lists a value twice: '${text}'`);
  return parts;
}

export function whole(flag: string, s: string, min: number, max: number, suffixK = false): number {
  const m = /^(\d+)([kK]?)$/.exec(s);
  if (!m || (m[2] && !suffixK)) throw new UserError(`${flag}: expected a whole number${suffixK ? ' (or NK, N * 1024)' : ''}, got '${s}'`);
  const n = Number(m[1]) * (m[2] ? 1024 : 1);
  if (n < min || n > max) throw new UserError(`${flag}: ${s} is outside ${min}..${max}`);
  return n;
}

/** The grid the flags describe; defaults: DEFAULT_BENCH (`npm run bench`'s short grid). */
export function benchOptions(f: BenchFlags): BenchOptions {
  const gammas = f.gamma === undefined ? DEFAULT_BENCH.gammas : items('--gamma', f.gamma).map((g) => (g === 'auto' ? 'auto' : whole('--gamma', g, 1, MAX_GAMMA)));
  return {
    models: f.models === undefined ? DEFAULT_BENCH.models : items('--models', f.models),
    batches: f.batch === undefined ? DEFAULT_BENCH.batches : items('--batch', f.batch).map((b) => whole('--batch', b, 1, MAX_BATCH)),
    contexts: f.context === undefined ? DEFAULT_BENCH.contexts : items('--context', f.context).map((c) => whole('--context', c, 16, MAX_CONTEXT, true)),
    gammas,
    ...(f.budget !== undefined ? { budgets: items('--budget', f.budget).map((b) => whole('--budget', b, 2, MAX_CONTEXT, true)) } : {}),
    decodeTokens: f.decodeTokens === undefined ? DEFAULT_BENCH.decodeTokens : whole('--decode-tokens', f.decodeTokens, 2, MAX_DECODE_TOKENS),
    out: f.out ?? DEFAULT_BENCH.out,
    ...(f.cache !== undefined ? { cache: f.cache } : {}),
  };
}

/** Adds `bench` to the command tree. */
export function addBenchCommand(cli: Command, io: Io): Command {
  const d = DEFAULT_BENCH;
  return cli
    .command('bench')
    .description('autoregressive vs self-speculative decoding over a grid of models, batch sizes, contexts, gammas and draft budgets; writes JSON + SVG')
    .option('--models <list>', `presets of 'magicdec model random' (tiny, small, mha, gqa, local) or model directories (default: ${d.models.join(',')})`)
    .option('--batch <list>', `sequences decoded together, e.g. 1,4,8,16,32 (default: ${d.batches.join(',')})`)
    .option('--context <list>', `prompt tokens per sequence, e.g. 1K,4K,16K,32K (default: ${d.contexts.join(',')})`)
    .option('--gamma <list>', `tokens drafted per round, 1..${MAX_GAMMA}, or auto (default: ${d.gammas.join(',')})`)
    .option('--budget <list>', "draft budgets, sink + window positions, e.g. 256,512,1024 (default: the default deployment's 4 + 508)")
    .option('--decode-tokens <n>', `tokens per sequence each (budget, gamma) point decodes (default: ${d.decodeTokens})`)
    .option('--out <dir>', 'where <date>.json and <date>.svg go (default: bench/results in the checkout)')
    .option('--cache <dir>', 'build cache directory (default: .cache/modules in the magicdec checkout)')
    .action(async (flags: BenchFlags) => {
      await runBench(benchOptions(flags), io);
    });
}
