// `magicdec demo` (what `npm start` runs): emit the default deployment's sm_90 kernels, then two cases, each
// decoded autoregressively and speculatively (lib/decode.ts, decodeBatch) with a check that the tokens are
// identical and a short table:
//   1. short context, where speculation does not pay on a CPU: the tiny CPU module and a seeded random tiny
//      model, a batch of prompts of different lengths;
//   2. long context, MagicDec's regime: the SYNTHETIC `local` preset (model/random.ts, docs/BENCH.md, "The
//      local preset"), the default passes compiled for it (lib/module.ts), 8 prompts of 4096 tokens.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { models } from '../dsl/models.ts';
import { ENGLISH_CORPUS } from '../model/corpus.ts';
import { LOCAL_ATTENTION, resolveRandomConfig, writeRandomModel } from '../model/random.ts';
import { buildCpuModule, cpuDeploymentFor } from '../lib/module.ts';
import { benchPrompts } from '../bench/case.ts';
import { kvBytesPerPosition, weightBytesPerStep } from '../bench/traffic.ts';
import type { ModulePlan } from '../codegen/plan.ts';
import { loadTokenizer } from '../model/tokenizer.ts';
import { applyOverrides } from './overrides.ts';
import { decodeBatch, kvPagesFor, type DecodeRun } from '../lib/decode.ts';
import { fmt } from '../lib/format.ts';
import { UserError } from '../lib/errors.ts';
import { generate, summary } from './generate.ts';
import { tinyCpuDeployment } from './generated-modules.ts';
import type { Io } from '../lib/io.ts';
import { readModelDir } from '../lib/model-dir.ts';
import { loadDeployment } from '../lib/deployment.ts';

export const DEMO_SEED = 1;
/** Prompt lengths in tokens: from well inside the draft's 4 + 508 window (acceptance 1) to several times it. */
export const DEMO_PROMPT_LENGTHS = [12, 40, 110, 260, 500, 900, 1500, 2400] as const;
export const DEMO_MAX_TOKENS = 64;

/** The long case: LONG_BATCH prompts of LONG_CONTEXT tokens (BOS + seeded random tokens), LONG_MAX_TOKENS new tokens each. */
export const LONG_CONTEXT = 4096;
export const LONG_BATCH = 8;
export const LONG_MAX_TOKENS = 64;
/** Batch bucket of the long case's prefill chunks (64 * (gamma + 1) rows), as in the benchmark (bench/grid.ts). */
const PREFILL_BUCKET = 64;

export interface DemoFlags {
  out: string;
  cache?: string;
  /** Hidden (tests): the long case's prompt length, at most LONG_CONTEXT; the module is the same either way. */
  longContext?: string;
}

export interface DemoCase {
  readonly ar: DecodeRun;
  readonly spec: DecodeRun;
  readonly modelDir: string;
  readonly library: string;
}

export interface DemoResult extends DemoCase {
  readonly long: DemoCase & { readonly context: number };
}

/** The tiny model under `dir`, written (seeded, fp32 like the module) unless a tiny model is already there. */
function ensureTinyModel(dir: string, io: Io): void {
  if (existsSync(join(dir, 'config.json'))) {
    const c = readModelDir(dir);
    const t = models.tiny;
    if (c.hiddenSize === t.hiddenSize && c.numLayers === t.numLayers && c.vocabSize === t.vocabSize && c.numKvHeads === t.numKvHeads) return;
    throw new UserError(`${dir} holds a model that is not the tiny preset ('${c.name}'); remove it or pass another --out`);
  }
  io.stderr.write(`writing the random tiny model (seed ${DEMO_SEED}) to ${dir}\n`);
  writeRandomModel({ preset: 'tiny', seed: DEMO_SEED, dtype: 'fp32', out: dir });
}

/** What the demo's local model is made from; recorded next to it, so that a changed recipe rewrites it. */
const LOCAL_RECIPE = JSON.stringify({ preset: 'local', seed: DEMO_SEED, dtype: 'bf16', local: LOCAL_ATTENTION });
const LOCAL_MARKER = 'demo-model.json';

