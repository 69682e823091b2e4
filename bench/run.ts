// `npm run bench`: autoregressive vs self-speculative decode throughput on random-weight models, all measured
// in one run on this machine. Each (model, context) case runs in its own process (bench/case.ts) so that
// its peak RSS can be set against its weights + KV cache. Writes bench/results/<date>.json and .svg and
// prints a summary table. A STREAM triad (bench/triad.ts) measured in the same run, with the same OpenMP
// threads, is the yardstick for the bandwidth AR and draft steps achieve (bytes counted by bench/traffic.ts).
//
// Random weights make the draft (sink 4 + window 508) disagree with the target more often than a trained
// model's would; acceptance is reported as measured. The wider-window rows are a labelled variant that
// shows the trade-off (higher acceptance, dearer draft), not a substitute.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { fmt } from '../lib/format.ts';
import { readModelDir } from '../lib/model-dir.ts';
import { buildCpuModule, cpuDeploymentFor } from '../lib/module.ts';
import { processIo } from '../lib/io.ts';
import { loadDeployment } from '../lib/deployment.ts';
import { writeRandomModel, type RandomPreset } from '../model/random.ts';
import type { ModulePlan } from '../codegen/plan.ts';
import { caseBandwidth, type CaseWithBandwidth } from './bandwidth.ts';
import type { CaseInput, CaseResult } from './case.ts';
import { chartSpec, renderSvg, type PlotPoint } from './plot.ts';
import { buildTriad, defaultTriadArrayBytes, DEFAULT_TRIAD_REPS, runTriad, type TriadResult } from './triad.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BATCH = 8;
/** Buckets: the benchmark's batch, 1 for stragglers, and 64 so a prefill chunk is 64 * (gamma + 1) rows. */
const BUCKETS = [1, BATCH, 64];
const SEED = 1;
const DEFAULT_WINDOW = 508;

interface BenchFlags {
  models: RandomPreset[];
  context: number;
  sweep: number[];
  sweepModel: RandomPreset;
  wideWindow: number;
  decodeTokens: number;
  out: string;
}

function list<T>(parse: (s: string) => T): (text: string) => T[] {
  return (text) => text.split(',').map((s) => parse(s.trim()));
}
function positive(s: string): number {
  if (!/^\d+$/.test(s) || Number(s) < 1) throw new InvalidArgumentError(`expected a positive whole number, got '${s}'.`);
  return Number(s);
}
function preset(s: string): RandomPreset {
  if (s !== 'tiny' && s !== 'small') throw new InvalidArgumentError(`models are tiny or small, got '${s}'.`);
  return s;
}

function parseFlags(argv: string[]): BenchFlags {
  const cmd = new Command('bench')
    .description('AR vs self-speculative decode throughput on random-weight models, batch 8')
    .option('--models <list>', 'models measured at --context', list(preset), ['tiny', 'small'])
    .option('--context <n>', 'prompt tokens per sequence for the main cases', positive, 8192)
    .option('--sweep <list>', 'further contexts for the sweep (the main context is reused)', list(positive), [1024, 2048, 4096])
    .option('--sweep-model <name>', 'model of the context sweep', preset, 'tiny')
    .option('--wide-window <n>', 'draft window of the labelled wider-draft variant on the sweep model (0: none)', (s) => (s === '0' ? 0 : positive(s)), 2044)
    .option('--decode-tokens <n>', 'tokens generated per sequence', positive, 96)
    .option('--out <dir>', 'where results go', join(ROOT, 'bench/results'))
    .parse(argv, { from: 'user' });
  return cmd.opts() as BenchFlags;
}

function ensureModel(p: RandomPreset): string {
  const dir = join(ROOT, 'out/bench/models', p);
  if (!existsSync(join(dir, 'config.json'))) {
    process.stderr.write(`writing random ${p} model to ${relative(ROOT, dir)}\n`);
    writeRandomModel({ preset: p, seed: SEED, dtype: 'bf16', out: dir });
  }
  return dir;
}

function runChild(input: CaseInput): CaseResult {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/case.ts'), JSON.stringify(input)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`bench case ${input.model} @ ${input.context} failed (exit ${r.status ?? r.signal})`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as CaseResult;
}

