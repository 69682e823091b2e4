// `npx tsx bench/attention.ts`: one layer's attention kernels at issue 8's shapes, timed in one process
// (bench/attention.cpp) next to a STREAM triad measured in the same run: AR decode, verification (gamma + 1
// rows per sequence), a draft step (sink 4 + window 508) and a prefill chunk, as bytes read per second and
// as ratios to AR. The shapes are issue 8's `mha` (8 KV heads) and `gqa` (2 KV heads), 8 query heads of
// dimension 64, bf16, batch 16, page 64; the whole model around the layer is irrelevant to attention.
//
//   npx tsx bench/attention.ts [--shapes mha,gqa] [--contexts 1024,16384,32768] [--reps 5] [--modes ar,verify,draft,prefill]
//                              [--against <git ref>]
//
// --against builds the same shapes a second time from the kernels of another commit (checked out as a git
// worktree under out/bench/against/) and alternates the two modules' calls in one process: each line then
// adds this tree's time over the other's, as the median of the ratios of neighbouring calls, and whether
// the two outputs agree bitwise. On a machine whose speed drifts by a third between minutes, that paired
// ratio is how a kernel change of a few percent can be measured at all.
//
// On a machine shared with other work, wall times mostly measure the scheduler: run with
// OMP_WAIT_POLICY=passive and read the CPU times (all threads) as well.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { KERNELS } from '../codegen/abi.ts';
import { renderAbiHeader } from '../codegen/backends/header.ts';
import type { ModulePlan } from '../codegen/plan.ts';
import { positionsRead } from './traffic.ts';
import { buildTriad, runTriad } from './triad.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const SOURCE = join(HERE, 'attention.cpp');
const CACHE = resolve(HERE, '../out/bench/attention');
const BATCH = 16;
const GAMMA = 3;
const PREFILL_ROWS = 256;

const SHAPES = {
  mha: { numHeads: 8, numKvHeads: 8 },
  gqa: { numHeads: 8, numKvHeads: 2 },
} as const;
type ShapeName = keyof typeof SHAPES;

/** The timing driver, compiled beside the md_abi.h it includes (rendered from codegen/abi.ts). */
function buildDriver(): string {
  const flags = ['-std=c++17', '-O2', '-fopenmp'];
  const header = renderAbiHeader(KERNELS);
  const version = execFileSync('g++', ['--version'], { encoding: 'utf8' });
  const h = createHash('sha256').update(version).update(flags.join(' ')).update(readFileSync(SOURCE)).update(header).digest('hex').slice(0, 16);
  const dir = join(CACHE, h);
  const exe = join(dir, 'attention');
  if (existsSync(exe)) return exe;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'md_abi.h'), header);
  const part = `${exe}.tmp-${process.pid}`;
  try {
    execFileSync('g++', [...flags, `-I${dir}`, SOURCE, '-o', part, '-ldl'], { stdio: ['ignore', 'ignore', 'inherit'] });
    renameSync(part, exe);
  } catch (e) {
    rmSync(part, { force: true });
    throw e;
  }
  return exe;
}

const ROOT = resolve(HERE, '..');

