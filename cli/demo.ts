// `magicdec demo` (what `npm start` runs): emit the default deployment's sm_90 kernels, build the tiny CPU
// module and a seeded random tiny model, then decode a batch of prompts of different lengths both
// autoregressively and speculatively, check that the tokens are identical, and print a short table.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { models } from '../dsl/models.ts';
import { ENGLISH_CORPUS } from '../model/corpus.ts';
import { writeRandomModel } from '../model/random.ts';
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

export interface DemoFlags {
  out: string;
  cache?: string;
}

export interface DemoResult {
  readonly ar: DecodeRun;
  readonly spec: DecodeRun;
  readonly modelDir: string;
  readonly library: string;
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

export async function demoCommand(flags: DemoFlags, io: Io): Promise<DemoResult> {
  const base = await loadDeployment();
  io.stderr.write('emitting the default deployment for sm_90\n');
  const cuda = await generate({ deployment: applyOverrides(base, { target: 'sm_90' }), out: join(flags.out, 'default-sm_90') }, io);
  io.stdout.write(summary(cuda));
  const cpuDep = tinyCpuDeployment(base);
  const cpu = await generate({ deployment: cpuDep, out: join(flags.out, 'tiny-cpu'), build: true, cacheDir: flags.cache }, io);
  io.stdout.write(summary(cpu));

  const modelDir = join(flags.out, 'tiny-model');
  ensureTinyModel(modelDir, io);
  const prompts = await demoPrompts(modelDir);
  const batch = prompts.length;
  const positions = Math.max(...prompts.map((p) => p.length)) + DEMO_MAX_TOKENS + cpuDep.gamma;
  const opts = { maxBatch: batch, kvPages: kvPagesFor(batch, positions, cpuDep.shapes.pageSize) };
  const request = { maxTokens: DEMO_MAX_TOKENS, ignoreEos: true };
  const library = cpu.built!.library;
  const lengths = prompts.map((p) => p.length).join(', ');
  io.stderr.write(`decoding ${batch} prompts (${lengths} tokens) autoregressively\n`);
  const ar = await decodeBatch(modelDir, library, { ...opts, mode: 'ar' }, prompts, request);
  io.stderr.write(`decoding them speculatively (gamma ${cpuDep.gamma}, draft: sink 4 + window 508)\n`);
  const spec = await decodeBatch(modelDir, library, { ...opts, mode: 'spec' }, prompts, request);

  const diff = firstDifference(ar.generations.map((g) => g.tokens), spec.generations.map((g) => g.tokens));
  if (diff) throw new UserError(`speculative output differs from autoregressive output (${diff}): the runtime is not exact`);
  io.stdout.write(
    `${batch} prompts of ${lengths} tokens, ${DEMO_MAX_TOKENS} new tokens each: speculative tokens == autoregressive tokens\n`,
  );
  io.stdout.write(demoTable(ar, spec));
  return { ar, spec, modelDir, library };
}
