// The `magicdec` command line. main() parses argv, runs one command and returns the exit status instead
// of exiting, so tests run it in-process; bin/magicdec.js is the only caller that touches process.exit*.
import { Command, CommanderError, Option } from 'commander';
import { join } from 'node:path';
import { COMPILER_VERSION, moduleName } from '../codegen/plan.ts';
import type { DType, Target } from '../dsl/deploy.ts';
import { reportError, UserError } from '../lib/errors.ts';
import { generate, summary } from './generate.ts';
import { GENERATED_DIR, regenerate } from './generated-modules.ts';
import { demoCommand, LONG_CONTEXT, type DemoFlags } from './demo.ts';
import { processIo, type Io } from '../lib/io.ts';
import { DTYPES, TARGETS, applyOverrides, parseBatch, parseGamma, parseMaxSeq, type Gamma } from './overrides.ts';
import { addModelRandomCommand } from './model-random.ts';
import { addBenchCommand } from './bench.ts';
import { addBenchServeCommand } from './bench-serve.ts';
import { addRunCommand } from './run.ts';
import { addCheckCommand } from './check.ts';
import { addServeCommand } from './serve.ts';
import { loadDeployment } from '../lib/deployment.ts';

interface GenFlags {
  target?: Target;
  out?: string;
  build?: boolean;
  batch?: number[];
  maxSeq?: number;
  gamma?: Gamma;
  dtype?: DType;
  cache?: string;
}

/** The command tree (exported for tests that check the README documents every flag). */
export function program(io: Io = processIo): Command {
  const cli = new Command('magicdec')
    .description('compile attention / KV-policy / verification specs into fused CPU and CUDA kernels for self-speculative decoding')
    .version(COMPILER_VERSION)
    // Set before any subcommand is added: commander copies these settings into each subcommand.
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .showHelpAfterError('(add --help for usage)');

  cli
    .command('gen')
    .description('compile a spec (or the built-in default deployment) into a module directory: sources + manifest.json')
    .argument('[spec]', 'spec file (TypeScript) whose default export is deploy(...); the built-in default when omitted')
    .addOption(new Option('--target <target>', "target (default: the spec's arch)").choices(TARGETS))
    .option('--out <dir>', 'output directory, replaced as a whole (default: out/<module name>)')
    .option('--build', 'also compile the module into a shared library (g++ for cpu, nvcc for sm_80/sm_90)')
    .option('--batch <list>', "comma-separated batch buckets, ascending, e.g. 1,8,32 (default: the spec's shapes.batch)", parseBatch)
    .option('--max-seq <n>', "longest sequence the module serves (default: the spec's shapes.maxSeq)", parseMaxSeq)
    .option('--gamma <n|auto>', "tokens drafted per round, or auto: chosen per round by the runtime, compiled for the spec's gammaMax (default 8) (default: the spec's gamma)", parseGamma)
    .addOption(new Option('--dtype <dtype>', "weight and KV-cache storage dtype (default: the spec's dtype)").choices(DTYPES))
    .option('--cache <dir>', 'build cache directory (default: .cache/modules in the magicdec checkout)')
    .action(async (spec: string | undefined, flags: GenFlags) => {
      const deployment = applyOverrides(await loadDeployment(spec), flags);
      const out = flags.out ?? join('out', moduleName(deployment));
      io.stdout.write(summary(await generate({ deployment, out, build: flags.build, cacheDir: flags.cache }, io)));
    });

  cli
    .command('regen')
    .description('rewrite generated/ (the committed default modules) from the current compiler')
    .action(async () => {
      const tree = await regenerate();
      const modules = [...new Set(tree.map((f) => f.path.split('/')).filter((p) => p.length > 1).map((p) => p[0]))];
      io.stdout.write(`${GENERATED_DIR}: ${tree.length} files, modules:\n${modules.map((m) => `  ${m}\n`).join('')}`);
    });

  cli
    .command('demo')
    .description('emit the default sm_90 kernels, build the tiny CPU module and model, decode a batch both ways and check the tokens match')
    .option('--out <dir>', 'parent of the output directories', 'out')
    .option('--cache <dir>', 'build cache directory (default: .cache/modules in the magicdec checkout)')
    .option('--long-context <tokens>', `prompt tokens of each sequence of the long-context case, 2..${LONG_CONTEXT} (default: ${LONG_CONTEXT})`)
    .action(async (flags: DemoFlags) => {
      await demoCommand(flags, io);
    });

  addRunCommand(cli, io);
  addCheckCommand(cli, io);

  addServeCommand(cli, io);
  addBenchCommand(cli, io);
  addBenchServeCommand(cli, io);

  addModelRandomCommand(cli.command('model').description('model utilities'), io);

  return cli;
}

/**
 * The command path `argv` names, checked before commander sees it: commander treats `magicdec nosuch
 * --help` as the top-level `--help` (exit 0). Descends through command groups (e.g. `model`) while the
 * next word is a subcommand; a word that is not one, where a subcommand is required, is an error naming
 * the known commands. Options and the arguments of a leaf command are commander's to check.
 */
function checkCommandPath(cli: Command, argv: readonly string[]): void {
  let cmd = cli;
  const path = [cli.name()];
  for (const word of argv) {
    if (word.startsWith('-')) return;
    const subs = cmd.commands.filter((c) => c.name() !== 'help');
    if (subs.length === 0 || word === 'help') return;  // a leaf, or commander's own `help [command]`
    const next = cmd.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (!next) {
      const known = subs.map((c) => c.name()).join(', ');
      throw new UserError(`unknown command '${[...path.slice(1), word].join(' ')}'; ${path.join(' ')} commands: ${known} (add --help for usage)`);
    }
    cmd = next;
    path.push(word);
  }
}

/** Run the CLI on `argv` (without node and the script); resolves to the process exit status. */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  try {
    const cli = program(io);
    checkCommandPath(cli, argv);
    await cli.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (e) {
    // commander has already printed its own message (bad flag, --help, --version).
    if (e instanceof CommanderError) return e.exitCode;
    return reportError(e, io);
  }
}
