// Random tiny model + module pairs for the runtime's property tests, and the helpers those tests share.
//
// Compiling a module costs seconds of g++, so the structural features every run must cover (MHA / GQA,
// rope scaling llama3 / linear / none, Qwen2 biases, tied embeddings, fp32 / bf16 storage, streaming /
// window drafts, a target with a runtime param, a module built with gamma 'auto', greedy, sample-and-match
// and rejection verifiers) are fixed per case, and the
// sizes inside each case (layers, heads, head dim, vocab, MLP width, page size, buckets) are drawn by
// fast-check from MODULE_SEED. The default seed keeps the module cache warm between runs;
// MD_RUNTIME_MODULE_SEED draws another set. The properties' own seeds are in seeds.ts.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { cpuBackend } from '../../codegen/backends/cpu.ts';
import { buildModule, DEFAULT_CACHE } from '../../codegen/build.ts';
import { planModule, type ModulePlan } from '../../codegen/plan.ts';
import type { DeploymentIR } from '../../codegen/spec.ts';
import type { ModelConfig, RopeScaling } from '../../dsl/models.ts';
import { resolveRandomConfig, writeRandomModel } from '../../model/random.ts';
import type { Engine, EngineOptions, EngineStats, Generation } from '../../runtime/node/index.ts';
import { attentions, makeDeployment, policies, verifiers } from './deployments.ts';

export const MODULE_SEED = Number(process.env.MD_RUNTIME_MODULE_SEED ?? 20240611);

export type Storage = 'fp32' | 'bf16';

/** What a case must exercise; the sizes come from the seed. */
interface CaseFeatures {
  readonly label: string;
  readonly architecture: 'llama' | 'qwen2' | 'mistral';
  readonly attention: 'mha' | 'gqa';
  readonly rope: 'none' | 'linear' | 'llama3';
  readonly tied: boolean;
  readonly storage: Storage;
  readonly draft: 'streaming' | 'window';
  /** 'sliding': the target attends through a sliding window whose width is a runtime param. */
  readonly target: 'full' | 'sliding';
  readonly gamma: number;
  /** The verifier: 'match' (sampleAndMatch) and 'sample' (rejection) modules also serve sampling requests speculatively. */
  readonly verify: keyof typeof verifiers;
  /** Built with gamma 'auto' (compiled for `gamma`): engines choose per round unless told a gamma. */
  readonly adaptiveGamma?: true;
  /** Layers drawn from: with one, a draft's K/V equals the target's (both come from the embeddings alone). */
  readonly layers: readonly [min: number, max: number];
  readonly maxSeq: number;
}

export interface ModuleCase extends CaseFeatures {
  readonly model: ModelConfig;
  readonly pageSize: number;
  readonly buckets: readonly number[];
  readonly deployment: DeploymentIR;
}

/**
 * The cases every property run covers. `long` is multi-layer with room for prompts past 2K tokens: there a
 * draft's K/V in layers after the first differs from the target's, so a rejection must overwrite it.
 */
const FEATURES: Readonly<Record<string, CaseFeatures>> = {
  mhaLinear: { label: 'mha-linear-fp32', architecture: 'llama', attention: 'mha', rope: 'linear', tied: false, storage: 'fp32', draft: 'streaming', target: 'full', gamma: 6, verify: 'sampleAndMatch', layers: [1, 3], maxSeq: 512 },
  long: { label: 'gqa-llama3-bf16-long', architecture: 'llama', attention: 'gqa', rope: 'llama3', tied: false, storage: 'bf16', draft: 'window', target: 'full', gamma: 6, verify: 'greedy', layers: [2, 2], maxSeq: 2304 },
  qwen2: { label: 'qwen2-gqa-fp32-sliding', architecture: 'qwen2', attention: 'gqa', rope: 'none', tied: false, storage: 'fp32', draft: 'streaming', target: 'sliding', gamma: 4, verify: 'sampleAndMatch', adaptiveGamma: true, layers: [1, 3], maxSeq: 512 },
  tiedBf16: { label: 'mha-tied-bf16', architecture: 'llama', attention: 'mha', rope: 'none', tied: true, storage: 'bf16', draft: 'streaming', target: 'full', gamma: 6, verify: 'greedy', layers: [1, 3], maxSeq: 512 },
  // Mistral's model-level sliding window, narrower than the prompts, so it shapes every pass.
  mistral: { label: 'mistral-gqa-fp32-window', architecture: 'mistral', attention: 'gqa', rope: 'none', tied: false, storage: 'fp32', draft: 'streaming', target: 'full', gamma: 4, verify: 'rejection', layers: [1, 3], maxSeq: 512 },
};
export type CaseName = keyof typeof FEATURES;