/**
 * The SYNTHETIC local model under `dir`, written (seeded, bf16 as in the benchmark) unless the demo's local
 * model is already there; a directory holding a model of another shape is refused, as for the tiny model.
 */
function ensureLocalModel(dir: string, io: Io): void {
  if (existsSync(join(dir, 'config.json'))) {
    const c = readModelDir(dir);
    const l = resolveRandomConfig('local');
    const same = c.architecture === l.architecture && c.hiddenSize === l.hiddenSize && c.numLayers === l.numLayers && c.vocabSize === l.vocabSize && c.numKvHeads === l.numKvHeads;
    if (!same) throw new UserError(`${dir} holds a model that is not the local preset ('${c.name}'); remove it or pass another --out`);
    const marker = join(dir, LOCAL_MARKER);
    if (existsSync(marker) && readFileSync(marker, 'utf8') === LOCAL_RECIPE) return;
  }
  io.stderr.write(`writing the SYNTHETIC random local model (seed ${DEMO_SEED}, bf16; how it is built: docs/BENCH.md) to ${dir}\n`);
  writeRandomModel({ preset: 'local', seed: DEMO_SEED, dtype: 'bf16', out: dir });
  writeFileSync(join(dir, LOCAL_MARKER), LOCAL_RECIPE);
}

/** --long-context: a whole number of tokens in 2..LONG_CONTEXT. */
export function parseLongContext(v: string | undefined): number {
  if (v === undefined) return LONG_CONTEXT;
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!(n >= 2 && n <= LONG_CONTEXT)) throw new UserError(`--long-context: expected a whole number of tokens from 2 to ${LONG_CONTEXT}, got '${v}'`);
  return n;
}

/** One draft step and one verification pass over one AR step, from the two runs' measured times. */
export function stepRatios(ar: DecodeRun, spec: DecodeRun): { draft: number; verify: number } {
  const arStep = ar.summary.decodeS / ar.summary.steps;
  const rounds = spec.summary.steps;
  return { draft: spec.summary.draftS / (rounds * spec.summary.meanGamma) / arStep, verify: spec.summary.verifyS / rounds / arStep };
}

/** Share of the bytes one AR step over `contexts` (one per sequence) reads that is KV cache (bench/traffic.ts). */
export function kvShare(plan: ModulePlan, contexts: readonly number[]): { bytes: number; kv: number } {
  const kv = contexts.reduce((s, n) => s + n, 0) * kvBytesPerPosition(plan);
  const bytes = weightBytesPerStep(plan, contexts.length) + kv;
  return { bytes, kv: kv / bytes };
}

/** Prompts cut from the built-in English text at different offsets, BOS first. */
async function demoPrompts(modelDir: string): Promise<number[][]> {
  const tok = await loadTokenizer(modelDir);
  const longest = Math.max(...DEMO_PROMPT_LENGTHS);
  let ids = tok.encode(ENGLISH_CORPUS);
  while (ids.length < longest * 2) ids = ids.concat(ids);
  return DEMO_PROMPT_LENGTHS.map((n, k) => {
    const start = (k * 97) % (ids.length - n);
    return [...(tok.bos !== undefined ? [tok.bos] : []), ...ids.slice(start, start + n - 1)];
  });
}

/** The first (request, token) where two runs' outputs differ, described; undefined when they are identical. */
export function firstDifference(ar: readonly (readonly number[])[], spec: readonly (readonly number[])[]): string | undefined {
  if (ar.length !== spec.length) return `${ar.length} autoregressive outputs, ${spec.length} speculative`;
  for (let i = 0; i < ar.length; i++) {
    for (let j = 0; j < Math.max(ar[i].length, spec[i].length); j++) {
      if (ar[i][j] !== spec[i][j]) return `prompt ${i}, token ${j}: autoregressive ${ar[i][j] ?? '(none)'}, speculative ${spec[i][j] ?? '(none)'}`;
    }
  }
  return undefined;
}

