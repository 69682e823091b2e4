// `npx tsx bench/gemm.ts`: the CPU module's dense projections alone, timed by bench/gemm.cpp against a
// STREAM triad in the same process. Two shapes: `8b` (Llama-3.1-8B's projections, whose weights cycle
// through a pool of copies several times the last-level cache, so the GB/s are DRAM's) and `prefill` (the
// 4-layer hidden-512 GQA model, at decode and prefill-chunk row counts; its weights fit the caches).
//
// GB/s and GFLOP/s are of the fastest single call or the CPU time per call over the threads, whichever is
// less (on a shared machine, the least disturbed measures; OMP_WAIT_POLICY=passive keeps idle threads from
// spinning into the CPU time).
// flags: --shape 8b|prefill (default both), --dtype bf16|fp16|fp32 (bf16), --rows 1,4,8,... , --seconds s,
// --library <path> (time that prebuilt module of the same shape instead, e.g. one from an older commit)
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { buildCpuModule, cpuDeploymentFor } from '../lib/module.ts';
import { processIo } from '../lib/io.ts';
import { loadDeployment } from '../lib/deployment.ts';
import type { DType } from '../dsl/deploy.ts';
import { llama31_8b, small, type ModelConfig } from '../dsl/models.ts';
import { lastLevelCacheBytes } from './triad.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const CACHE = resolve(HERE, '../out/bench/gemm');
const FLAGS = ['-std=c++17', '-O3', '-march=native', '-fopenmp'];
/** Buckets 1, 8, 64 at gamma 3: calls of up to 4, 32 and 256 rows (a prefill chunk). */
const BUCKETS = [1, 8, 64];

const SHAPES: Record<string, { model: ModelConfig; rows: number[] }> = {
  '8b': { model: { ...llama31_8b, numLayers: 1, vocabSize: 32000 }, rows: [1, 4, 8, 16, 32] },
  prefill: { model: { ...small, name: 'small-gqa', numKvHeads: 2 }, rows: [1, 4, 8, 16, 32, 64, 256] },
};

function buildDriver(): string {
  const src = join(HERE, 'gemm.cpp');
  const version = execFileSync('g++', ['--version'], { encoding: 'utf8' });
  const hash = createHash('sha256').update(`${version}\0${FLAGS.join(' ')}\0`).update(readFileSync(src)).digest('hex').slice(0, 16);
  const exe = join(CACHE, `gemm-${hash}`);
  if (existsSync(exe)) return exe;
  mkdirSync(CACHE, { recursive: true });
  execFileSync('g++', [...FLAGS, src, '-o', `${exe}.tmp`, '-ldl'], { stdio: 'inherit' });
  renameSync(`${exe}.tmp`, exe);
  return exe;
}

const opts = new Command('gemm')
  .option('--shape <list>', 'shapes: 8b, prefill', '8b,prefill')
  .option('--dtype <dtype>', 'weight storage dtype', 'bf16')
  .option('--rows <list>', 'row counts (default: per shape)')
  .option('--seconds <s>', 'timing per point', '1')
  .option('--library <path>', 'a prebuilt module of the shape to time instead')
  .parse(process.argv)
  .opts<{ shape: string; dtype: DType; rows?: string; seconds: string; library?: string }>();

const exe = buildDriver();
const base = await loadDeployment();
const bytes = { bf16: 2, fp16: 2, fp32: 4 }[opts.dtype];
const pool = Math.max(4 * (lastLevelCacheBytes() ?? 0), 1 << 30);
for (const name of opts.shape.split(',')) {
  const shape = SHAPES[name];
  if (!shape) throw new Error(`unknown shape '${name}'`);
  const dep = { ...cpuDeploymentFor(base, shape.model, { batch: BUCKETS, maxSeq: 4096 }), dtype: opts.dtype };
  const { plan, library: built } = await buildCpuModule(dep, processIo);
  const library = opts.library ?? built;
  const rows = opts.rows ? opts.rows.split(',').map(Number) : shape.rows;
  const cases = plan.gemms.flatMap((g) => rows.map((r) => `md_gemm_${g.role}_b64:${g.n}:${g.k}:${r}`));
  cases.push(...rows.map((r) => `md_lm_head_argmax_b64:${plan.dims.vocab}:${plan.dims.hidden}:${r}`));
  // Small shapes run from the caches: a pool of one copy states that plainly rather than averaging it away.
  const poolBytes = name === '8b' ? pool : 1;
  const out = execFileSync(exe, [library, String(poolBytes), String(pool), opts.seconds, String(bytes), ...cases], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = out.trim().split('\n').map((l) => JSON.parse(l));
  const triad = Math.min(lines[0].triad, lines[lines.length - 1].triad);
  process.stdout.write(`\n${name} (${opts.dtype}, ${lines[0].threads} threads), triad ${lines[0].triad} / ${lines[lines.length - 1].triad} GB/s\n`);
  process.stdout.write('symbol                       N      K  rows   mean us    min us    cpu us   weight GB/s  of triad   GFLOP/s\n');
  for (const l of lines.slice(1, -1)) {
    process.stdout.write(
      `${l.symbol.padEnd(24)} ${String(l.n).padStart(6)} ${String(l.k).padStart(6)} ${String(l.rows).padStart(5)} ${l.us.toFixed(1).padStart(9)} ${l.minUs.toFixed(1).padStart(9)} ${l.cpuUs.toFixed(1).padStart(9)} ${l.weightGBps.toFixed(1).padStart(13)} ${((100 * l.weightGBps) / triad).toFixed(0).padStart(8)}% ${l.gflops.toFixed(1).padStart(9)}\n`,
    );
  }
}
