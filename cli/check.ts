// `magicdec check spec.ts [--runs N] [--seed S] [--models M] [--out DIR] [--cache DIR]`: property-tests a
// deployment for losslessness (lib/check.ts) and prints what held; on failure, the shrunk counterexample
// and the `magicdec run` command lines that replay it, exit status 1.
import type { Command } from 'commander';
import { checkDeployment, verifierContract, describeReport, type CheckOptions } from '../lib/check.ts';
import { loadDeployment } from '../lib/deployment.ts';
import { UserError } from '../lib/errors.ts';
import type { Io } from '../lib/io.ts';
import { whole } from './bench.ts';

export interface CheckFlags {
  runs?: string;
  seed?: string;
  models?: string;
  out?: string;
  cache?: string;
}

export const CHECK_DEFAULTS = { runs: 20, models: 2, out: 'out/check' } as const;
const MAX_RUNS = 10_000;
const MAX_MODELS = 16;

/** The options the flags give; without --seed a seed is drawn (and printed, so the run can be repeated). */
export function checkOptions(spec: string, f: CheckFlags): CheckOptions {
  return {
    specFile: spec,
    runs: f.runs === undefined ? CHECK_DEFAULTS.runs : whole('--runs', f.runs, 1, MAX_RUNS),
    seed: f.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : whole('--seed', f.seed, 0, 2 ** 31 - 1),
    models: f.models === undefined ? CHECK_DEFAULTS.models : whole('--models', f.models, 1, MAX_MODELS),
    out: f.out ?? CHECK_DEFAULTS.out,
    ...(f.cache !== undefined ? { cacheDir: f.cache } : {}),
  };
}

export async function checkCommand(spec: string, flags: CheckFlags, io: Io): Promise<void> {
  const opts = checkOptions(spec, flags);
  const dep = await loadDeployment(spec);
  const { contract } = verifierContract(dep.verify);
  io.stdout.write(`checking ${spec} (verifier '${dep.verify.name}', ${contract}) with seed ${opts.seed}: ${opts.runs} runs on ${opts.models} random ${dep.model.architecture} model${opts.models === 1 ? '' : 's'}\n`);
  const { models, report } = await checkDeployment(dep, opts, io);
  const f = report.failure;
  if (!f) {
    io.stdout.write(describeReport(dep, report, models));
    return;
  }
  io.stdout.write(
    `FAILED: ${f.message}\n` +
      `counterexample (after ${f.shrinks} shrink${f.shrinks === 1 ? '' : 's'}): ${f.counterexample}\n` +
      `replay it with:\n${f.replay.map((l) => `  ${l}\n`).join('')}` +
      `repeat the check with: magicdec check ${spec} --seed ${opts.seed} --runs ${opts.runs} --models ${opts.models}\n`,
  );
  throw new UserError(`${spec}: verifier '${dep.verify.name}' is not lossless (counterexample above)`);
}

/** Adds `check` to the command tree. */
export function addCheckCommand(cli: Command, io: Io): Command {
  const d = CHECK_DEFAULTS;
  return cli
    .command('check')
    .description("property-test a spec's passes and verifier for losslessness on random tiny models of its architecture family; prints a replayable counterexample and exits 1 on failure")
    .argument('<spec>', 'spec file (TypeScript) whose default export is deploy(...)')
    .option('--runs <n>', `random cases (prompts, batch, gamma, seeds, sampling parameters, draft params); distribution-exact verifiers also get runs / 4 statistical cases (default: ${d.runs})`)
    .option('--seed <n>', 'seed of the models and cases, 0..2^31-1 (default: drawn at random and printed)')
    .option('--models <n>', `random models of the spec's family, each its own compiled module (default: ${d.models})`)
    .option('--out <dir>', `where the random models are written and kept for replays (default: ${d.out})`)
    .option('--cache <dir>', 'build cache directory (default: .cache/modules in the magicdec checkout)')
    .action(async (spec: string, flags: CheckFlags) => {
      await checkCommand(spec, flags, io);
    });
}