function windowLabel(w: number | undefined): string {
  return w === undefined ? `sink 4 + window ${DEFAULT_WINDOW}` : `sink 4 + window ${w} (wider draft)`;
}

function alignedTable(head: string[], rows: string[][], leftColumns: number): string {
  const all = [head, ...rows];
  const w = head.map((_, c) => Math.max(...all.map((r) => r[c].length)));
  return all.map((r) => r.map((x, c) => (c < leftColumns ? x.padEnd(w[c]) : x.padStart(w[c]))).join('  ')).join('\n') + '\n';
}

function table(results: readonly CaseResult[]): string {
  const mb = (b: number) => (b / 2 ** 20).toFixed(0);
  const head = ['model', 'context', 'draft', 'AR tok/s', 'spec tok/s', 'speedup', 'accept', 'tok/round', 'Td/Tar', 'Tv/Tar', 'model speedup', 'same tokens', 'peak RSS MB', 'weights+KV MB'];
  const rows = results.flatMap((r) =>
    r.spec.map((s) => [
      r.model,
      String(r.context),
      windowLabel(s.draftWindow).replace(' (wider draft)', '*'),
      fmt(r.ar.tokensPerS),
      fmt(s.summary.tokensPerS),
      `${s.speedup.toFixed(2)}x`,
      s.summary.acceptance.toFixed(3),
      s.summary.tokensPerRound.toFixed(2),
      s.draftOverAr.toFixed(3),
      s.verifyOverAr.toFixed(3),
      `${s.predictedSpeedup.toFixed(2)}x`,
      s.identical ? 'yes' : 'NO',
      mb(r.memory.peakRss),
      mb(r.memory.weightBytes + r.memory.kvBytes),
    ]),
  );
  return alignedTable(head, rows, 3);
}

/** Bytes read per step (MB = 1e6), achieved GB/s and its fraction of the triad, for AR and draft steps. */
function bandwidthTable(results: readonly CaseWithBandwidth[]): string {
  const mb = (b: number) => (b / 1e6).toFixed(2);
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const head = ['model', 'context', 'draft', 'AR MB/step', 'AR KV share', 'AR GB/s', 'AR/triad', 'draft MB/step', 'draft KV share', 'draft GB/s', 'draft/triad'];
  const rows = results.flatMap((r) =>
    r.spec.map((s) => {
      const a = r.arBandwidth;
      const d = s.draftBandwidth;
      return [
        r.model,
        String(r.context),
        windowLabel(s.draftWindow).replace(' (wider draft)', '*'),
        mb(a.bytesPerStep.total),
        pct(a.bytesPerStep.kv / a.bytesPerStep.total),
        fmt(a.gbPerS),
        pct(a.ofTriad),
        mb(d.bytesPerStep.total),
        pct(d.bytesPerStep.kv / d.bytesPerStep.total),
        fmt(d.gbPerS),
        pct(d.ofTriad),
      ];
    }),
  );
  return alignedTable(head, rows, 3);
}

