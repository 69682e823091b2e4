// `magicdec bench-serve [--model M] [--context LIST] [--max-tokens N] [--clients LIST] [--rate LIST]
// [--requests N] [--modes LIST] [--max-batch N] [--step-tokens N] [--seed N] [--spec FILE] [--out DIR] [--cache DIR]`:
// parses and checks the flags, then runs the load generator against in-process servers (bench/serve.ts).
// Values are checked here rather than by commander so that a bad one is one line.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { DEFAULT_SERVE_BENCH, runServeBench, type ServeBenchOptions, type ServeMode } from '../bench/serve.ts';
import type { Load } from '../bench/load.ts';
import { UserError } from '../lib/errors.ts';
import type { Io } from '../lib/io.ts';
import { RANDOM_PRESETS } from '../model/random.ts';
import { items, whole } from './bench.ts';

export interface BenchServeFlags {
  model?: string;
  context?: string;
  maxTokens?: string;
  clients?: string;
  rate?: string;
  requests?: string;
  modes?: string;
  maxBatch?: string;
  stepTokens?: string;
  seed?: string;
  spec?: string;
  out?: string;
  cache?: string;
}

const MAX_CONTEXT = 1 << 20;

function rate(s: string): number {
  if (!/^\d+(\.\d+)?$/.test(s) || !(Number(s) > 0) || Number(s) > 1e6) throw new UserError(`--rate: expected a request rate > 0 (requests/s, e.g. 0.5), got '${s}'`);
  return Number(s);
}

/** The run the flags describe; defaults: DEFAULT_SERVE_BENCH (a few minutes on 2 cores). */
export function benchServeOptions(f: BenchServeFlags): ServeBenchOptions {
  const d = DEFAULT_SERVE_BENCH;
  const model = f.model ?? d.model;
  if (!(RANDOM_PRESETS as readonly string[]).includes(model) && !existsSync(model)) {
    throw new UserError(`--model: '${model}' is neither a preset (${RANDOM_PRESETS.join(', ')}) nor a model directory`);
  }
  const loads: Load[] = [
    ...(f.clients === undefined ? [] : items('--clients', f.clients).map((c) => ({ kind: 'closed' as const, clients: whole('--clients', c, 1, 4096) }))),
    ...(f.rate === undefined ? [] : items('--rate', f.rate).map((r) => ({ kind: 'open' as const, rate: rate(r) }))),
  ];
  const modes = f.modes === undefined ? d.modes : items('--modes', f.modes);
  for (const m of modes) if (m !== 'ar' && m !== 'spec') throw new UserError(`--modes: expected ar and/or spec, got '${m}'`);
  return {
    model,
    contexts: f.context === undefined ? d.contexts : items('--context', f.context).map((c) => whole('--context', c, 1, MAX_CONTEXT, true)),
    maxTokens: f.maxTokens === undefined ? d.maxTokens : whole('--max-tokens', f.maxTokens, 2, 1 << 16),
    loads: loads.length ? loads : d.loads,
    requests: f.requests === undefined ? d.requests : whole('--requests', f.requests, 1, 1 << 16),
    modes: modes as ServeMode[],
    maxBatch: f.maxBatch === undefined ? d.maxBatch : whole('--max-batch', f.maxBatch, 1, 4096),
    seed: f.seed === undefined ? d.seed : whole('--seed', f.seed, 0, 2 ** 32 - 1),
    out: f.out ?? d.out,
    ...(f.stepTokens !== undefined ? { stepTokens: whole('--step-tokens', f.stepTokens, 1, 2 ** 31 - 1) } : {}),
    ...(f.spec !== undefined ? { spec: f.spec } : {}),
    ...(f.cache !== undefined ? { cache: f.cache } : {}),
  };
}

/** Adds `bench-serve` to the command tree. */
export function addBenchServeCommand(cli: Command, io: Io): Command {
  const d = DEFAULT_SERVE_BENCH;
  return cli
    .command('bench-serve')
    .description('throughput and latency (TTFT, inter-token) of magicdec serve against offered load, autoregressive vs speculative, from a loopback load generator; writes JSON + SVG')
    .option('--model <m>', `a preset of 'magicdec model random' (${RANDOM_PRESETS.join(', ')}) or a model directory with tokenizer.json (default: ${d.model})`)
    .option('--context <list>', `prompt lengths in tokens, cycled through by the requests, e.g. 4K,16K (default: ${d.contexts.join(',')})`)
    .option('--max-tokens <n>', `tokens each request generates (default: ${d.maxTokens})`)
    .option('--clients <list>', 'closed-loop levels: concurrent clients, each sending its next request when the last ends, e.g. 1,4,16 (default: 1,4 when --rate is absent)')
    .option('--rate <list>', 'open-loop levels: Poisson arrival rates in requests/s, e.g. 0.1,0.5 (default: none)')
    .option('--requests <n>', `requests per load level (default: ${d.requests})`)
    .option('--modes <list>', 'server modes to measure: ar, spec or both (default: ar,spec)')
    .option('--max-batch <n>', `the server's --max-batch (default: ${d.maxBatch})`)
    .option('--step-tokens <n>', "the server's --step-tokens (default: the server's: a full decode round plus 128 prefill rows)")
    .option('--seed <n>', `seed of the prompts and arrival times (default: ${d.seed})`)
    .option('--spec <file>', "the server's --spec (default: the built-in deployment)")
    .option('--out <dir>', 'where serve-<date>.json and serve-<date>.svg go (default: bench/results in the checkout)')
    .option('--cache <dir>', 'build cache directory (default: .cache/modules in the magicdec checkout)')
    .action(async (flags: BenchServeFlags) => {
      await runServeBench(benchServeOptions(flags), io);
    });
}
