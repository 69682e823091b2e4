// `npx tsx bench/prefill.ts`: chunked prefill throughput of the runtime, end to end, on a random bf16 model
// of a benchmark preset (docs/BENCH.md; `gqa`, the shape llama.cpp is compared with: 4 layers, hidden 512,
// 8 heads / 2 KV heads, head dim 64, FFN 1536, vocab 4096): a batch of prompts fed in chunks of --chunk
// rows, one generated token each. Prints prefill tokens/s from the engine's own prefill time, the wall
// time of the whole generate call, and the prefill kernel time by class (attention / gemm / normRope / other).
//
// flags: --preset name (gqa), --batch n (8), --prompt n (4096 tokens), --chunk n (256 rows), --reps n (best of; 1)
import { Command } from 'commander';
import { buildCpuModule, cpuDeploymentFor } from '../lib/module.ts';
import { kvPagesFor, openEngine } from '../lib/decode.ts';
import { processIo } from '../lib/io.ts';
import { loadDeployment } from '../lib/deployment.ts';
import { Prng } from '../model/prng.ts';
import { RANDOM_PRESETS, resolveRandomConfig, type RandomPreset } from '../model/random.ts';
import { presetModel } from './grid.ts';
import { KERNEL_CLASSES } from '../runtime/node/index.ts';

const opts = new Command('prefill')
  .option('--preset <name>', `random model (${RANDOM_PRESETS.join(', ')})`, 'gqa')
  .option('--batch <n>', 'prompts', '8')
  .option('--prompt <n>', 'tokens per prompt', '4096')
  .option('--chunk <n>', 'rows per prefill step', '256')
  .option('--reps <n>', 'runs (best reported)', '1')
  .parse(process.argv)
  .opts<{ preset: string; batch: string; prompt: string; chunk: string; reps: string }>();
const [batch, promptLen, chunk, reps] = [opts.batch, opts.prompt, opts.chunk, opts.reps].map(Number);

const preset = opts.preset as RandomPreset;
if (!RANDOM_PRESETS.includes(preset)) {
  process.stderr.write(`--preset: unknown preset ${JSON.stringify(opts.preset)} (expected ${RANDOM_PRESETS.join(', ')})\n`);
  process.exit(1);
}
const config = resolveRandomConfig(preset);
const modelDir = presetModel(preset, processIo);
// Buckets 1, 8, 64 at gamma 3: a prefill chunk of up to 256 rows.
const dep = cpuDeploymentFor(await loadDeployment(), config, { batch: [1, 8, 64], maxSeq: Math.ceil((promptLen + 64) / 64) * 64 });
const { plan, library } = await buildCpuModule(dep, processIo);

const rng = new Prng(promptLen, 7);
const prompts = Array.from({ length: batch }, () => Array.from({ length: promptLen }, () => rng.below(config.vocabSize)));
let best = Infinity;
for (let i = 0; i < reps; i++) {
  const engine = await openEngine(modelDir, library, { mode: 'ar', maxBatch: batch, prefillChunk: chunk, kvPages: kvPagesFor(batch, promptLen + 64, plan.pageSize) });
  try {
    const t0 = performance.now();
    await Promise.all(prompts.map((p) => engine.generate(p, { maxTokens: 1, ignoreEos: true })));
    const wall = (performance.now() - t0) / 1e3;
    const s = engine.stats();
    best = Math.min(best, s.prefillS);
    const k = s.kernelS.prefill;
    const split = KERNEL_CLASSES.map((c) => `${c} ${k[c].toFixed(2)} s`).join(', ');
    process.stdout.write(`run ${i + 1}: ${s.prefillTokens} prompt tokens in ${s.prefillSteps} steps, prefill ${s.prefillS.toFixed(2)} s = ${(s.prefillTokens / s.prefillS).toFixed(0)} tokens/s (wall ${wall.toFixed(2)} s); kernels: ${split}\n`);
  } finally {
    engine.close();
  }
}
process.stdout.write(`best: ${((batch * promptLen) / best).toFixed(0)} tokens/s, ${plan.name}, chunk ${chunk}\n`);
