// `magicdec check`: property tests of a user's deployment for losslessness. The spec's passes and verifier
// are compiled for random tiny models of its architecture family (lib/module.ts), and fast-check draws
// cases: prompts, batch (and so the bucket), gamma, maxTokens, seeds, sampling parameters and the draft
// pass's runtime params. What must hold depends on the verifier (verifierContract):
// - exact ('greedy', 'match'): the speculative run's tokens and logits are the autoregressive run's, bit for
//   bit (greedy verifiers at temperature 0 only; 'match' at any sampling parameters, seeded);
// - distribution-exact ('sample'): greedy requests as above; a seeded sampled request gives the same tokens
//   alone as batched; and a statistical case per run: the emitted tokens of a batch of sampled requests
//   are distributed as the target's own samples (lib/stats.ts, false alarm < PIT_FALSE_ALARM a test);
// - lossy ('sample' with lossy: true, e.g. typical): greedy requests as above, sampled requests are run but
//   their distribution is not tested, and the report says lossy.
// A failing case is shrunk by fast-check and described as the `magicdec run` command lines that replay it.
import fc from 'fast-check';
import { join, relative } from 'node:path';
import type { ModulePlan } from '../codegen/plan.ts';
import type { DeploymentIR, VerifierIR } from '../codegen/spec.ts';
import type { ModelConfig } from '../dsl/models.ts';
import { Prng } from '../model/prng.ts';
import { resolveRandomConfig, writeRandomModel } from '../model/random.ts';
import type { SamplingParams } from '../model/sampling.ts';
import type { Generation } from '../runtime/node/index.ts';
import { decodeBatch } from './decode.ts';
import type { Io } from './io.ts';
import { buildCpuModule, cpuDeploymentFor } from './module.ts';
import { fitProblem, fitTarget, PIT_FALSE_ALARM } from './stats.ts';

export type Contract = 'exact' | 'distribution' | 'lossy';

/** What `magicdec check` holds a verifier to, and whether its modules serve sampled requests speculatively. */
export function verifierContract(v: VerifierIR): { contract: Contract; samples: boolean } {
  if (v.mode === 'greedy') return { contract: 'exact', samples: false };
  if (v.mode === 'match') return { contract: 'exact', samples: true };
  return { contract: v.lossy ? 'lossy' : 'distribution', samples: true };
}

export interface CheckOptions {
  /** The spec file, as the replay command lines name it. */
  readonly specFile: string;
  readonly runs: number;
  readonly seed: number;
  /** Random models of the spec's family (each its own module). */
  readonly models: number;
  /** Directory the random models are written to (kept: the replay command lines read them). */
  readonly out: string;
  readonly cacheDir?: string;
}

export interface CheckModel {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly plan: ModulePlan;
  readonly library: string;
}

/** Requests and tokens per request of a statistical case: 1024 tokens tested. */
const STAT_REQUESTS = 32;
const STAT_TOKENS = 32;
/** Prompt lengths and tokens per request of the exact cases. */
const MAX_PROMPT = 24;
const MAX_TOKENS = 24;

/**
 * A tiny model of `base`'s family: its architecture, Q/K/V biases, tied embeddings, rope theta and scaling,
 * RMSNorm epsilon, GQA (a group above 1 stays above 1) and sliding window (shrunk so it matters), with small
 * random dimensions and a vocabulary that is rarely a multiple of any tile.
 */
