// `magicdec bench` (and `npm run bench`, its short default grid): autoregressive vs self-speculative decoding
// over a grid of models x contexts x batch sizes x draft budgets x gammas, all measured in one run on this
// machine. A STREAM triad (bench/triad.ts) measured first, with the same OpenMP threads, is the yardstick for
// achieved bandwidth. Each (model, context) case runs in its own process (bench/case.ts) so that its peak
// RSS can be set against its weights + KV cache. Writes <out>/<date>.json and .svg (bench/plot.ts) and prints
// tables. Models are presets of `magicdec model random` (docs/BENCH.md; `local` is synthetic, and says so
// wherever it appears) or Hugging Face model directories; acceptance is always reported as measured.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_GAMMA_MAX } from '../codegen/limits.ts';
import type { ModulePlan } from '../codegen/plan.ts';
import type { ModelConfig } from '../dsl/models.ts';
import { loadDeployment } from '../lib/deployment.ts';
import { UserError } from '../lib/errors.ts';
import { fmt } from '../lib/format.ts';
import type { Io } from '../lib/io.ts';
import { readModelDir } from '../lib/model-dir.ts';
import { buildCpuModule, cpuDeploymentFor } from '../lib/module.ts';
import { progress } from '../lib/progress.ts';
import { LOCAL_ATTENTION, RANDOM_PRESETS, writeRandomModel, type RandomPreset } from '../model/random.ts';
import { interleaved, specPositions, weightBytes, type CaseInput, type CaseResult } from './case.ts';
import { batchMetrics, type PointMetrics, type TimeShares } from './metrics.ts';
import { chartSpec, modelLabel, renderSvg } from './plot.ts';
import { kvBytesPerPosition } from './traffic.ts';
import { buildTriad, defaultTriadArrayBytes, DEFAULT_TRIAD_REPS, runTriad, type TriadResult } from './triad.ts';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SEED = 1;
/** The bucket prefill chunks are sized for: a chunk is 64 * (gamma + 1) rows. */
const PREFILL_BUCKET = 64;
/** Weights + KV cache above this share of the machine's memory: the point is skipped, and says why. */
export const MEMORY_SHARE = 0.6;

export interface BenchOptions {
  /** Presets of `magicdec model random` or Hugging Face model directories. */
  readonly models: readonly string[];
  readonly batches: readonly number[];
  readonly contexts: readonly number[];
  readonly gammas: readonly (number | 'auto')[];
  /** Draft budgets (sink + window positions); default: the default deployment's. */
  readonly budgets?: readonly number[];
  /** Tokens per sequence each (budget, gamma) point decodes. */
  readonly decodeTokens: number;
  readonly out: string;
  readonly cache?: string;
}

export const DEFAULT_BENCH = {
  models: ['mha', 'local'],
  batches: [1, 8],
  contexts: [1024, 4096],
  gammas: [3, 'auto'],
  decodeTokens: 32,
  out: join(ROOT, 'bench/results'),
} as const satisfies Omit<BenchOptions, 'budgets'>;

interface BenchModel {
  readonly name: string;
  readonly dir: string;
  readonly synthetic: boolean;
  readonly preset?: RandomPreset;
  readonly config: ModelConfig;
  readonly bos?: number;
  readonly eos?: number;
}

export interface Skipped {
  readonly model: string;
  readonly context: number;
  readonly batch?: number;
  readonly reason: string;
}

/** A preset's model under out/bench/models/<preset>, rewritten when its recipe (marker file) changed. */
/** What a preset's benchmark model is made from: the writer's options (the JSON records it). */
function presetRecipe(p: RandomPreset): Record<string, unknown> {
  return { preset: p, seed: SEED, dtype: 'bf16', ...(p === 'local' ? { local: LOCAL_ATTENTION } : {}) };
}