async function main(): Promise<number> {
  const flags = parseFlags(process.argv.slice(2));
  const t0 = performance.now();
  const base = await loadDeployment();
  const gamma = base.gamma;
  const models = [...new Set([...flags.models, flags.sweepModel])];
  const maxContext = Math.max(flags.context, ...flags.sweep);
  const pageSize = base.shapes.pageSize;
  const maxSeq = Math.ceil((maxContext + flags.decodeTokens + gamma) / pageSize) * pageSize;

  const inputs: CaseInput[] = [];
  const plans = new Map<string, ModulePlan>();
  for (const m of models) {
    const modelDir = ensureModel(m);
    const config = readModelDir(modelDir);
    const dep = cpuDeploymentFor(base, config, { batch: BUCKETS, maxSeq });
    const built = await buildCpuModule(dep, processIo);
    plans.set(m, built.plan);
    const common = {
      model: m,
      modelDir,
      library: built.library,
      batch: BATCH,
      decodeTokens: flags.decodeTokens,
      prefillChunk: BUCKETS[BUCKETS.length - 1] * (gamma + 1),
      gamma,
      pageSize,
      vocab: config.vocabSize,
      kvBytesPerPosition: config.numLayers * 2 * config.numKvHeads * config.headDim * 2, // bf16
    };
    const windows = m === flags.sweepModel && flags.wideWindow ? [null, flags.wideWindow] : [null];
    const contexts = m === flags.sweepModel ? [...new Set([...flags.sweep, ...(flags.models.includes(m) ? [flags.context] : [])])] : [flags.context];
    for (const context of contexts.sort((a, b) => a - b)) inputs.push({ ...common, context, draftWindows: windows });
  }

  const triadArrayBytes = defaultTriadArrayBytes();
  process.stderr.write(`STREAM triad: 3 arrays of ${fmt(triadArrayBytes / 2 ** 20)} MiB, best of ${DEFAULT_TRIAD_REPS}\n`);
  const triad: TriadResult = runTriad(buildTriad(), triadArrayBytes, DEFAULT_TRIAD_REPS);
  process.stderr.write(`    ${fmt(triad.gbPerS)} GB/s with ${triad.threads} OpenMP thread(s)\n`);

  const results: CaseWithBandwidth[] = [];
  for (const [i, input] of inputs.entries()) {
    process.stderr.write(`[${i + 1}/${inputs.length}] ${input.model}, batch ${input.batch}, context ${input.context}: prefill, then AR and ${input.draftWindows.length} speculative decode(s) of ${input.decodeTokens} tokens\n`);
    const t = performance.now();
    results.push(caseBandwidth(plans.get(input.model)!, runChild(input), input.decodeTokens, triad.gbPerS));
    process.stderr.write(`    done in ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  }

  const date = new Date().toISOString().slice(0, 10);
  mkdirSync(flags.out, { recursive: true });
  const jsonPath = join(flags.out, `${date}.json`);
  const svgPath = join(flags.out, `${date}.svg`);
  const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryBytes: totalmem(), node: process.version };
  const elapsedS = (performance.now() - t0) / 1000;
  // Paths relative to the checkout: the results say nothing of the machine's directory layout.
  const recorded = { ...flags, out: relative(ROOT, resolve(flags.out)) || '.' };
  writeFileSync(jsonPath, `${JSON.stringify({ date, machine, flags: recorded, deployment: 'default passes (dsl/default.ts) on the cpu, bf16', buckets: BUCKETS, gamma, triad, results, elapsedS }, null, 2)}\n`);
  const points: PlotPoint[] = results.flatMap((r) =>
    r.spec.map((s) => ({
      series: `${r.model}, ${windowLabel(s.draftWindow)}`,
      context: r.context,
      arTokensPerS: r.ar.tokensPerS,
      specTokensPerS: s.summary.tokensPerS,
      speedup: s.speedup,
      acceptance: s.summary.acceptance,
      arOfTriad: r.arBandwidth.ofTriad,
      draftOfTriad: s.draftBandwidth.ofTriad,
    })),
  );
  writeFileSync(svgPath, await renderSvg(chartSpec(points, `magicdec self-speculative decoding, random-weight models, batch ${BATCH}, CPU (${machine.cores} cores)`)));

  process.stdout.write(table(results));
  process.stdout.write(`\nMemory traffic per step (weights once + the KV positions the pass reads; bench/traffic.ts) over the step's time,\n`);
  process.stdout.write(`against a STREAM triad of ${fmt(triad.gbPerS)} GB/s (best of ${triad.reps}, 3 x ${fmt(triad.arrayBytes / 2 ** 20)} MiB, ${triad.threads} thread(s)) measured in this run:\n`);
  process.stdout.write(bandwidthTable(results));
  process.stdout.write(
    `\nTd/Tar, Tv/Tar: one draft step / one verification pass over one AR step; model speedup = tok/round / (gamma * Td/Tar + Tv/Tar), gamma ${gamma}.\n` +
      `* a wider draft window than the default deployment's, to show the acceptance / draft cost trade-off.\n` +
      `peak RSS is the case's process (Node included, ${fmt(Math.min(...results.map((r) => r.memory.startRss)) / 2 ** 20)} MB at its start).\n` +
      `wrote ${relative(process.cwd(), jsonPath)} and ${relative(process.cwd(), svgPath)} in ${elapsedS.toFixed(0)} s\n`,
  );
  const mismatched = results.some((r) => r.spec.some((s) => !s.identical));
  if (mismatched) process.stderr.write('speculative tokens differ from autoregressive ones: the runtime is not exact\n');
  return mismatched ? 1 : 0;
}

process.exitCode = await main();