/** A checkout of `ref` (a git worktree under out/bench/against/, made once per commit); its root. */
function checkoutOf(ref: string): string {
  const sha = execFileSync('git', ['rev-parse', '--verify', `${ref}^{commit}`], { cwd: ROOT, encoding: 'utf8' }).trim();
  const dir = join(CACHE, '..', 'against', sha.slice(0, 12));
  if (!existsSync(join(dir, 'codegen'))) execFileSync('git', ['worktree', 'add', '--detach', '--force', dir, sha], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  return dir;
}

/** The layer's module, built by the compiler of the checkout at `root` (this one's, or --against's). */
async function moduleFor(root: string, shape: ShapeName, maxSeq: number): Promise<{ plan: ModulePlan; library: string }> {
  const at = (file: string) => import(join(root, file));
  const [{ cpuBackend }, { buildModule }, { planModule }, { loadDeployment }, { tiny }] = await Promise.all(
    ['codegen/backends/cpu.ts', 'codegen/build.ts', 'codegen/plan.ts', 'lib/deployment.ts', 'dsl/models.ts'].map(at),
  );
  const base = await loadDeployment();
  const model = { ...tiny, name: `attn-${shape}`, hiddenSize: 512, intermediateSize: 1536, numLayers: 1, headDim: 64, vocabSize: 4096, maxPositionEmbeddings: maxSeq, ...SHAPES[shape] };
  const plan: ModulePlan = planModule({ ...base, model, arch: 'cpu', dtype: 'bf16', gamma: GAMMA, shapes: { batch: [BATCH, PREFILL_ROWS / (GAMMA + 1)], maxSeq, pageSize: 64 } });
  const { library } = await buildModule({ name: plan.name, files: cpuBackend.emit(plan), target: 'cpu' });
  return { plan, library };
}

interface Timing {
  mode: string;
  /** Which module: 0 this tree's, 1 --against's. */
  lib: number;
  rows: number;
  best_s: number;
  median_s: number;
  /** Least CPU time of a call, all threads. */
  cpu_s: number;
  /** --against's module only: median over repetitions of its time over this tree's. */
  paired_ratio?: number;
  same_bits?: boolean;
}

async function main() {
  const opts = new Command('bench/attention')
    .option('--shapes <list>', 'mha, gqa', 'mha,gqa')
    .option('--contexts <list>', 'context lengths', '1024,16384,32768')
    .option('--reps <n>', 'timed calls per mode (best reported)', '5')
    .option('--modes <list>', 'ar, verify, draft, prefill', 'ar,verify,draft,prefill')
    .option('--batch <n>', `sequences (at most ${BATCH})`, String(BATCH))
    .option('--against <ref>', 'also time the kernels of this git commit, alternating calls with this tree\'s')
    .parse()
    .opts<{ shapes: string; contexts: string; reps: string; modes: string; batch: string; against?: string }>();
  const batch = Number(opts.batch);
  const contexts = opts.contexts.split(',').map(Number);
  const maxSeq = Math.ceil((Math.max(...contexts) + GAMMA + 1) / 64) * 64;
  const triad = runTriad(buildTriad());
  console.log(`triad: ${triad.gbPerS.toFixed(1)} GB/s (${triad.threads} threads)`);
  const driver = buildDriver();
  const against = opts.against === undefined ? undefined : checkoutOf(opts.against);
  for (const shape of opts.shapes.split(',') as ShapeName[]) {
    const { plan, library } = await moduleFor(ROOT, shape, maxSeq);
    const libraries = against === undefined ? [library] : [library, (await moduleFor(against, shape, maxSeq)).library];
    const draftParams = plan.passes.draft.params.map((p) => p.value);
    const perPosition = 2 * plan.dims.kvDim * 2; // K and V, bf16
    for (const context of contexts) {
      const out = execFileSync(
        driver,
        [libraries.join(','), '2', String(plan.dims.kvHeads), String(plan.dims.heads), String(plan.dims.headDim), String(plan.pageSize), String(batch), String(GAMMA), String(context), draftParams.join(',') || '0', String(PREFILL_ROWS), opts.reps, opts.modes, plan.buckets.join(',')],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const all = out.trim().split('\n').map((l) => JSON.parse(l) as Timing);
      const t = Object.fromEntries(all.filter((x) => x.lib === 0).map((x) => [x.mode, x]));
      const other = Object.fromEntries(all.filter((x) => x.lib === 1).map((x) => [x.mode, x]));
      const draftPositions = positionsRead(plan, 'draft', context - 1);
      const bytes: Record<string, number> = {
        ar: batch * context * perPosition,
        verify: batch * context * perPosition,
        draft: batch * draftPositions * perPosition,
      };
      // A prefill chunk is compute-bound: 2 flops per multiply-add of q.k and p.v, over visible positions.
      const prefillFlops = Array.from({ length: PREFILL_ROWS }, (_, i) => context - PREFILL_ROWS + i + 1).reduce((a, n) => a + n, 0) * plan.dims.heads * plan.dims.headDim * 4;
      const ar = t.ar;
      const cols = Object.values(t).map((x) => {
        const cpu = `cpu ${(x.cpu_s * 1e3).toFixed(2)} ms`;
        const o = other[x.mode];
        const ab = o ? `, ${opts.against} ${(o.median_s * 1e3).toFixed(3)} ms: this/that ${(1 / o.paired_ratio!).toFixed(3)}${o.same_bits ? '' : ' (outputs differ)'}` : '';
        if (x.mode === 'prefill') return `prefill ${PREFILL_ROWS} rows ${(x.best_s * 1e3).toFixed(2)} ms ${(prefillFlops / x.best_s / 1e9).toFixed(1)} GFLOP/s, ${cpu}${ab}`;
        const gb = bytes[x.mode] / x.best_s / 1e9;
        const ratio = ar ? ` ${(x.best_s / ar.best_s).toFixed(3)}xAR (cpu ${(x.cpu_s / ar.cpu_s).toFixed(3)}xAR)` : '';
        return `${x.mode} ${(x.best_s * 1e3).toFixed(3)} ms ${gb.toFixed(1)} GB/s (${((100 * gb) / triad.gbPerS).toFixed(0)}% triad), ${cpu}${ratio}${ab}`;
      });
      console.log(`${shape} ctx ${context}: ${cols.join(' | ')}`);
    }
  }
}

await main();