export function presetModel(p: RandomPreset, io: Io): string {
  const dir = join(ROOT, 'out/bench/models', p);
  const marker = join(dir, 'bench-model.json');
  const recipe = JSON.stringify(presetRecipe(p));
  if (!existsSync(marker) || readFileSync(marker, 'utf8') !== recipe) {
    io.stderr.write(`writing the random ${p} model (seed ${SEED}, bf16${p === 'local' ? ', synthetic attention: docs/BENCH.md' : ''}) to ${relative(process.cwd(), dir)}\n`);
    writeRandomModel({ preset: p, seed: SEED, dtype: 'bf16', out: dir });
    writeFileSync(marker, recipe);
  }
  return dir;
}

function tokenId(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : Array.isArray(v) && typeof v[0] === 'number' ? v[0] : undefined;
}

function resolveModel(name: string, io: Io): BenchModel {
  const preset = (RANDOM_PRESETS as readonly string[]).includes(name) ? (name as RandomPreset) : undefined;
  if (!preset && !existsSync(name)) throw new UserError(`--models: '${name}' is neither a preset (${RANDOM_PRESETS.join(', ')}) nor a model directory`);
  const dir = preset ? presetModel(preset, io) : resolve(name);
  const config = readModelDir(dir);
  const hf = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const bos = tokenId(hf.bos_token_id);
  const eos = tokenId(hf.eos_token_id);
  return {
    name: preset ?? basename(dir),
    dir,
    synthetic: preset === 'local',
    ...(preset ? { preset } : {}),
    config,
    ...(bos !== undefined && bos < config.vocabSize ? { bos } : {}),
    ...(eos !== undefined && eos < config.vocabSize ? { eos } : {}),
  };
}

function runChild(input: CaseInput, onProgress: (text: string) => void): Promise<CaseResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/case.ts'), JSON.stringify(input)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    let result: CaseResult | undefined;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('progress ')) onProgress(line.slice(9));
        else if (line.startsWith('result ')) result = JSON.parse(line.slice(7)) as CaseResult;
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0 && result) resolvePromise(result);
      else reject(new UserError(`bench case ${input.model} at context ${input.context} failed (exit ${code ?? signal}); its error is above`));
    });
  });
}

function alignedTable(head: string[], rows: string[][], leftColumns: number): string {
  const all = [head, ...rows];
  const w = head.map((_, c) => Math.max(...all.map((r) => r[c].length)));
  return all.map((r) => r.map((x, c) => (c < leftColumns ? x.padEnd(w[c]) : x.padStart(w[c]))).join('  ')).join('\n') + '\n';
}

const pct = (x: number) => `${(100 * x).toFixed(0)}%`;

function throughputTable(points: readonly PointMetrics[]): string {
  const head = ['model', 'context', 'batch', 'budget', 'gamma', 'AR tok/s', 'spec tok/s', 'speedup', 'accept', 'a', 'tok/round', 'mean gamma', 'Td/Tar', 'Tv/Tar', 'model speedup', 'at a=0.8', 'same tokens'];
  const rows = points.map((p) => [
    modelLabel(p),
    String(p.context),
    String(p.batch),
    String(p.budget),
    String(p.gamma),
    fmt(p.ar.tokensPerS),
    fmt(p.spec.tokensPerS),
    `${p.spec.speedup.toFixed(2)}x`,
    p.spec.acceptance.toFixed(3),
    p.spec.perTokenAcceptance.toFixed(3),
    p.spec.tokensPerRound.toFixed(2),
    p.spec.meanGamma.toFixed(2),
    p.spec.draftOverAr.toFixed(3),
    p.spec.verifyOverAr.toFixed(3),
    `${p.spec.predictedSpeedup.toFixed(2)}x`,
    `${p.spec.predictedSpeedupAt08.toFixed(2)}x`,
    p.identical ? 'yes' : 'NO',
  ]);
  return alignedTable(head, rows, 5);
}