export function familyModel(base: ModelConfig, seed: number, index: number, maxPositions: number): ModelConfig {
  const rng = new Prng(seed, 0x6368 + index);
  const pick = <T>(xs: readonly T[]): T => xs[rng.below(xs.length)];
  const group = base.numHeads / base.numKvHeads;
  const g = group === 1 ? 1 : pick([2, 4].filter((x) => x <= group).concat(group <= 4 ? [group] : []));
  const numKvHeads = pick([1, 2]);
  const headDim = pick([16, 32]);
  const rope = base.ropeScaling;
  return resolveRandomConfig('tiny', {
    name: `${base.name}-check${index}`,
    architecture: base.architecture,
    hiddenSize: pick([32, 64, 96]),
    intermediateSize: 24 + 8 * rng.below(16),
    numLayers: 1 + rng.below(2),
    numHeads: numKvHeads * g,
    numKvHeads,
    headDim,
    vocabSize: 96 + rng.below(225),
    maxPositionEmbeddings: maxPositions,
    ropeTheta: base.ropeTheta,
    ropeScaling: rope && rope.originalMaxPositionEmbeddings !== undefined ? { ...rope, originalMaxPositionEmbeddings: Math.min(rope.originalMaxPositionEmbeddings, maxPositions) } : rope,
    rmsNormEps: base.rmsNormEps,
    qkvBias: base.qkvBias,
    tieWordEmbeddings: base.tieWordEmbeddings,
    slidingWindow: base.slidingWindow === undefined ? undefined : 4 + rng.below(29),
  });
}

/** The positions the check's modules serve: run's default for these models is the same, so replays build the same module. */
function checkPositions(dep: DeploymentIR): number {
  return Math.min(dep.shapes.maxSeq, Math.max(256, 2 * dep.shapes.pageSize));
}

/** Writes the random models and compiles the spec's module for each (progress on io.stderr). */
export async function prepareModels(dep: DeploymentIR, opts: CheckOptions, io: Io): Promise<CheckModel[]> {
  const out: CheckModel[] = [];
  for (let i = 0; i < opts.models; i++) {
    const config = familyModel(dep.model, opts.seed, i, checkPositions(dep));
    const dir = join(opts.out, `seed${opts.seed}-model${i}`);
    writeRandomModel({ config, seed: opts.seed + i, dtype: 'bf16', out: dir });
    io.stderr.write(
      `model ${i + 1}/${opts.models}: ${config.architecture}, ${config.numLayers} layer${config.numLayers === 1 ? '' : 's'}, heads ${config.numHeads}/${config.numKvHeads} kv, ` +
        `head dim ${config.headDim}, vocab ${config.vocabSize} (${dir})\n`,
    );
    const built = await buildCpuModule(cpuDeploymentFor(dep, config), io, opts.cacheDir);
    io.stderr.write(`module ${built.plan.name} (${built.cached ? 'cached' : 'compiled'})\n`);
    out.push({ dir, config, plan: built.plan, library: built.library });
  }
  return out;
}

export interface ExactCase {
  readonly model: number;
  readonly prompts: readonly (readonly number[])[];
  readonly gamma: number | 'auto';
  readonly maxTokens: number;
  readonly sampling: SamplingParams;
  readonly seed: number;
  readonly draftParams: readonly (readonly [string, number])[];
}

export interface StatCase {
  readonly model: number;
  readonly requests: number;
  readonly promptSeed: number;
  readonly gamma: number | 'auto';
  readonly sampling: SamplingParams;
  readonly seed: number;
  readonly draftParams: readonly (readonly [string, number])[];
}

const GREEDY: SamplingParams = { temperature: 0, topK: 0, topP: 1, minP: 0 };

const samplingArb = (vocab: number, minTemperature: number): fc.Arbitrary<SamplingParams> =>
  fc.record({
    temperature: fc.oneof(fc.constantFrom(0.3, 0.7, 1), fc.double({ min: Math.max(minTemperature, 0.05), max: 2, noNaN: true }).map(Math.fround)),
    topK: fc.oneof(fc.constant(0), fc.constant(1), fc.integer({ min: 2, max: vocab })),
    topP: fc.oneof(fc.constant(1), fc.double({ min: 0.2, max: 1, noNaN: true }).map(Math.fround)),
    minP: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 0.2, noNaN: true }).map(Math.fround)),
  });

/** Values for the draft pass's runtime integer params (windows, sinks, ...): small, so the draft differs from the target. */
const draftParamsArb = (m: CheckModel): fc.Arbitrary<[string, number][]> =>
  fc.tuple(...m.plan.passes.draft.params.map((p) => (p.ty === 'i32' ? fc.integer({ min: 1, max: 32 }) : fc.constant(p.value)).map((v) => [p.key, v] as [string, number])));

