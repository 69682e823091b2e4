// End to end through the runtime: a generated CPU module, a random tiny Llama, the Node binding and the C
// API. The central property (docs/ARCHITECTURE.md, invariant 1): self-speculative decoding emits exactly the tokens of
// autoregressive decoding, with bitwise-equal logits, whatever the gamma, the batch and the queueing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuBackend } from '../../codegen/backends/cpu.ts';
import { buildModule } from '../../codegen/build.ts';
import { loadSpecText } from '../../codegen/frontend/index.ts';
import { planModule } from '../../codegen/plan.ts';
import { writeRandomModel } from '../../model/random.ts';
import type { Engine as EngineT, EngineOptions, Generation } from '../../runtime/node/index.ts';
import { loadReferenceModel } from '../reference/llama.ts';
import { buildRuntime, REPO, runProgram, type RuntimeBuild } from './build-runtime.ts';

/** The deployment of SPEC for another model (a Hugging Face config.json path) and dtype. */
function specFor(model: string, dtype: string): string {
  return SPEC.replace('models.tiny', JSON.stringify(model)).replace("dtype: 'bf16'", `dtype: '${dtype}'`).replace(', models }', ' }');
}

async function buildSpec(text: string): Promise<string> {
  const loaded = loadSpecText(text, join(REPO, 'test/runtime/engine-spec.ts'));
  if (!loaded.deployment) throw new Error(loaded.diagnostics.map((d) => d.message).join('\n'));
  const plan = planModule(loaded.deployment);
  return (await buildModule({ name: plan.name, files: cpuBackend.emit(plan), target: 'cpu' })).library;
}

// Small pages and a short draft window, so prompts span several pages and split-KV chunks (chunk = 8 pages)
// and the draft really differs from the target (acceptance < 1: rejections and rollbacks happen).
const SPEC = `
import { attention, deploy, greedy, kvPolicy, models } from 'magicdec';
export const causal = attention({ name: 'causal', mask: (q, kv) => kv <= q });
export const everything = kvPolicy({ name: 'everything', keep: () => true });
export const sinkWindow = kvPolicy({
  name: 'sink_window',
  params: { sink: 4, window: 24 },
  keep: (kv, len, p) => kv < p.sink || kv >= len - p.window,
});
export default deploy({
  model: models.tiny,
  target: { attention: causal, kv: everything },
  draft: { attention: causal, kv: sinkWindow },
  verify: greedy,
  gamma: 3,
  shapes: { batch: [1, 4], maxSeq: 512, pageSize: 16 },
  dtype: 'bf16',
  arch: 'cpu',
});
`;

const root = mkdtempSync(join(tmpdir(), 'md-engine-'));
let rt: RuntimeBuild;
let library: string;
let Engine: typeof EngineT;
const bf16Model = join(root, 'bf16');
const fp32Model = join(root, 'fp32');

// Lengths cross page (16), chunk (128) and prefill-chunk (16 rows) boundaries.
const PROMPT_LENGTHS = [1, 5, 17, 40, 133];
const prompts = PROMPT_LENGTHS.map((n, k) => Array.from({ length: n }, (_, i) => (i * 37 + k * 101 + 3) % 512));
const MAX_TOKENS = 48;

