// `magicdec run --model DIR [--spec spec.ts] (--prompt TEXT | --prompt-tokens 1,2,3)... [--mode ar|spec]
// [--batch N] [--max-tokens N] [--gamma N|auto] [--temperature T] [--top-k K] [--top-p P] [--min-p P]
// [--seed S] [--draft-param key=value]... [--ignore-eos] [--cache DIR]`: compile (cached) the CPU module for the model, decode, print each
// output and the decode statistics.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { loadTokenizer, type LoadedTokenizer } from '../model/tokenizer.ts';
import { samplingProblem } from '../runtime/node/index.ts';
import { decodeBatch, kvPagesFor, type DecodeSummary } from '../lib/decode.ts';
import { fmt } from '../lib/format.ts';
import { readModelDir } from '../lib/model-dir.ts';
import { buildCpuModule, cpuDeploymentFor } from '../lib/module.ts';
import type { PassParam } from '../codegen/plan.ts';
import { UserError } from '../lib/errors.ts';
import type { Io } from '../lib/io.ts';
import { parseGamma, type Gamma } from './overrides.ts';
import { loadDeployment } from '../lib/deployment.ts';

export interface RunFlags {
  model: string;
  spec?: string;
  prompt?: string[];
  promptTokens?: number[][];
  mode: 'ar' | 'spec';
  batch?: number;
  maxTokens: number;
  gamma?: Gamma;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  seed?: number;
  draftParam?: [string, number][];
  ignoreEos?: boolean;
  cache?: string;
}

export const RUN_MODES = ['ar', 'spec'] as const;
const MAX_RUN_BATCH = 4096;
const MAX_RUN_TOKENS = 1 << 20;

function positive(what: string, max: number): (text: string) => number {
  return (text) => {
    if (!/^\s*\d+\s*$/.test(text)) throw new InvalidArgumentError(`${what} must be a whole number, got '${text}'.`);
    const n = Number(text);
    if (n < 1 || n > max) throw new InvalidArgumentError(`${what} must be in 1..${max}, got ${n}.`);
    return n;
  };
}

/**
 * A sampling flag's value: a decimal number (`temperature`, `top-p`, `min-p`) or whole number (`top-k`,
 * `seed`) that the runtime's own check (samplingProblem) accepts for `key`.
 */