// noBias: fast-check's small-value bias would make every vocab and width the minimum.
const sizesArb = (f: CaseFeatures) =>
  fc.noBias(fc.record({
    layers: fc.integer({ min: f.layers[0], max: f.layers[1] }),
    kvHeads: f.attention === 'mha' ? fc.integer({ min: 1, max: 4 }) : fc.integer({ min: 1, max: 2 }),
    group: f.attention === 'mha' ? fc.constant(1) : fc.integer({ min: 2, max: 4 }),
    headDim: fc.constantFrom(16, 24, 32, 40, 48, 64),
    vocab: fc.integer({ min: 64, max: 512 }),
    mlp: fc.integer({ min: 1, max: 3 }),
    pageSize: fc.constantFrom(8, 16),
    // Buckets 1 (where a lone sequence runs: the AR references) and 8 (batches of up to 8) always; the ones
    // between vary which bucket a batched round lands in.
    buckets: fc.subarray([2, 3, 4, 6], { minLength: 0, maxLength: 2 }).map((b) => [1, ...b.sort((x, y) => x - y), 8]),
    ropeFactor: fc.constantFrom(2, 4, 8),
    ropeTheta: fc.constantFrom(10000, 500000),
    slidingWindow: fc.integer({ min: 9, max: 70 }),
  }));

function ropeScaling(f: CaseFeatures, factor: number): RopeScaling | undefined {
  if (f.rope === 'linear') return { type: 'linear', factor };
  // A short original context puts prompt positions into all three llama3 frequency bands.
  if (f.rope === 'llama3') return { type: 'llama3', factor, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 };
  return undefined;
}

export function moduleCase(name: CaseName): ModuleCase {
  const f = FEATURES[name];
  // One draw per case, seeded by the case name too, so adding a case does not reshuffle the others.
  const seed = (MODULE_SEED ^ Number.parseInt(createHash('sha256').update(name).digest('hex').slice(0, 8), 16)) | 0;
  const [s] = fc.sample(sizesArb(f), { seed, numRuns: 1 });
  const heads = s.kvHeads * s.group;
  const hidden = heads * s.headDim;
  const rs = ropeScaling(f, s.ropeFactor);
  const model = resolveRandomConfig('tiny', {
    name: `${f.label}-${s.layers}l${heads}x${s.kvHeads}x${s.headDim}v${s.vocab}`,
    architecture: f.architecture,
    hiddenSize: hidden,
    intermediateSize: hidden * s.mlp + 8,
    numLayers: s.layers,
    numHeads: heads,
    numKvHeads: s.kvHeads,
    headDim: s.headDim,
    vocabSize: s.vocab,
    ropeTheta: s.ropeTheta,
    ...(rs ? { ropeScaling: rs } : {}),
    tieWordEmbeddings: f.tied,
    ...(f.architecture === 'mistral' ? { slidingWindow: s.slidingWindow } : {}),
  });
  const draftKv = f.draft === 'streaming' ? policies.streaming(4, 32) : policies.window(32);
  const deployment: DeploymentIR = {
    ...makeDeployment({
      model,
      target: { attention: f.target === 'sliding' ? attentions.slidingWindow(f.maxSeq) : attentions.causal(), kv: policies.full() },
      draft: { attention: attentions.causal(), kv: draftKv },
      gamma: f.gamma,
      batch: [...s.buckets],
      maxSeq: f.maxSeq,
      pageSize: s.pageSize,
      dtype: f.storage,
    }),
    verify: verifiers[f.verify](),
    ...(f.adaptiveGamma ? { adaptiveGamma: true } : {}),
  };
  return { ...f, model, pageSize: s.pageSize, buckets: s.buckets, deployment };
}