beforeAll(async () => {
  rt = buildRuntime();
  ({ Engine } = await import('../../runtime/node/index.ts'));
  library = await buildSpec(SPEC);
  writeRandomModel({ seed: 11, dtype: 'bf16', out: bf16Model });
  // Same values rounded from fp32 differently: a different model, loaded through conversion to bf16.
  writeRandomModel({ seed: 11, dtype: 'fp32', out: fp32Model, shards: 2 });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function withEngine<T>(model: string, opts: EngineOptions, f: (e: EngineT) => Promise<T>): Promise<T> {
  const e = await Engine.create(model, library, { keepLogits: true, ...opts });
  try {
    return await f(e);
  } finally {
    e.close();
  }
}

/** Autoregressive, one request at a time: the reference every other schedule must match bit for bit. */
async function reference(model: string): Promise<Generation[]> {
  return withEngine(model, { mode: 'ar', maxBatch: 1 }, async (e) => {
    const out: Generation[] = [];
    for (const p of prompts) out.push(await e.generate(p, { maxTokens: MAX_TOKENS, ignoreEos: true }));
    return out;
  });
}

function expectSameOutput(got: Generation, want: Generation, what: string): void {
  expect(got.tokens, what).toEqual(want.tokens);
  expect(got.logits?.length, what).toBe(want.logits?.length);
  for (let i = 0; i < want.logits!.length; i++) {
    const a = Buffer.from(got.logits![i].buffer, got.logits![i].byteOffset, got.logits![i].byteLength);
    const b = Buffer.from(want.logits![i].buffer, want.logits![i].byteOffset, want.logits![i].byteLength);
    if (!a.equals(b)) expect.fail(`${what}: logits of token ${i} differ bitwise`);
  }
}

describe('engine: speculative == autoregressive, bitwise', () => {
  let ref: Generation[];
  beforeAll(async () => {
    ref = await reference(bf16Model);
  });

  it('the reference generates full-length, varied output', () => {
    for (const g of ref) {
      expect(g.tokens).toHaveLength(MAX_TOKENS);
      expect(g.reason).toBe('length');
      expect(new Set(g.tokens).size).toBeGreaterThan(4);
      expect(g.logits![0]).toHaveLength(512);
    }
  });

  it('batched autoregressive decoding matches one-at-a-time (row invariance across buckets)', async () => {
    await withEngine(bf16Model, { mode: 'ar', maxBatch: 4 }, async (e) => {
      const got = await Promise.all(prompts.map((p) => e.generate(p, { maxTokens: MAX_TOKENS, ignoreEos: true })));
      got.forEach((g, i) => expectSameOutput(g, ref[i], `ar batched, prompt ${i}`));
      // Five requests, four slots: buckets 1 and 4 both ran.
      expect(Object.keys(e.stats().bucketRounds).sort()).toEqual(['1', '4']);
    });
  });

  for (const gamma of [1, 2, 3]) {
    it(`speculative with gamma ${gamma}, all prompts batched, matches the reference`, async () => {
      await withEngine(bf16Model, { mode: 'spec', gamma, maxBatch: 4 }, async (e) => {
        const got = await Promise.all(prompts.map((p) => e.generate(p, { maxTokens: MAX_TOKENS, ignoreEos: true })));
        got.forEach((g, i) => expectSameOutput(g, ref[i], `spec gamma ${gamma}, prompt ${i}`));
        const s = e.stats();
        expect(s.rounds).toBeGreaterThan(0);
        // The short draft window makes the draft wrong sometimes, so rollbacks were exercised.
        expect(s.accepted).toBeLessThan(s.drafted);
        expect(s.accepted).toBeGreaterThan(0);
        // The Node API's kernel times: draft and verify steps ran every class, no AR step ran, within the steps.
        const k = s.kernelS;
        expect(Object.keys(k)).toEqual(['prefill', 'ar', 'draft', 'verify']);
        expect(k.ar).toEqual({ attention: 0, gemm: 0, normRope: 0, other: 0 });
        for (const kind of ['prefill', 'draft', 'verify'] as const) for (const t of Object.values(k[kind])) expect(t, kind).toBeGreaterThan(0);
        const total = (t: object) => Object.values(t).reduce((a: number, b: number) => a + b, 0);
        expect(total(k.draft)).toBeLessThanOrEqual(s.draftS);
        expect(total(k.verify)).toBeLessThanOrEqual(s.verifyS);
        for (const g of got) {
          expect(g.stats.drafted).toBe(g.stats.rounds * gamma);
          expect(g.stats.tokensPerRound).toBeGreaterThanOrEqual(1);
          expect(g.stats.tokensPerRound).toBeLessThanOrEqual(gamma + 1);
        }
      });
    });
  }

  for (const mode of ['ar', 'spec'] as const) {
    it(`${mode}: a request's keepLogits keeps its logits (bitwise the reference's) on an engine without keepLogits; the others get none`, async () => {
      await withEngine(bf16Model, { mode, maxBatch: 4, keepLogits: false }, async (e) => {
        const asks = [true, false, true, false, true];
        const streams = prompts.map((p, i) => e.stream(p, { maxTokens: MAX_TOKENS, ignoreEos: true, keepLogits: asks[i] }));
        const got = await Promise.all(
          streams.map(async (s, i) => {
            let k = 0;
            for await (const _ of s) {
              // The stream's row of each token is there as soon as the token is.
              if (asks[i]) expect(s.logits(k), `prompt ${i} token ${k}`).toBeInstanceOf(Float32Array);
              else expect(s.logits(k)).toBeUndefined();
              k++;
            }
            return s.generation;
          }),
        );
        got.forEach((g, i) => {
          if (asks[i]) expectSameOutput(g, ref[i], `${mode} keepLogits, prompt ${i}`);
          else {
            expect(g.tokens).toEqual(ref[i].tokens);
            expect(g.logits).toBeUndefined();
          }
        });
      });
    });
  }

  it('speculative with one slot and a 7-row prefill chunk matches too', async () => {
    await withEngine(bf16Model, { mode: 'spec', maxBatch: 1, prefillChunk: 7 }, async (e) => {
      const got = await Promise.all(prompts.map((p) => e.generate(p, { maxTokens: MAX_TOKENS, ignoreEos: true })));
      got.forEach((g, i) => expectSameOutput(g, ref[i], `spec maxBatch 1, prompt ${i}`));
    });
  });

  it('a wider draft window changes acceptance, never the output', async () => {
    await withEngine(bf16Model, { mode: 'spec', maxBatch: 4 }, async (e) => {
      e.setParam('draft', 'kv_window', 500);
      const got = await Promise.all(prompts.map((p) => e.generate(p, { maxTokens: MAX_TOKENS, ignoreEos: true })));
      got.forEach((g, i) => expectSameOutput(g, ref[i], `spec window 500, prompt ${i}`));
      expect(e.stats().acceptance).toBeGreaterThan(0.9);
      expect(() => e.setParam('draft', 'kv_nope', 1)).toThrow("the draft pass has no param 'kv_nope' (it has: kv_sink, kv_window)");
    });
  });

  it('stops at a stop token, and streams the same tokens', async () => {
    const want = ref[3];
    const stop = want.tokens[10];
    const cut = want.tokens.indexOf(stop) + 1;
    await withEngine(bf16Model, { mode: 'spec' }, async (e) => {
      const it = e.stream(prompts[3], { maxTokens: MAX_TOKENS, stopTokens: [stop], ignoreEos: true });
      const streamed: number[] = [];
      for await (const t of it) streamed.push(t);
      expect(streamed).toEqual(want.tokens.slice(0, cut));
      const g = await it.generation;
      expect(g.reason).toBe('stop');
      expect(g.tokens).toEqual(streamed);
    });
  });

  it("the C API: md_request_options.keep_logits keeps one request's logits on an engine without keep_logits", () => {
    const r = runProgram(rt.capi, ['logits', bf16Model, library, '12', ...prompts[2].map(String)]);
    expect(r.stdout.trim(), r.stdout).toBe('ok');
    expect(r.status).toBe(0);
  });

  it('the C API generates the same tokens, autoregressive and speculative (gamma 2, auto and off)', () => {
    for (const [mode, gamma] of [['ar', '2'], ['spec', '2'], ['spec', 'auto'], ['spec', 'off']]) {
      const r = runProgram(rt.capi, ['generate', bf16Model, library, mode, gamma, String(MAX_TOKENS), ...prompts[2].map(String)]);
      expect(r.status, r.stdout).toBe(0);
      const [tokens, stats, gammas, kernels] = r.stdout.trim().split('\n');
      expect(tokens.split(' ').map(Number)).toEqual(ref[2].tokens);
      const s = JSON.parse(stats);
      expect(s).toMatchObject({ generated: MAX_TOKENS, finish: 2, state: 3 });
      const g = JSON.parse(gammas) as { gamma: number; meanGamma: number; gammaRounds: number[] };
      expect(g.gamma).toBe(gamma === 'auto' ? -1 : gamma === 'off' ? -2 : 2); // MD_GAMMA_AUTO, MD_GAMMA_OFF
      expect(g.gammaRounds).toHaveLength(4); // the module's gamma 3, plus gamma 0
      expect(g.gammaRounds.reduce((a, b) => a + b, 0)).toBe(s.rounds);
      expect(g.gammaRounds.reduce((a, n, k) => a + k * n, 0)).toBe(s.drafted);
      if (mode === 'spec' && gamma === '2') expect(g.gammaRounds).toEqual([0, 0, s.rounds, 0]);
      expect(g.meanGamma).toBeCloseTo(s.rounds ? s.drafted / s.rounds : 0, 12);
      // Kernel time by step kind (prefill, AR, draft, verify) x class (attention, GEMM, norm+RoPE, other):
      // every class ran in the kinds this mode runs, none in the others, and all of it inside the steps.
      const k = JSON.parse(kernels) as { prefillS: number; decodeS: number; draftS: number; verifyS: number; kernelS: number[] };
      expect(k.kernelS).toHaveLength(16);
      const kind = (i: number) => k.kernelS.slice(4 * i, 4 * i + 4);
      const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
      // A speculative engine at gamma 'off' runs AR steps only.
      const ran = mode === 'ar' || gamma === 'off' ? [0, 1] : [0, 2, 3];
      for (let i = 0; i < 4; ++i) {
        if (ran.includes(i)) for (const t of kind(i)) expect(t, `${mode} kind ${i}`).toBeGreaterThan(0);
        else expect(kind(i)).toEqual([0, 0, 0, 0]);
      }
      expect(sum(kind(0))).toBeLessThanOrEqual(k.prefillS);
      expect(sum(kind(1))).toBeLessThanOrEqual(k.decodeS);
      expect(sum(kind(2))).toBeLessThanOrEqual(k.draftS);
      expect(sum(kind(3))).toBeLessThanOrEqual(k.verifyS);
      if (ran.includes(1)) expect(sum(kind(1))).toBeGreaterThan(0.5 * k.decodeS);
    }
  });

  it("gamma 'auto': the engine picks 1..module gamma per round, says what it chose, and matches the reference", async () => {
    await withEngine(bf16Model, { mode: 'spec', gamma: 'auto', maxBatch: 4 }, async (e) => {
      expect((e.info().options as { gamma: unknown; gammaMax: number })).toMatchObject({ gamma: 'auto', gammaMax: 3 });
      const got = await Promise.all(prompts.map((p) => e.generate(p, { maxTokens: MAX_TOKENS, ignoreEos: true })));
      got.forEach((g, i) => expectSameOutput(g, ref[i], `spec gamma auto, prompt ${i}`));
      const s = e.stats();
      const chosen = Object.entries(s.gammaRounds).map(([g, n]) => [Number(g), n]);
      expect(chosen.reduce((a, [, n]) => a + n, 0)).toBe(s.rounds);
      for (const [g] of chosen) expect(g >= 1 && g <= 3).toBe(true);
      expect(s.meanGamma).toBeCloseTo(chosen.reduce((a, [g, n]) => a + g * n, 0) / s.rounds, 12);
      expect(s.gamma).toBe('auto');
      expect(s.acceptanceEstimate).toBeGreaterThan(0);
      expect(s.acceptanceEstimate).toBeLessThan(1);
    });
  });

  it("gamma 'off': a speculative engine decodes autoregressively (no draft, no round) and matches the reference", async () => {
    await withEngine(bf16Model, { mode: 'spec', gamma: 'off', maxBatch: 4 }, async (e) => {
      expect((e.info().options as { gamma: unknown }).gamma).toBe('off');
      const got = await Promise.all(prompts.map((p) => e.generate(p, { maxTokens: MAX_TOKENS, ignoreEos: true })));
      got.forEach((g, i) => expectSameOutput(g, ref[i], `spec gamma off, prompt ${i}`));
      const s = e.stats();
      expect(s.rounds).toBe(0);
      expect(s.drafted).toBe(0);
      expect(s.arSteps).toBeGreaterThanOrEqual(MAX_TOKENS - 1);
      expect(s.decodeS).toBeGreaterThan(0);
      expect(s.kernelS.draft.attention).toBe(0);
    });
  });

  it('an fp32 sharded model is converted to the module dtype at load and decodes consistently', async () => {
    const ref32 = await reference(fp32Model);
    await withEngine(fp32Model, { mode: 'spec', maxBatch: 4 }, async (e) => {
      expect((e.info().model as { convertedBytes: number }).convertedBytes).toBeGreaterThan(0);
      const got = await Promise.all(prompts.map((p) => e.generate(p, { maxTokens: MAX_TOKENS, ignoreEos: true })));
      got.forEach((g, i) => expectSameOutput(g, ref32[i], `fp32 model, prompt ${i}`));
    });
  });
});

describe('engine: bad input and resource limits', () => {
  it('rejects a model that differs from the module, naming the field', async () => {
    const other = join(root, 'three-layers');
    writeRandomModel({ seed: 1, dtype: 'bf16', out: other, config: { numLayers: 3 } });
    await expect(Engine.create(other, library)).rejects.toThrow(`model.numLayers is 2 but ${other}/config.json gives 3`);
  });

  it('rejects bad options and bad requests with clear errors, and keeps serving', async () => {
    await expect(Engine.create(bf16Model, library, { gamma: 4 })).rejects.toThrow('option gamma: 4 outside 1..3');
    await expect(Engine.create(bf16Model, library, { maxBatch: 5 })).rejects.toThrow('option max_batch: 5 outside 1..4');
    await withEngine(bf16Model, { mode: 'spec' }, async (e) => {
      expect(() => e.generate([], {})).toThrow('request: the prompt is empty');
      expect(() => e.generate([1, 512], {})).toThrow('request: prompt token 1 is 512, outside the vocabulary [0, 512)');
      expect(() => e.generate([1, -1], {})).toThrow('prompt token 1 is -1');
      expect(() => e.generate([1], { maxTokens: 0 })).toThrow('max_tokens must be at least 1');
      expect(() => e.generate([1], { maxTokens: 600 })).toThrow("= 604 exceeds the module's maxSeq 512");
      expect(() => e.generate([1], { stopTokens: [9999] })).toThrow('stop token 9999 is outside the vocabulary');
      const g = await e.generate(prompts[1], { maxTokens: 5, ignoreEos: true });
      expect(g.tokens).toHaveLength(5);
    });
  });

  it('queues requests the KV pool cannot hold yet, and refuses ones it never can', async () => {
    // 12 pages of 16 positions: one request of 133 + 48 + 3 positions needs 12 pages, so requests run one at
    // a time though four slots are free.
    await withEngine(bf16Model, { mode: 'spec', kvPages: 12 }, async (e) => {
      expect(() => e.generate(Array(150).fill(1), { maxTokens: 100 })).toThrow('needs 16 KV pages, the pool has only 12 (raise kv_pages)');
      const got = await Promise.all([4, 4].map((k) => e.generate(prompts[k], { maxTokens: MAX_TOKENS, ignoreEos: true })));
      expect(got[0].tokens).toEqual(got[1].tokens);
      expect(e.stats().freePages).toBe(12);
      expect(e.stats().bucketRounds).not.toHaveProperty('4');
    });
  });
});

describe('engine: the model forward against the independent float64 reference', () => {
  const prompt = Array.from({ length: 70 }, (_, i) => (i * 37 + 5) % 500);

  async function compare(dir: string, lib: string): Promise<{ maxDiff: number; tokens: number[] }> {
    const g = await withEngineAt(dir, lib, (e) => e.generate(prompt, { maxTokens: 24, ignoreEos: true }));
    const ref = loadReferenceModel(dir).forward([...prompt, ...g.tokens.slice(0, -1)]);
    let maxDiff = 0;
    g.tokens.forEach((_, i) => {
      const want = ref[prompt.length - 1 + i];
      for (let v = 0; v < want.length; v++) maxDiff = Math.max(maxDiff, Math.abs(want[v] - g.logits![i][v]));
    });
    return { maxDiff, tokens: g.tokens };
  }

  async function withEngineAt<T>(dir: string, lib: string, f: (e: EngineT) => Promise<T>): Promise<T> {
    const e = await Engine.create(dir, lib, { mode: 'spec', keepLogits: true });
    try {
      return await f(e);
    } finally {
      e.close();
    }
  }

  it('Llama, bf16 weights and KV cache: logits within bf16 rounding of the reference', async () => {
    const { maxDiff } = await compare(bf16Model, library);
    expect(maxDiff).toBeLessThan(0.05); // logits span about +-14; the bf16 KV cache rounds K/V to 8 bits
  });

  it('Qwen2 (q/k/v biases) with Llama 3.1 rope scaling, fp32: logits within 1e-4, greedy tokens equal', async () => {
    const dir = join(root, 'qwen2');
    writeRandomModel({
      seed: 5,
      dtype: 'fp32',
      out: dir,
      config: {
        architecture: 'qwen2',
        qkvBias: true,
        // A short original context so that positions of the prompt fall in all three llama3 bands.
        ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 },
      },
    });
    const lib = await buildSpec(specFor(join(dir, 'config.json'), 'fp32'));
    const { maxDiff, tokens } = await compare(dir, lib);
    expect(maxDiff).toBeLessThan(1e-4);
    expect(tokens).toEqual(loadReferenceModel(dir).greedy(prompt, 24));
  });
});