function samplingFlag(flag: string, key: 'temperature' | 'topK' | 'topP' | 'minP' | 'seed'): (text: string) => number {
  const whole = key === 'topK' || key === 'seed';
  return (text) => {
    const ok = whole ? /^\s*\d+\s*$/ : /^\s*[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i;
    if (!ok.test(text)) throw new InvalidArgumentError(`${flag} must be ${whole ? 'a whole number' : 'a number'}, got '${text}'.`);
    const problem = samplingProblem({ [key]: Number(text) });
    if (problem) throw new InvalidArgumentError(`${problem.replace(/^request: \S+/, flag)}.`);
    return Number(text);
  };
}

/** `--prompt-tokens 1,2,3`: one prompt of token ids; repeatable (commander passes the earlier ones). */
export function parsePromptTokens(text: string, earlier: number[][] = []): number[][] {
  const parts = text.split(',').map((s) => s.trim());
  if (parts.some((p) => !/^\d+$/.test(p))) throw new InvalidArgumentError(`expected comma-separated token ids (whole numbers), got '${text}'.`);
  return [...earlier, parts.map(Number)];
}

/** `--draft-param kv_window=16`: a draft-pass runtime param (its manifest key) and value; repeatable. */
export function parseDraftParam(text: string, earlier: [string, number][] = []): [string, number][] {
  const m = /^\s*([a-z][a-z0-9_]*)\s*=\s*([+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?)\s*$/i.exec(text);
  if (!m) throw new InvalidArgumentError(`expected <key>=<number>, e.g. kv_window=16, got '${text}'.`);
  return [...earlier, [m[1], Number(m[2])]];
}

/** Checks --draft-param keys and values against the module's draft-pass params (runtime ones only). */
function draftParamsFor(flags: RunFlags, params: readonly PassParam[]): [string, number][] {
  const given = flags.draftParam ?? [];
  for (const [key, value] of given) {
    const p = params.find((x) => x.key === key);
    if (!p) {
      const known = params.map((x) => x.key).join(', ') || 'none';
      throw new UserError(`--draft-param ${key}: the spec's draft pass has no runtime param '${key}' (it has: ${known})`);
    }
    if (p.ty === 'i32' && !(Number.isInteger(value) && Math.abs(value) <= 1 << 24)) throw new UserError(`--draft-param ${key}: ${value} must be an integer within ±2^24 (the param is an integer)`);
  }
  return given;
}

function collect(text: string, earlier: string[] = []): string[] {
  return [...earlier, text];
}

interface Prompt {
  readonly text?: string;
  readonly tokens: readonly number[];
}

/** Text prompts are tokenized without special tokens, with the model's BOS in front when it has one. */
function promptsOf(flags: RunFlags, tok: LoadedTokenizer | undefined, modelDir: string, vocab: number): Prompt[] {
  const texts = flags.prompt ?? [];
  const lists = flags.promptTokens ?? [];
  if (texts.length === 0 && lists.length === 0) throw new UserError('give a prompt: --prompt "text" or --prompt-tokens 1,2,3');
  if (texts.length > 0 && !tok) throw new UserError(`${modelDir}: no tokenizer.json, so --prompt cannot be tokenized (use --prompt-tokens)`);
  const prompts: Prompt[] = texts.map((text, i) => {
    const tokens = [...(tok!.bos !== undefined ? [tok!.bos] : []), ...tok!.encode(text)];
    if (tokens.length === 0) throw new UserError(`--prompt ${i + 1} is empty`);
    const bad = tokens.findIndex((t) => t >= vocab);
    if (bad >= 0) throw new UserError(`--prompt ${i + 1}: ${modelDir}/tokenizer.json gives token ${tokens[bad]}, outside the model's vocabulary [0, ${vocab}) (config.json vocab_size)`);
    return { text, tokens };
  });
  lists.forEach((tokens, i) => {
    const bad = tokens.findIndex((t) => t >= vocab);
    if (bad >= 0) throw new UserError(`--prompt-tokens ${i + 1}: token ${bad} is ${tokens[bad]}, outside the model's vocabulary [0, ${vocab})`);
    prompts.push({ tokens });
  });
  return prompts;
}

export interface RunResult {
  readonly outputs: { readonly prompt: readonly number[]; readonly tokens: readonly number[]; readonly text?: string; readonly reason: string; readonly seed: number }[];
  readonly summary: DecodeSummary;
  readonly module: string;
}

export async function runCommand(flags: RunFlags, io: Io): Promise<RunResult> {
  const model = readModelDir(flags.model);
  const tok = existsSync(join(flags.model, 'tokenizer.json')) ? await loadTokenizerOrFail(flags.model) : undefined;
  const prompts = promptsOf(flags, tok, flags.model, model.vocabSize);

  const base = await loadDeployment(flags.spec);
  const dep = cpuDeploymentFor(base, model);
  const largest = dep.shapes.batch[dep.shapes.batch.length - 1];
  // One prompt: --batch copies of it. Several: each once, --batch of them decoded together.
  const batch = flags.batch ?? (prompts.length === 1 ? 1 : Math.min(prompts.length, largest));
  if (batch > largest) throw new UserError(`--batch ${batch} exceeds the module's largest batch bucket ${largest} (spec shapes.batch)`);
  const requests = prompts.length === 1 ? Array.from({ length: batch }, () => prompts[0]) : prompts;
  const gamma: Gamma = flags.gamma ?? (dep.adaptiveGamma ? 'auto' : dep.gamma);
  const most = dep.adaptiveGamma ? `gammaMax ${dep.gamma}` : `gamma ${dep.gamma}`;
  if (gamma !== 'auto' && gamma > dep.gamma) throw new UserError(`--gamma ${gamma} exceeds the spec's ${most} (the module verifies at most gamma + 1 rows)`);
  // A speculative engine reserves the module's gamma past max tokens, whatever gamma it runs.
  const overshoot = flags.mode === 'spec' ? dep.gamma : 0;
  const longest = Math.max(...requests.map((p) => p.tokens.length));
  const positions = longest + flags.maxTokens + overshoot;
  if (positions > dep.shapes.maxSeq) {
    throw new UserError(
      `the prompt is ${longest} tokens; with --max-tokens ${flags.maxTokens}${overshoot ? ` and gamma ${overshoot}` : ''} it needs ` +
        `${positions} positions, more than the module's maxSeq ${dep.shapes.maxSeq}`,
    );
  }

  const temperature = flags.temperature ?? 0;
  const sampling = { temperature, topK: flags.topK ?? 0, topP: flags.topP ?? 1, minP: flags.minP ?? 0 };
  if (temperature > 0 && flags.mode === 'spec' && dep.verify.mode === 'greedy') {
    throw new UserError(
      `--temperature ${temperature} samples, but the spec's verifier '${dep.verify.name}' accepts only the target's argmax; ` +
        'give a spec with verify: sampleAndMatch (e.g. examples/sample-and-match.ts), or --mode ar',
    );
  }

  const built = await buildCpuModule(dep, io, flags.cache);
  io.stderr.write(`module ${built.plan.name} (${built.cached ? 'cached' : 'compiled'}): ${built.library}\n`);
  const draftParams = draftParamsFor(flags, built.plan.passes.draft.params);
  const { generations, summary } = await decodeBatch(
    flags.model,
    built.library,
    { mode: flags.mode, gamma, maxBatch: batch, kvPages: kvPagesFor(batch, positions, dep.shapes.pageSize) },
    requests.map((p) => p.tokens),
    // --seed S: request i is seeded S + i (copies of one prompt differ, and each replays alone with its seed).
    { maxTokens: flags.maxTokens, ignoreEos: flags.ignoreEos, sampling, ...(flags.seed === undefined ? {} : { seeds: requests.map((_, i) => flags.seed! + i) }) },
    (engine) => draftParams.forEach(([key, value]) => engine.setParam('draft', key, value)),
  );

  const outputs = generations.map((g, i) => ({
    prompt: requests[i].tokens,
    tokens: g.tokens,
    // Tokens past the tokenizer's vocabulary (a padded model vocabulary) show as <id N>, never an error.
    ...(tok ? { text: tok.decode(g.tokens, { unknownAsId: true }) } : {}),
    reason: g.reason,
    seed: g.seed,
  }));
  outputs.forEach((o, i) => {
    io.stdout.write(`[${i}] ${o.prompt.length} prompt tokens -> ${o.tokens.length} tokens (${o.reason})${temperature > 0 ? `, seed ${o.seed}` : ''}\n`);
    if (o.text !== undefined) io.stdout.write(`    text: ${JSON.stringify(o.text)}\n`);
    io.stdout.write(`    tokens: ${o.tokens.join(' ')}\n`);
  });
  io.stdout.write(formatSummary(summary, gamma, dep.gamma));
  return { outputs, summary, module: built.plan.name };
}

async function loadTokenizerOrFail(dir: string): Promise<LoadedTokenizer> {
  try {
    return await loadTokenizer(dir);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
}

/** The statistics lines `run` prints; `gammaMax` is the module's gamma (what 'auto' may choose up to). */
export function formatSummary(s: DecodeSummary, gamma: Gamma, gammaMax: number): string {
  const mode = gamma === 'auto' ? `gamma auto 1..${gammaMax}, mean ${fmt(s.meanGamma)}` : `gamma ${gamma}`;
  const head =
    `${s.mode === 'spec' ? `speculative (${mode})` : 'autoregressive'}, ${s.requests} request${s.requests === 1 ? '' : 's'}: ` +
    `${s.generated} tokens generated, ${s.decodeTokens} by decode in ${fmt(s.decodeS)} s = ${fmt(s.tokensPerS)} tokens/s\n`;
  const byGamma = Object.entries(s.gammaRounds).map(([g, n]) => `${n} at gamma ${g}`).join(', ');
  const rounds = gamma === 'auto' && byGamma ? `${s.steps} rounds (${byGamma})` : `${s.steps} rounds`;
  const spec = s.mode === 'spec' ? `acceptance ${fmt(s.acceptance)}, ${fmt(s.tokensPerRound)} tokens/round, ${rounds}; ` : `${s.steps} steps; `;
  const times =
    s.mode === 'spec'
      ? `time: prefill ${fmt(s.prefillS)} s, draft ${fmt(s.draftS)} s, verify ${fmt(s.verifyS)} s\n`
      : `time: prefill ${fmt(s.prefillS)} s, decode ${fmt(s.decodeS)} s\n`;
  return head + spec + times;
}

/** Adds `run` to the command tree. */
export function addRunCommand(cli: Command, io: Io): Command {
  return cli
    .command('run')
    .description("decode prompts with a model directory: compiles (cached) the CPU module of a spec's passes for the model, then prints outputs and statistics")
    .requiredOption('--model <dir>', 'Hugging Face model directory (config.json, *.safetensors, tokenizer.json); required')
    .option('--spec <file>', "spec whose passes, verifier and gamma to use (its model, arch and maxSeq are replaced); default: the built-in deployment")
    .option('--prompt <text>', 'a text prompt, tokenized with the model\'s tokenizer.json (BOS prepended); repeatable (default: none; at least one --prompt or --prompt-tokens)', collect)
    .option('--prompt-tokens <ids>', 'a prompt as comma-separated token ids; repeatable (default: none)', parsePromptTokens)
    .addOption(new Option('--mode <mode>', 'ar (autoregressive) or spec (self-speculative)').choices(RUN_MODES).default('spec'))
    .option('--batch <n>', 'sequences decoded together; with one prompt, that many copies of it (default: 1, or the number of prompts)', positive('batch', MAX_RUN_BATCH))
    .option('--max-tokens <n>', 'tokens to generate per request', positive('max-tokens', MAX_RUN_TOKENS), 32)
    .option('--gamma <n|auto>', "tokens drafted per round, at most the spec's gamma; auto: chosen per round from measured draft/verify times and acceptance (default: the spec's gamma)", parseGamma)
    .option('--temperature <t>', 'sample at this temperature (a finite number >= 0); 0 is greedy (default: 0)', samplingFlag('--temperature', 'temperature'))
    .option('--top-k <k>', 'sample among the k most likely tokens; 0 keeps all (default: 0)', samplingFlag('--top-k', 'topK'))
    .option('--top-p <p>', 'sample among the most likely tokens holding p of the probability, p in (0, 1] (default: 1)', samplingFlag('--top-p', 'topP'))
    .option('--min-p <p>', 'sample among tokens at least p times as likely as the most likely, p in [0, 1] (default: 0)', samplingFlag('--min-p', 'minP'))
    .option('--seed <n>', 'seed of request 0, an integer in [0, 2^53); request i gets seed + i (default: one drawn per request, printed)', samplingFlag('--seed', 'seed'))
    .option('--draft-param <key=value>', "set a runtime param of the spec's draft pass, by its manifest key (e.g. kv_window=16); repeatable (default: the spec's values)", parseDraftParam)
    .option('--ignore-eos', "do not stop at the model's EOS token")
    .option('--cache <dir>', 'build cache directory (default: .cache/modules in the magicdec checkout)')
    .action(async (flags: RunFlags) => {
      await runCommand(flags, io);
    });
}