function bandwidthTable(points: readonly PointMetrics[]): string {
  const head = ['model', 'context', 'batch', 'budget', 'gamma', 'AR step', 'AR attn', 'AR GEMM', 'draft step', 'draft attn', 'draft GEMM', 'verify step', 'verify attn', 'verify GEMM', 'AR MB/step', 'AR KV share'];
  const rows = points.map((p) => [
    modelLabel(p),
    String(p.context),
    String(p.batch),
    String(p.budget),
    String(p.gamma),
    pct(p.ar.traffic.step.ofTriad),
    pct(p.ar.traffic.attention.ofTriad),
    pct(p.ar.traffic.gemm.ofTriad),
    pct(p.spec.draft.step.ofTriad),
    pct(p.spec.draft.attention.ofTriad),
    pct(p.spec.draft.gemm.ofTriad),
    pct(p.spec.verify.step.ofTriad),
    pct(p.spec.verify.attention.ofTriad),
    pct(p.spec.verify.gemm.ofTriad),
    (p.ar.traffic.step.bytesPerStep.total / 1e6).toFixed(1),
    pct(p.ar.traffic.step.bytesPerStep.kv / p.ar.traffic.step.bytesPerStep.total),
  ]);
  return alignedTable(head, rows, 5);
}

function timeTable(points: readonly PointMetrics[]): string {
  const head = ['model', 'context', 'batch', 'budget', 'gamma', 'step', 'ms/step', 'attention', 'GEMM', 'norm+rope', 'other', 'host'];
  const row = (p: PointMetrics, step: string, stepS: number, t: TimeShares, first: boolean) => [
    first ? modelLabel(p) : '',
    first ? String(p.context) : '',
    first ? String(p.batch) : '',
    step === 'AR' ? '' : String(p.budget),
    step === 'AR' ? '' : String(p.gamma),
    step,
    fmt(1000 * stepS),
    pct(t.attention),
    pct(t.gemm),
    pct(t.normRope),
    pct(t.other),
    pct(t.host),
  ];
  const rows: string[][] = [];
  let last = '';
  for (const p of points) {
    const key = `${p.model}/${p.context}/${p.batch}`;
    if (key !== last) rows.push(row(p, 'AR', p.ar.stepS, p.ar.traffic.time, true));
    last = key;
    rows.push(row(p, 'draft', p.spec.draftStepS, p.spec.draft.time, false));
    rows.push(row(p, 'verify', p.spec.verifyStepS, p.spec.verify.time, false));
  }
  return alignedTable(head, rows, 6);
}

function memoryTable(cases: readonly CaseResult[], models: ReadonlyMap<string, BenchModel>): string {
  const mb = (b: number) => (b / 2 ** 20).toFixed(0);
  const head = ['model', 'context', 'peak RSS MB', 'weights MB', 'KV MB (largest batch)', 'weights+KV MB', 'RSS at start MB'];
  const rows = cases.map((c) => [
    modelLabel({ model: c.model, synthetic: models.get(c.model)!.synthetic }),
    String(c.context),
    mb(c.memory.peakRss),
    mb(c.memory.weightBytes),
    mb(c.memory.kvBytes),
    mb(c.memory.weightBytes + c.memory.kvBytes),
    mb(c.memory.startRss),
  ]);
  return alignedTable(head, rows, 2);
}

export interface BenchReport {
  readonly jsonPath: string;
  readonly svgPath: string;
  readonly points: PointMetrics[];
  readonly skipped: Skipped[];
}

