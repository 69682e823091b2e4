// `npx tsx bench/prefill.ts`: chunked prefill throughput of the runtime, end to end, on a random bf16 model
// of the shape llama.cpp is compared with (4 layers, hidden 512, 8 heads / 2 KV heads, head dim 64, FFN
// 1536, vocab 4096): a batch of prompts fed in chunks of --chunk rows, one generated token each. Prints
// prefill tokens/s from the engine's own prefill time, and the wall time of the whole generate call.
//
// flags: --batch n (8), --prompt n (4096 tokens), --chunk n (256 rows), --reps n (best of; 1)
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { buildCpuModule, cpuDeploymentFor } from '../lib/module.ts';
import { kvPagesFor, openEngine } from '../lib/decode.ts';
import { processIo } from '../lib/io.ts';
import { loadDeployment } from '../lib/deployment.ts';
import { Prng } from '../model/prng.ts';
import { resolveRandomConfig, writeRandomModel } from '../model/random.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const opts = new Command('prefill')
  .option('--batch <n>', 'prompts', '8')
  .option('--prompt <n>', 'tokens per prompt', '4096')
  .option('--chunk <n>', 'rows per prefill step', '256')
  .option('--reps <n>', 'runs (best reported)', '1')
  .parse(process.argv)
  .opts<{ batch: string; prompt: string; chunk: string; reps: string }>();
const [batch, promptLen, chunk, reps] = [opts.batch, opts.prompt, opts.chunk, opts.reps].map(Number);

const config = resolveRandomConfig('small', { name: 'small-gqa', numKvHeads: 2 });
const modelDir = join(ROOT, 'out/bench/models/small-gqa');
if (!existsSync(join(modelDir, 'config.json'))) writeRandomModel({ preset: 'small', config: { name: 'small-gqa', numKvHeads: 2 }, seed: 1, dtype: 'bf16', out: modelDir });
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
    process.stdout.write(`run ${i + 1}: ${s.prefillTokens} prompt tokens in ${s.prefillSteps} steps, prefill ${s.prefillS.toFixed(2)} s = ${(s.prefillTokens / s.prefillS).toFixed(0)} tokens/s (wall ${wall.toFixed(2)} s)\n`);
  } finally {
    engine.close();
  }
}
process.stdout.write(`best: ${((batch * promptLen) / best).toFixed(0)} tokens/s, ${plan.name}, chunk ${chunk}\n`);