function lockHolderAlive(lock: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(join(lock, 'pid'), 'utf8'));
  } catch {
    // No pid yet: the holder is between mkdir and writing it, unless the lock is old.
    const st = statSync(lock, { throwIfNoEntry: false });
    return st !== undefined && Date.now() - st.mtimeMs < 60_000;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Serialises builds of one module across vitest workers, so that it compiles once and the rest hit the cache. */
async function withBuildLock<T>(key: string, f: () => Promise<T>): Promise<T> {
  mkdirSync(DEFAULT_CACHE, { recursive: true });
  const lock = join(DEFAULT_CACHE, `.lock-${key}`);
  const deadline = Date.now() + 10 * 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      break;
    } catch {
      // A lock whose holder has exited is left over from a killed run.
      if (!lockHolderAlive(lock)) rmSync(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    return await f();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

export interface PreparedCase {
  readonly case: ModuleCase;
  readonly plan: ModulePlan;
  readonly library: string;
  /** A random model of the case's config, stored in the case's storage dtype (no conversion at load). */
  readonly modelDir: string;
}

/** Builds (or reuses) the case's module and writes its random model under `root`. */
export async function prepareCase(name: CaseName, root: string, modelSeed = 1): Promise<PreparedCase> {
  const c = moduleCase(name);
  const plan = planModule(c.deployment);
  const library = await withBuildLock(plan.hash, async () => (await buildModule({ name: plan.name, files: cpuBackend.emit(plan), target: 'cpu' })).library);
  const modelDir = join(root, `${name}-${modelSeed}`);
  writeRandomModel({ seed: modelSeed, dtype: c.storage, out: modelDir, config: c.model });
  return { case: c, plan, library, modelDir };
}

/** Runs f on a fresh engine and closes it whatever happens. */
export async function withEngine<T>(E: typeof Engine, p: PreparedCase, opts: EngineOptions, f: (e: Engine) => Promise<T>): Promise<T> {
  const e = await E.create(p.modelDir, p.library, { keepLogits: true, ...opts });
  try {
    return await f(e);
  } finally {
    e.close();
  }
}

/** First index where two float32 rows differ bitwise (NaN payloads and signed zeros included), or -1. */
export function firstBitDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

/**
 * Why `got` is not `want` bit for bit (tokens, then each kept logits row), or undefined if it is.
 * `wantFrom` skips that many leading tokens of `want` (got continues want from there).
 */
export type Decoded = Pick<Generation, 'tokens' | 'logits'>;

export function bitwiseMismatch(got: Decoded, want: Decoded, wantFrom = 0, wantLength = want.tokens.length - wantFrom): string | undefined {
  const tokens = want.tokens.slice(wantFrom, wantFrom + wantLength);
  if (got.tokens.length !== tokens.length || got.tokens.some((t, i) => t !== tokens[i])) {
    const i = got.tokens.findIndex((t, k) => t !== tokens[k]);
    return `tokens differ${i >= 0 ? ` first at ${i}` : ''}: got [${got.tokens.join(' ')}], want [${tokens.join(' ')}]`;
  }
  if (!got.logits || !want.logits) return 'logits were not kept';
  for (let i = 0; i < tokens.length; i++) {
    const d = firstBitDifference(got.logits[i], want.logits[wantFrom + i]);
    if (d >= 0) return `logits of token ${i} differ bitwise at vocab index ${d}: got ${got.logits[i][d]}, want ${want.logits[wantFrom + i][d]}`;
  }
  return undefined;
}

/** The positions a request reserves (prompt + generation + the module's gamma when speculative), in KV pages. */
export function pagesFor(c: ModuleCase, promptLength: number, maxTokens: number, mode: 'ar' | 'spec'): number {
  return Math.ceil((promptLength + maxTokens + (mode === 'spec' ? c.gamma : 0)) / c.pageSize);
}

/** A gamma as the engine takes it: 1..module gamma, 'auto', or undefined for the module's default. */
export type GammaChoice = number | 'auto' | undefined;

/** The most tokens a round may draft under `g` on case `c`. */
export function gammaBound(c: ModuleCase, g: GammaChoice): number {
  return typeof g === 'number' ? g : c.gamma;
}

/** Whether a run decoded in a bucket other than 1, where the AR references (one sequence) ran. */
export function leftBucketOne(stats: EngineStats): boolean {
  return Object.keys(stats.bucketRounds).some((b) => b !== '1');
}