const gammaArb = (dep: DeploymentIR): fc.Arbitrary<number | 'auto'> =>
  dep.adaptiveGamma ? fc.oneof(fc.constant('auto' as const), fc.integer({ min: 1, max: dep.gamma })) : fc.integer({ min: 1, max: dep.gamma });

export function exactCaseArb(dep: DeploymentIR, models: readonly CheckModel[]): fc.Arbitrary<ExactCase> {
  const { samples } = verifierContract(dep.verify);
  const largest = dep.shapes.batch[dep.shapes.batch.length - 1];
  return fc.integer({ min: 0, max: models.length - 1 }).chain((model) => {
    const m = models[model];
    const V = m.config.vocabSize;
    return fc.record({
      model: fc.constant(model),
      prompts: fc.array(fc.array(fc.integer({ min: 0, max: V - 1 }), { minLength: 1, maxLength: MAX_PROMPT }), { minLength: 1, maxLength: Math.min(largest, 6) }),
      gamma: gammaArb(dep),
      maxTokens: fc.integer({ min: 1, max: MAX_TOKENS }),
      sampling: samples ? fc.oneof(fc.constant(GREEDY), samplingArb(V, 0)) : fc.constant(GREEDY),
      seed: fc.integer({ min: 0, max: 2 ** 31 }),
      draftParams: draftParamsArb(m),
    });
  });
}

export function statCaseArb(dep: DeploymentIR, models: readonly CheckModel[]): fc.Arbitrary<StatCase> {
  return fc.integer({ min: 0, max: models.length - 1 }).chain((model) =>
    fc.record({
      model: fc.constant(model),
      requests: fc.constant(STAT_REQUESTS),
      promptSeed: fc.integer({ min: 0, max: 2 ** 31 }),
      gamma: gammaArb(dep),
      sampling: samplingArb(models[model].config.vocabSize, 0.5),
      seed: fc.integer({ min: 0, max: 2 ** 31 }),
      draftParams: draftParamsArb(models[model]),
    }),
  );
}

/** The statistical case's prompts: short, from its own seed. */
export function statPrompts(c: StatCase, vocab: number): number[][] {
  const rng = new Prng(c.promptSeed, 0x7072);
  return Array.from({ length: c.requests }, () => Array.from({ length: 1 + rng.below(12) }, () => rng.below(vocab)));
}

/** Why two runs' outputs differ bit for bit (tokens, then logits), or undefined. */
export function bitwiseDifference(got: readonly Generation[], want: readonly Generation[]): string | undefined {
  for (let r = 0; r < want.length; r++) {
    const a = got[r];
    const b = want[r];
    const i = a.tokens.findIndex((t, k) => t !== b.tokens[k]);
    if (i >= 0 || a.tokens.length !== b.tokens.length) return `request ${r}: speculative tokens [${a.tokens.join(' ')}] != autoregressive [${b.tokens.join(' ')}]`;
    for (let k = 0; k < b.tokens.length; k++) {
      const x = new Uint32Array(a.logits![k].buffer, a.logits![k].byteOffset, a.logits![k].length);
      const y = new Uint32Array(b.logits![k].buffer, b.logits![k].byteOffset, b.logits![k].length);
      const j = x.findIndex((v, n) => v !== y[n]);
      if (j >= 0) return `request ${r}: logits of token ${k} differ bitwise at vocab index ${j} (speculative ${a.logits![k][j]}, autoregressive ${b.logits![k][j]})`;
    }
  }
  return undefined;
}

interface Decode {
  readonly mode: 'ar' | 'spec';
  readonly prompts: readonly (readonly number[])[];
  readonly maxTokens: number;
  readonly batch: number;
  readonly gamma?: number | 'auto';
  readonly sampling: SamplingParams;
  readonly seed: number;
  readonly draftParams: readonly (readonly [string, number])[];
}

async function decode(m: CheckModel, d: Decode): Promise<Generation[]> {
  const run = await decodeBatch(
    m.dir,
    m.library,
    { mode: d.mode, maxBatch: d.batch, keepLogits: true, ...(d.mode === 'spec' ? { gamma: d.gamma } : {}) },
    d.prompts,
    { maxTokens: d.maxTokens, ignoreEos: true, sampling: d.sampling, seeds: d.prompts.map((_, i) => d.seed + i) },
    (e) => d.draftParams.forEach(([k, v]) => e.setParam('draft', k, v)),
  );
  return run.generations;
}