export function demoTable(ar: DecodeRun, spec: DecodeRun): string {
  const rows = [
    ['mode', 'decode tokens/s', 'acceptance', 'tokens/round', 'speedup'],
    ['autoregressive', fmt(ar.summary.tokensPerS), '-', '1', '1.00x'],
    [
      'speculative',
      fmt(spec.summary.tokensPerS),
      fmt(spec.summary.acceptance),
      fmt(spec.summary.tokensPerRound),
      `${(spec.summary.tokensPerS / ar.summary.tokensPerS).toFixed(2)}x`,
    ],
  ];
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ')).join('\n') + '\n';
}

const mb = (b: number) => (b / 2 ** 20).toFixed(1);
const pct = (x: number) => `${(100 * x).toFixed(0)}%`;

export async function demoCommand(flags: DemoFlags, io: Io): Promise<DemoResult> {
  const longContext = parseLongContext(flags.longContext);
  const base = await loadDeployment();
  io.stderr.write('emitting the default deployment for sm_90\n');
  const cuda = await generate({ deployment: applyOverrides(base, { target: 'sm_90' }), out: join(flags.out, 'default-sm_90') }, io);
  io.stdout.write(summary(cuda));
  const cpuDep = tinyCpuDeployment(base);
  const cpu = await generate({ deployment: cpuDep, out: join(flags.out, 'tiny-cpu'), build: true, cacheDir: flags.cache }, io);
  io.stdout.write(summary(cpu));

  // Case 1: the tiny model at short contexts.
  const modelDir = join(flags.out, 'tiny-model');
  ensureTinyModel(modelDir, io);
  const prompts = await demoPrompts(modelDir);
  const batch = prompts.length;
  const positions = Math.max(...prompts.map((p) => p.length)) + DEMO_MAX_TOKENS + cpuDep.gamma;
  const opts = { maxBatch: batch, kvPages: kvPagesFor(batch, positions, cpuDep.shapes.pageSize) };
  const request = { maxTokens: DEMO_MAX_TOKENS, ignoreEos: true };
  const library = cpu.built!.library;
  const lengths = prompts.map((p) => p.length).join(', ');
  io.stderr.write(`case 1: decoding ${batch} prompts (${lengths} tokens) autoregressively\n`);
  const ar = await decodeBatch(modelDir, library, { ...opts, mode: 'ar' }, prompts, request);
  io.stderr.write(`case 1: decoding them speculatively (gamma ${cpuDep.gamma}, draft: sink 4 + window 508)\n`);
  const spec = await decodeBatch(modelDir, library, { ...opts, mode: 'spec' }, prompts, request);

  const diff = firstDifference(ar.generations.map((g) => g.tokens), spec.generations.map((g) => g.tokens));
  if (diff) throw new UserError(`case 1: speculative output differs from autoregressive output (${diff}): the runtime is not exact`);
  io.stdout.write(
    `\ncase 1, short context: random tiny model, ${batch} prompts of ${lengths} tokens, ${DEMO_MAX_TOKENS} new tokens each: speculative tokens == autoregressive tokens\n`,
  );
  io.stdout.write(demoTable(ar, spec));

  // Case 2: the SYNTHETIC local model at long context, the default passes compiled for it.
  const longDir = join(flags.out, 'local-model');
  ensureLocalModel(longDir, io);
  const localConfig = readModelDir(longDir);
  const gamma = base.gamma;
  const { pageSize } = base.shapes;
  // maxSeq for the full LONG_CONTEXT whatever --long-context says: the tests compile the module npm start runs.
  const maxSeq = Math.ceil((LONG_CONTEXT + LONG_MAX_TOKENS + gamma) / pageSize) * pageSize;
  const longDep = cpuDeploymentFor(base, localConfig, { batch: [LONG_BATCH, PREFILL_BUCKET], maxSeq });
  const mod = await buildCpuModule(longDep, io, flags.cache);
  io.stdout.write(`\n${mod.plan.name}: the default passes on the local model for the cpu (${longDep.dtype}, batch buckets ${longDep.shapes.batch.join(', ')})\n`);
  io.stdout.write(`library: ${displayPath(mod.library)} (${mod.cached ? 'cached, not recompiled' : 'compiled'})\n`);
  const tok = await loadTokenizer(longDir);
  const longPrompts = benchPrompts({ context: longContext, vocab: localConfig.vocabSize, bos: tok.bos, eos: tok.eos }, LONG_BATCH);
  const longOpts = {
    maxBatch: LONG_BATCH,
    kvPages: kvPagesFor(LONG_BATCH, longContext + LONG_MAX_TOKENS + gamma, pageSize),
    prefillChunk: PREFILL_BUCKET * (gamma + 1),
  };
  const longRequest = { maxTokens: LONG_MAX_TOKENS, ignoreEos: true };
  io.stderr.write(`case 2: prefilling and decoding ${LONG_BATCH} prompts of ${longContext} tokens autoregressively (SYNTHETIC local model)\n`);
  const longAr = await decodeBatch(longDir, mod.library, { ...longOpts, mode: 'ar' }, longPrompts, longRequest);
  io.stderr.write(`case 2: prefilling and decoding them speculatively (gamma ${gamma}, draft: sink 4 + window 508)\n`);
  const longSpec = await decodeBatch(longDir, mod.library, { ...longOpts, mode: 'spec' }, longPrompts, longRequest);
  const longDiff = firstDifference(longAr.generations.map((g) => g.tokens), longSpec.generations.map((g) => g.tokens));
  if (longDiff) throw new UserError(`case 2: speculative output differs from autoregressive output (${longDiff}): the runtime is not exact`);
  io.stdout.write(
    `case 2, long context: SYNTHETIC local model (random weights with built-in sink + recent-position attention, docs/BENCH.md; not a trained model), ` +
      `${LONG_BATCH} prompts of ${longContext} tokens, ${LONG_MAX_TOKENS} new tokens each: speculative tokens == autoregressive tokens\n`,
  );
  io.stdout.write(demoTable(longAr, longSpec));

  const short = { r: stepRatios(ar, spec), t: kvShare(cpu.plan, prompts.map((p) => p.length)) };
  const long = { r: stepRatios(longAr, longSpec), t: kvShare(mod.plan, longPrompts.map((p) => p.length)) };
  const longSpeedup = longSpec.summary.tokensPerS / longAr.summary.tokensPerS;
  io.stdout.write(
    `\nWhy: speculation pays where a decode step is bound by reading memory, most of it KV cache: a draft step that reads 512 positions per sequence is then cheap, ` +
      `and verifying ${gamma + 1} rows costs about one step. Case 1's AR step reads only ${mb(short.t.bytes)} MB, so its time is arithmetic and per-step overhead: ` +
      `verifying ${gamma + 1} rows cost ${short.r.verify.toFixed(2)} AR steps and a draft step ${short.r.draft.toFixed(2)}, and speculation loses. ` +
      `Case 2's AR step reads ${mb(long.t.bytes)} MB, ${pct(long.t.kv)} of it KV cache: a draft step cost ${long.r.draft.toFixed(2)} AR steps and verification ${long.r.verify.toFixed(2)}, ` +
      (longSpeedup > 1
        ? 'so the accepted tokens pay for them. '
        : `but in this run speculation did not pay here either (${longSpeedup.toFixed(2)}x): timings vary on a busy machine, and \`npm run bench\` measures a grid. `) +
      `Acceptance is as measured; case 2's comes from a synthetic model and says nothing about a trained one.\n`,
  );
  return { ar, spec, modelDir, library, long: { ar: longAr, spec: longSpec, modelDir: longDir, library: mod.library, context: longContext } };
}

function displayPath(p: string): string {
  const rel = relative(process.cwd(), p);
  return rel && !rel.startsWith('..') ? rel : p;
}
