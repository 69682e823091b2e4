// `npx tsx bench/sampling.ts`: what sampling costs and how often the MagicDec draft is accepted. On a random
// `tiny` model (bf16), the examples/sample-and-match.ts deployment and the same deployment with the
// rejection and the (LOSSY) typical verifiers (the same passes, so the same drafts), decodes the same prompts (long enough that the
// sink + window draft reads a strict subset of the cache) greedily and sampled at several temperatures, the
// same seeds for every setting, and prints per verifier and temperature: acceptance, tokens per round,
// decode tokens/s, draft and verification time, and for sample-and-match that the speculative tokens equal
// the autoregressive ones (rejection sampling is exact in distribution only). Flags: --context, --batch,
// --tokens, --temperatures.
import { join, resolve } from 'node:path';
import { mkdirSync } from 'node:fs';
import { Command } from 'commander';
import { formatDiagnostic, loadSpecText } from '../codegen/frontend/index.ts';
import { STANDARD_REJECTION } from '../codegen/plan.ts';
import { decodeBatch, kvPagesFor } from '../lib/decode.ts';
import { loadDeployment } from '../lib/deployment.ts';
import { fmt } from '../lib/format.ts';
import { processIo } from '../lib/io.ts';
import { readModelDir } from '../lib/model-dir.ts';
import { buildCpuModule, cpuDeploymentFor } from '../lib/module.ts';
import { writeRandomModel } from '../model/random.ts';

const ROOT = resolve(import.meta.dirname, '..');

const cli = new Command('bench/sampling.ts')
  .option('--context <n>', 'prompt tokens per request', (v) => Number(v), 1500)
  .option('--batch <n>', 'requests decoded together', (v) => Number(v), 4)
  .option('--tokens <n>', 'tokens generated per request', (v) => Number(v), 128)
  .option('--temperatures <list>', 'comma-separated temperatures (0 is greedy)', (v) => v.split(',').map(Number), [0, 0.3, 0.7, 1])
  .option('--out <dir>', 'where the random model goes', join(ROOT, 'out/bench-sampling'));
cli.parse();
const o = cli.opts<{ context: number; batch: number; tokens: number; temperatures: number[]; out: string }>();

const io = processIo;
const modelDir = join(o.out, 'tiny-bf16');
mkdirSync(o.out, { recursive: true });
writeRandomModel({ preset: 'tiny', seed: 1, dtype: 'bf16', out: modelDir });
const model = readModelDir(modelDir);
const dep = cpuDeploymentFor(await loadDeployment(join(ROOT, 'examples/sample-and-match.ts')), model);
let state = 12345;
const rnd = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32);
const prompts = Array.from({ length: o.batch }, () => Array.from({ length: o.context }, () => Math.floor(rnd() * model.vocabSize)));
const positions = o.context + o.tokens + dep.gamma;
const engine = { maxBatch: o.batch, kvPages: kvPagesFor(o.batch, positions, dep.shapes.pageSize) };
const seeds = prompts.map((_, i) => 1000 + i);
const rejection = { ...dep, verify: { name: 'rejection', mode: 'sample' as const, accept: STANDARD_REJECTION.accept, residual: STANDARD_REJECTION.residual } };
// The typical preset as the front end lowers it (dsl/presets.ts), with its default eps and delta.
const typicalSpec = loadSpecText(
  "import { causal, deploy, full, models, typical } from 'magicdec';\n" +
    "export default deploy({ model: models.tiny, target: { attention: causal, kv: full }, draft: { attention: causal, kv: full }, verify: typical(), gamma: 1, shapes: { batch: [1], maxSeq: 64, pageSize: 32 }, dtype: 'bf16', arch: 'cpu' });\n",
  join(ROOT, 'bench/__typical__.ts'),
);
if (!typicalSpec.deployment) throw new Error(typicalSpec.diagnostics.map(formatDiagnostic).join('\n'));
const typical = { ...dep, verify: typicalSpec.deployment.verify };

console.log(`${o.batch} requests of ${o.context} prompt tokens, ${o.tokens} new tokens each, gamma ${dep.gamma}`);
console.log('verifier          temperature  acceptance  tokens/round  decode tok/s  draft s  verify s  spec == AR');
for (const d of [dep, rejection, typical]) {
  const built = await buildCpuModule(d, io);
  for (const t of o.temperatures) {
    const request = { maxTokens: o.tokens, ignoreEos: true, sampling: { temperature: t }, seeds };
    const spec = await decodeBatch(modelDir, built.library, { ...engine, mode: 'spec' }, prompts, request);
    let same = '-';
    if (d.verify.mode === 'match' || t === 0) {
      const ar = await decodeBatch(modelDir, built.library, { ...engine, mode: 'ar' }, prompts, request);
      same = spec.generations.every((g, i) => g.tokens.join() === ar.generations[i].tokens.join()) ? 'yes' : 'NO';
      if (same === 'NO') process.exitCode = 1;
    }
    const s = spec.summary;
    console.log(
      [d.verify.name, t === 0 ? 'greedy' : String(t), fmt(s.acceptance), fmt(s.tokensPerRound), fmt(s.tokensPerS), fmt(s.draftS), fmt(s.verifyS), same]
        .map((c, i) => (i === 0 ? c.padEnd(16) : c.padStart([0, 11, 10, 12, 12, 8, 9, 10][i])))
        .join('  '),
    );
  }
}