export async function runBench(o: BenchOptions, io: Io): Promise<BenchReport> {
  const t0 = performance.now();
  const models = o.models.map((m) => resolveModel(m, io));
  const names = new Map<string, BenchModel>();
  for (const m of models) {
    if (names.has(m.name)) throw new UserError(`--models: '${m.name}' is named twice`);
    names.set(m.name, m);
  }
  const fixed = o.gammas.filter((g): g is number => g !== 'auto');
  const moduleGamma = Math.max(...fixed, o.gammas.includes('auto') ? DEFAULT_GAMMA_MAX : 0);
  const buckets = [...new Set([1, ...o.batches, PREFILL_BUCKET])].sort((a, b) => a - b);
  const { adaptiveGamma: _auto, ...spec } = await loadDeployment();
  const base = { ...spec, gamma: moduleGamma };
  const pageSize = base.shapes.pageSize;
  const maxPoints = (o.budgets?.length ?? 1) * o.gammas.length;
  const contexts = [...new Set(o.contexts)].sort((a, b) => a - b);
  const batches = [...new Set(o.batches)].sort((a, b) => a - b);

  const skipped: Skipped[] = [];
  const inputs: CaseInput[] = [];
  const plans = new Map<string, { plan: ModulePlan; sink: number }>();
  for (const m of models) {
    const fits = Math.floor(m.config.maxPositionEmbeddings / pageSize) * pageSize;
    const need = (ctx: number) => Math.ceil(specPositions(ctx, maxPoints, o.decodeTokens, moduleGamma) / pageSize) * pageSize;
    const ok = contexts.filter((ctx) => {
      if (need(ctx) <= fits) return true;
      skipped.push({ model: m.name, context: ctx, reason: `needs ${need(ctx)} positions, more than the model's max_position_embeddings ${m.config.maxPositionEmbeddings}` });
      return false;
    });
    if (ok.length === 0) continue;
    const dep = cpuDeploymentFor(base, m.config, { batch: buckets, maxSeq: need(ok[ok.length - 1]) });
    const built = await buildCpuModule(dep, io, o.cache);
    const params = new Map(built.plan.passes.draft.params.map((p) => [p.key, p.value]));
    const sink = params.get('kv_sink');
    const window = params.get('kv_window');
    if (sink === undefined || window === undefined) throw new UserError('the default deployment\'s draft has no kv_sink / kv_window params: --budget cannot be applied');
    const budgets = o.budgets ?? [sink + window];
    for (const b of budgets) if (b <= sink) throw new UserError(`--budget ${b}: a draft budget is sink + window and must exceed the sink (${sink})`);
    plans.set(m.name, { plan: built.plan, sink });
    const segments = budgets.flatMap((budget) => o.gammas.map((gamma) => ({ gamma, budget, draftParams: { kv_window: budget - sink } })));
    const perPosition = kvBytesPerPosition(built.plan);
    const weights = weightBytes(m.dir);
    for (const context of ok) {
      const fitting = batches.filter((batch) => {
        const kv = Math.ceil(specPositions(context, segments.length, o.decodeTokens, moduleGamma) / pageSize) * pageSize * batch * perPosition;
        if (weights + kv <= MEMORY_SHARE * totalmem()) return true;
        skipped.push({ model: m.name, context, batch, reason: `weights + KV cache ${fmt((weights + kv) / 2 ** 30)} GiB exceed ${MEMORY_SHARE * 100}% of this machine's ${fmt(totalmem() / 2 ** 30)} GiB` });
        return false;
      });
      if (fitting.length === 0) continue;
      inputs.push({
        model: m.name,
        modelDir: m.dir,
        library: built.library,
        context,
        batches: fitting,
        segments,
        decodeTokens: o.decodeTokens,
        moduleGamma,
        prefillChunk: PREFILL_BUCKET * (moduleGamma + 1),
        pageSize,
        vocab: m.config.vocabSize,
        ...(m.bos !== undefined ? { bos: m.bos } : {}),
        ...(m.eos !== undefined ? { eos: m.eos } : {}),
        kvBytesPerPosition: perPosition,
      });
    }
  }
  for (const s of skipped) io.stderr.write(`skipped ${s.model} at context ${s.context}${s.batch !== undefined ? `, batch ${s.batch}` : ''}: ${s.reason}\n`);
  if (inputs.length === 0) throw new UserError('nothing to measure: every point of the grid was skipped');

  const triadArrayBytes = defaultTriadArrayBytes();
  io.stderr.write(`STREAM triad: 3 arrays of ${fmt(triadArrayBytes / 2 ** 20)} MiB, best of ${DEFAULT_TRIAD_REPS}\n`);
  const triad: TriadResult = runTriad(buildTriad(), triadArrayBytes, DEFAULT_TRIAD_REPS);
  io.stderr.write(`    ${fmt(triad.gbPerS)} GB/s with ${triad.threads} OpenMP thread(s)\n`);

  // Per batch: the prefill, every segment (bench/case.ts, interleaved), the AR engine.
  const units = inputs.reduce((s, c) => s + c.batches.length * (interleaved(c.segments).length + 2), 0);
  const bar = progress(io, 'bench');
  let done = 0;
  const cases: CaseResult[] = [];
  try {
    for (const input of inputs) {
      cases.push(await runChild(input, (text) => bar.update(++done, units, text)));
    }
  } finally {
    bar.stop();
  }

  const points = cases.flatMap((c) => {
    const m = names.get(c.model)!;
    const { plan, sink } = plans.get(c.model)!;
    return c.batches.flatMap((b) => batchMetrics(plan, m, c.context, b, sink, triad.gbPerS));
  });

  const date = new Date().toISOString().slice(0, 10);
  mkdirSync(o.out, { recursive: true });
  const jsonPath = join(o.out, `${date}.json`);
  const svgPath = join(o.out, `${date}.svg`);
  const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryBytes: totalmem(), node: process.version };
  const elapsedS = (performance.now() - t0) / 1000;
  // Paths relative to the checkout: the results say nothing of the machine's directory layout.
  const rel = (p: string) => relative(ROOT, resolve(p)) || '.';
  const report = {
    date,
    machine,
    flags: { ...o, out: rel(o.out), ...(o.cache ? { cache: rel(o.cache) } : {}) },
    deployment: 'default passes (dsl/default.ts) on the cpu, bf16; draft sink + window, greedy verification',
    moduleGamma,
    buckets,
    triad,
    models: models.map((m) => ({ name: m.name, label: modelLabel({ model: m.name, synthetic: m.synthetic }), synthetic: m.synthetic, source: m.preset ? `preset ${m.preset}, seed ${SEED}, bf16 (${rel(m.dir)})` : rel(m.dir), ...(m.preset ? { recipe: presetRecipe(m.preset) } : {}), config: m.config })),
    points,
    cases,
    skipped,
    elapsedS,
  };
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  const title = `magicdec self-speculative decoding, random-weight models${models.some((m) => m.synthetic) ? ' (local: synthetic attention)' : ''}, CPU (${machine.cores} cores)`;
  writeFileSync(svgPath, await renderSvg(chartSpec(points, title)));

  io.stdout.write(throughputTable(points));
  io.stdout.write(
    `\nTd/Tar, Tv/Tar: one draft step / one verification pass over one AR step. model speedup: the cost model's, (1 - a^(gamma+1)) / (1 - a)\n` +
      `/ (mean gamma * Td/Tar + Tv/Tar), with the per-token acceptance a that gives the measured acceptance (accepted / drafted); 'at a=0.8'\n` +
      `the same with a = 0.8. Acceptance as measured${models.some((m) => m.synthetic) ? '; local is a synthetic model (docs/BENCH.md)' : ''}.\n` +
      `Each (budget, gamma) point decodes ${o.decodeTokens} tokens per sequence after the ones before it, on the same prefilled batch.\n\n`,
  );
  io.stdout.write(`Achieved bandwidth as a share of the STREAM triad (${fmt(triad.gbPerS)} GB/s, ${triad.threads} thread(s), this run): whole steps (weights + KV read, bench/traffic.ts),\nattention kernels (KV bytes over their time) and GEMMs (weight bytes over their time):\n`);
  io.stdout.write(bandwidthTable(points));
  io.stdout.write(`\nWhere each step's time goes (module kernels by class, timed by the runtime; host = the rest):\n`);
  io.stdout.write(timeTable(points));
  io.stdout.write(`\nMemory per case (its own process, Node included):\n`);
  io.stdout.write(memoryTable(cases, names));
  io.stdout.write(`wrote ${relative(process.cwd(), jsonPath)} and ${relative(process.cwd(), svgPath)} in ${elapsedS.toFixed(0)} s\n`);
  const bad = points.find((p) => !p.identical);
  if (bad) {
    const c = cases.find((x) => x.model === bad.model && x.context === bad.context)!.batches.find((b) => b.batch === bad.batch)!;
    throw new UserError(`speculative tokens differ from autoregressive tokens (${bad.model}, context ${bad.context}, batch ${bad.batch}: ${c.firstDifference}): the runtime is not exact`);
  }
  return { jsonPath, svgPath, points, skipped };
}