/** The `magicdec run` command line of one decode (it replays its tokens: same model, module, seeds and params). */
export function runCommandLine(m: CheckModel, specFile: string, d: Decode): string {
  const q = (s: string) => (/^[\w./=,+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  const args = ['magicdec', 'run', '--model', q(relativeOrAbsolute(m.dir)), '--spec', q(relativeOrAbsolute(specFile)), '--mode', d.mode];
  for (const p of d.prompts) args.push('--prompt-tokens', p.join(','));
  args.push('--batch', String(d.batch), '--max-tokens', String(d.maxTokens), '--ignore-eos');
  if (d.mode === 'spec' && d.gamma !== undefined) args.push('--gamma', String(d.gamma));
  const s = d.sampling;
  if (s.temperature > 0) args.push('--temperature', String(s.temperature), '--top-k', String(s.topK), '--top-p', String(s.topP), '--min-p', String(s.minP));
  args.push('--seed', String(d.seed));
  for (const [k, v] of d.draftParams) args.push('--draft-param', `${k}=${v}`);
  return args.join(' ');
}

function relativeOrAbsolute(p: string): string {
  const r = relative(process.cwd(), p);
  return r.startsWith('..') ? p : r || '.';
}

/** A failed case: what broke and the command lines that replay it. */
export class CaseFailure extends Error {
  constructor(
    message: string,
    readonly replay: readonly string[],
  ) {
    super(message);
  }
}

/** One exact case: greedy/exact contracts compare spec with AR bitwise; sampled 'sample' requests alone == batched. */
export async function runExactCase(dep: DeploymentIR, models: readonly CheckModel[], specFile: string, c: ExactCase): Promise<void> {
  const m = models[c.model];
  const { contract } = verifierContract(dep.verify);
  const largest = dep.shapes.batch[dep.shapes.batch.length - 1];
  const base = { prompts: c.prompts, maxTokens: c.maxTokens, sampling: c.sampling, seed: c.seed, draftParams: c.draftParams };
  const spec: Decode = { ...base, mode: 'spec', batch: Math.min(c.prompts.length, largest), gamma: c.gamma };
  const got = await decode(m, spec);
  if (c.sampling.temperature === 0 || contract === 'exact') {
    // AR one sequence at a time: the speculative batch runs in another bucket.
    const ar: Decode = { ...base, mode: 'ar', batch: 1 };
    const problem = bitwiseDifference(got, await decode(m, ar));
    if (problem) throw new CaseFailure(`speculative != autoregressive: ${problem}`, [runCommandLine(m, specFile, spec), runCommandLine(m, specFile, ar)]);
    return;
  }
  // A seeded request's tokens do not depend on the batch (at a fixed gamma; 'auto' chooses per batch).
  if (c.gamma === 'auto') return;
  const last = c.prompts.length - 1;
  const alone: Decode = { ...base, mode: 'spec', batch: 1, gamma: c.gamma, prompts: [c.prompts[last]], seed: c.seed + last };
  const [a] = await decode(m, alone);
  if (a.tokens.join() !== got[last].tokens.join())
    throw new CaseFailure(`request ${last}'s tokens batched [${got[last].tokens.join(' ')}] != alone [${a.tokens.join(' ')}]`, [runCommandLine(m, specFile, spec), runCommandLine(m, specFile, alone)]);
}

/** One statistical case: the speculative run's tokens must pass lib/stats.ts's test against the target. */
export async function runStatCase(dep: DeploymentIR, models: readonly CheckModel[], specFile: string, c: StatCase): Promise<void> {
  const m = models[c.model];
  const largest = dep.shapes.batch[dep.shapes.batch.length - 1];
  const spec: Decode = {
    mode: 'spec',
    prompts: statPrompts(c, m.config.vocabSize),
    maxTokens: STAT_TOKENS,
    batch: largest,
    gamma: c.gamma,
    sampling: c.sampling,
    seed: c.seed,
    draftParams: c.draftParams,
  };
  const gens = await decode(m, spec);
  const problem = fitProblem(fitTarget(gens.map((g) => ({ tokens: g.tokens, logits: g.logits! })), c.sampling, c.seed));
  if (problem) throw new CaseFailure(`the speculative tokens are not distributed as the target's samples: ${problem}`, [runCommandLine(m, specFile, spec)]);
}

export interface CheckReport {
  readonly contract: Contract;
  readonly runs: number;
  readonly statRuns: number;
  readonly failure?: { readonly message: string; readonly replay: readonly string[]; readonly shrinks: number; readonly counterexample: string };
}

/** The property runs against prepared models: the exact cases, then (distribution contract) the statistical ones. */
export async function checkModels(dep: DeploymentIR, models: readonly CheckModel[], opts: CheckOptions, io: Io): Promise<CheckReport> {
  const { contract } = verifierContract(dep.verify);
  let done = 0;
  const prop = async <C>(name: string, arb: fc.Arbitrary<C>, runs: number, f: (c: C) => Promise<void>): Promise<CheckReport['failure']> => {
    done = 0;
    const details = await fc.check(
      fc.asyncProperty(arb, async (c) => {
        await f(c);
        done++;
        // Shrinking re-runs cases past `runs`: progress counts the first `runs` only.
        if (done <= runs) io.stderr.write(io.stderr.isTTY ? `\r${name} ${done}/${runs}` : `${name} ${done}/${runs} passed\n`);
      }),
      { numRuns: runs, seed: opts.seed },
    );
    if (io.stderr.isTTY) io.stderr.write('\n');
    if (!details.failed) return undefined;
    const err = details.errorInstance;
    if (!(err instanceof CaseFailure)) throw err instanceof Error ? err : new Error(String(err));
    return { message: err.message, replay: err.replay, shrinks: details.numShrinks, counterexample: fc.stringify(details.counterexample?.[0]) };
  };
  const exact = await prop('exact cases', exactCaseArb(dep, models), opts.runs, (c) => runExactCase(dep, models, opts.specFile, c));
  if (exact) return { contract, runs: done, statRuns: 0, failure: exact };
  const statRuns = contract === 'distribution' ? Math.max(1, Math.ceil(opts.runs / 4)) : 0;
  if (statRuns === 0) return { contract, runs: opts.runs, statRuns };
  const stat = await prop('statistical cases', statCaseArb(dep, models), statRuns, (c) => runStatCase(dep, models, opts.specFile, c));
  return { contract, runs: opts.runs, statRuns, ...(stat ? { failure: stat } : {}) };
}

/** What a passing report says, one line per fact. */
export function describeReport(dep: DeploymentIR, r: CheckReport, models: readonly CheckModel[]): string {
  const v = `verifier '${dep.verify.name}' (${dep.verify.mode})`;
  const lines = [`${models.length} model${models.length === 1 ? '' : 's'} of the ${dep.model.architecture} family, ${r.runs} case${r.runs === 1 ? '' : 's'}`];
  if (r.contract === 'exact') lines.push(`${v}: speculative == autoregressive bit for bit (tokens and logits) in every case: lossless`);
  if (r.contract === 'distribution')
    lines.push(
      `${v}: greedy requests speculative == autoregressive bit for bit; seeded sampled requests batch-invariant at fixed gammas; ` +
        `${r.statRuns} statistical case${r.statRuns === 1 ? '' : 's'} distributed as the target's samples (each test's false-alarm rate < ${PIT_FALSE_ALARM.toExponential(1)}): lossless in distribution`,
    );
  if (r.contract === 'lossy')
    lines.push(`${v}: LOSSY (declared lossy: true): sampled output is not the target's distribution and was not tested for it; greedy requests speculative == autoregressive bit for bit`);
  return lines.map((l) => `${l}\n`).join('');
}

/** Writes the models, compiles the modules, runs the properties. */
export async function checkDeployment(dep: DeploymentIR, opts: CheckOptions, io: Io): Promise<{ models: CheckModel[]; report: CheckReport }> {
  const models = await prepareModels(dep, opts, io);
  return { models, report: await checkModels(dep, models, opts, io) };
}
