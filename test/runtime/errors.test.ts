// Bad input through the engine (docs/ARCHITECTURE.md, invariant 4): a clear error that names what is wrong and where,
// no crash, and other work goes on. What test/runtime/model-files.test.ts already pins for checkModel
// (config fields, headers, tensors, shards) is not repeated; this file covers the engine's paths: broken
// models and modules at Engine.create while another engine is decoding, unsupported architectures, a module
// built for another model (every checked field), requests at and past the module's maxSeq, bad options,
// bad request values, closing an engine mid-request, and bad runtime params.
import { mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelConfig } from '../../dsl/models.ts';
import { writeRandomModel } from '../../model/random.ts';
import type { Engine as EngineT, Generation } from '../../runtime/node/index.ts';
import { bitwiseMismatch, prepareCase, withEngine, type PreparedCase } from '../support/runtime-cases.ts';
import { copyModel, editConfig } from '../support/runtime-files.ts';
import { buildRuntime, type RuntimeBuild } from './build-runtime.ts';

const root = mkdtempSync(join(tmpdir(), 'md-errors-'));
let rt: RuntimeBuild;
let Engine: typeof EngineT;
let p: PreparedCase;
let n = 0;
const fresh = (what: string) => join(root, `${what}-${n++}`);

beforeAll(async () => {
  rt = buildRuntime();
  ({ Engine } = await import('../../runtime/node/index.ts'));
  p = await prepareCase('tiedBf16', root);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5];
const MAX_TOKENS = 30;

/** The request decoded alone on a fresh engine: what a disturbed engine must still produce. */
async function alone(opts: { prompt?: number[]; maxTokens?: number } = {}): Promise<Generation> {
  return withEngine(Engine, p, { mode: 'ar', maxBatch: 1 }, (e) => e.generate(opts.prompt ?? prompt, { maxTokens: opts.maxTokens ?? MAX_TOKENS, ignoreEos: true }));
}

describe('a broken model at Engine.create: a clear error, and a running engine goes on', () => {
  const st = (dir: string) => join(dir, 'model.safetensors');
  const cases: [string, (dir: string) => void, (dir: string) => string | RegExp][] = [
    ['missing safetensors', (d) => rmSync(st(d)), (d) => `${st(d)}: cannot open`],
    [
      'safetensors truncated inside the data section',
      (d) => truncateSync(st(d), Math.floor(statSync(st(d)).size * 0.6)),
      (d) => new RegExp(`${st(d)}: tensor '[^']+': data_offsets \\[\\d+, \\d+\\] fall outside the data section`),
    ],
    ['an empty safetensors file', (d) => writeFileSync(st(d), ''), (d) => `${st(d)}: too short for a safetensors file (0 bytes)`],
    [
      'an unsupported model_type',
      (d) => editConfig(d, (c) => (c.model_type = 'gpt2')),
      (d) => `${d}/config.json: field 'model_type' is 'gpt2'; supported: llama, mistral, qwen2`,
    ],
    [
      'an unsupported architecture with no model_type',
      (d) =>
        editConfig(d, (c) => {
          delete c.model_type;
          c.architectures = ['GPT2LMHeadModel'];
        }),
      (d) => `${d}/config.json: field 'architectures' names 'GPT2LMHeadModel'; supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM`,
    ],
    ['no config.json', (d) => rmSync(join(d, 'config.json')), (d) => `${d}/config.json: cannot open`],
  ];

  it('for each breakage, while another engine decodes', async () => {
    const want = await alone();
    await withEngine(Engine, p, { mode: 'spec' }, async (e) => {
      const running = e.generate(prompt, { maxTokens: MAX_TOKENS, ignoreEos: true });
      for (const [what, breakIt, message] of cases) {
        const dir = copyModel(p.modelDir, fresh('broken'));
        breakIt(dir);
        await expect(Engine.create(dir, p.library), what).rejects.toThrow(message(dir));
      }
      const why = bitwiseMismatch(await running, want);
      expect(why).toBeUndefined();
    });
  });
});

describe('a module that does not fit', () => {
  it('names a missing file, a file that is not a library, and a library that is not a magicdec module', async () => {
    const missing = join(root, 'no-such-module.so');
    await expect(Engine.create(p.modelDir, missing)).rejects.toThrow(`${missing}: cannot load module:`);
    const notElf = join(p.modelDir, 'config.json');
    await expect(Engine.create(p.modelDir, notElf)).rejects.toThrow(`${notElf}: cannot load module:`);
    await expect(Engine.create(p.modelDir, rt.lib)).rejects.toThrow(`${rt.lib}: module does not export 'md_module_manifest' (not a magicdec module, or built for another ABI)`);
  });

  // Every field the runtime checks against the manifest, changed alone.
  const m = () => p.case.model;
  const fields: [string, () => Partial<ModelConfig>, () => [string, string]][] = [
    ['hiddenSize', () => ({ hiddenSize: m().hiddenSize + 2 }), () => [`${m().hiddenSize}`, `${m().hiddenSize + 2}`]],
    ['intermediateSize', () => ({ intermediateSize: m().intermediateSize + 16 }), () => [`${m().intermediateSize}`, `${m().intermediateSize + 16}`]],
    ['numHeads', () => ({ numHeads: m().numHeads * 2, numKvHeads: m().numKvHeads * 2 }), () => [`${m().numHeads}`, `${m().numHeads * 2}`]],
    ['headDim', () => ({ headDim: m().headDim + 2 }), () => [`${m().headDim}`, `${m().headDim + 2}`]],
    ['vocabSize', () => ({ vocabSize: m().vocabSize + 1 }), () => [`${m().vocabSize}`, `${m().vocabSize + 1}`]],
    // Floating-point fields print as JSON doubles on both sides.
    ['ropeTheta', () => ({ ropeTheta: m().ropeTheta * 2 }), () => [`${m().ropeTheta}.0`, `${m().ropeTheta * 2}.0`]],
    ['rmsNormEps', () => ({ rmsNormEps: 1e-6 }), () => ['1e-05', '1e-06']],
    ['tieWordEmbeddings', () => ({ tieWordEmbeddings: !m().tieWordEmbeddings }), () => [`${m().tieWordEmbeddings}`, `${!m().tieWordEmbeddings}`]],
    ['architecture', () => ({ architecture: 'qwen2', qkvBias: true }), () => [m().architecture, 'qwen2']],
    ['ropeScaling', () => ({ ropeScaling: { type: 'linear', factor: 2 } }), () => ['null', 'rope_type linear']],
  ];
  it.each(fields)('a model whose %s differs is refused, naming the field and both values', async (field, change, values) => {
    const dir = fresh(`other-${field}`);
    writeRandomModel({ seed: 3, dtype: 'bf16', out: dir, config: { ...m(), ...change() } });
    const [moduleValue, modelValue] = values();
    await expect(Engine.create(dir, p.library)).rejects.toThrow(
      `${p.library} (manifest): model.${field} is ${moduleValue} but ${dir}/config.json gives ${modelValue} (the module was built for a different model)`,
    );
  });
});

describe("Mistral's sliding window is part of the module", () => {
  it('a model whose window differs, or that has none, is refused naming slidingWindow', async () => {
    const mistral = await prepareCase('mistral', root);
    const w = mistral.case.model.slidingWindow!;
    for (const [window, shown] of [[w + 1, `${w + 1}`], [undefined, 'none']] as const) {
      const dir = fresh(`mistral-window-${shown}`);
      const { slidingWindow: _, ...rest } = mistral.case.model;
      writeRandomModel({ seed: 3, dtype: 'fp32', out: dir, config: { ...rest, ...(window ? { slidingWindow: window } : {}) } });
      await expect(Engine.create(dir, mistral.library)).rejects.toThrow(
        `${mistral.library} (manifest): model.slidingWindow is ${w} but ${dir}/config.json gives ${shown} (the module was built for a different model)`,
      );
    }
  });
});

describe('requests against the module limits', () => {
  const maxSeq = () => p.case.maxSeq;

  it("a prompt longer than the module's maxSeq is refused; one that exactly fills it decodes to the end", async () => {
    // Whatever gamma the engine runs, it reserves the module's past max_tokens: a later setGamma or 'auto' may use it all.
    await withEngine(Engine, p, { mode: 'spec', gamma: 1 }, async (e) => {
      const gamma = p.case.gamma;
      const long = Array.from({ length: maxSeq() + 1 }, (_, i) => (i * 7) % p.case.model.vocabSize);
      expect(() => e.generate(long, { maxTokens: 1 })).toThrow(
        `request: prompt (${maxSeq() + 1}) + max_tokens (1) + the module's gamma (${gamma}) = ${maxSeq() + 2 + gamma} exceeds the module's maxSeq ${maxSeq()}`,
      );
      e.setGamma(gamma);
      // prompt + max_tokens + the speculative overshoot: exactly maxSeq is allowed, one more is not.
      const fits = long.slice(0, maxSeq() - gamma - 4);
      expect(() => e.generate([...fits, 1], { maxTokens: 4 })).toThrow(`exceeds the module's maxSeq ${maxSeq()}`);
      const g = await e.generate(fits, { maxTokens: 4, ignoreEos: true });
      expect(bitwiseMismatch(g, await alone({ prompt: fits, maxTokens: 4 }))).toBeUndefined();
      expect(e.stats().freePages).toBe((e.info().options as { kvPages: number }).kvPages);
    });
  });

  it('autoregressive mode has no overshoot: prompt + max_tokens == maxSeq decodes', async () => {
    await withEngine(Engine, p, { mode: 'ar' }, async (e) => {
      const fits = Array.from({ length: maxSeq() - 3 }, (_, i) => (i * 5) % p.case.model.vocabSize);
      const g = await e.generate(fits, { maxTokens: 3, ignoreEos: true });
      expect(g.tokens).toHaveLength(3);
      expect(() => e.generate(fits, { maxTokens: 4 })).toThrow(`request: prompt (${fits.length}) + max_tokens (4) = ${maxSeq() + 1} exceeds the module's maxSeq ${maxSeq()}`);
    });
  });

  it('bad engine options are named', async () => {
    const rows = 8 * (p.case.gamma + 1);
    await expect(Engine.create(p.modelDir, p.library, { kvPages: -1 })).rejects.toThrow('option kv_pages: must be positive, got -1');
    await expect(Engine.create(p.modelDir, p.library, { prefillChunk: rows + 1 })).rejects.toThrow(`option prefill_chunk: ${rows + 1} outside 1..${rows}`);
    await expect(Engine.create(p.modelDir, p.library, { gamma: p.case.gamma + 1 })).rejects.toThrow(`option gamma: ${p.case.gamma + 1} outside 1..${p.case.gamma}`);
    for (const bad of ['fast', -1, -2, 1.5, Number.NaN])
      await expect(Engine.create(p.modelDir, p.library, { gamma: bad as number })).rejects.toThrow("option gamma must be 'auto', 'off' or an integer from 1 to the module's gamma, got");
    await withEngine(Engine, p, { mode: 'spec' }, async (e) => {
      for (const bad of [0, p.case.gamma + 1]) expect(() => e.setGamma(bad)).toThrow(`gamma: ${bad} outside 1..${p.case.gamma} and neither auto nor off`);
      expect(() => e.setGamma('often' as 'auto')).toThrow("gamma must be 'auto', 'off' or an integer");
      for (const g of ['auto', 'off'] as const) {
        e.setGamma(g);
        expect(e.stats().gamma).toBe(g);
        expect((e.info().options as { gamma: unknown }).gamma).toBe(g);
      }
    });
    await expect(Engine.create(p.modelDir, p.library, { maxBatch: 2.5 })).rejects.toThrow('option maxBatch must be an integer in the int32 range, got 2.5');
    await expect(Engine.create(p.modelDir, p.library, { mode: 'fast' as 'ar' })).rejects.toThrow("option mode must be 'ar' or 'spec', got 'fast'");
  });

  it('bad request values are refused synchronously while other requests decode undisturbed', async () => {
    const want = await alone();
    await withEngine(Engine, p, { mode: 'spec' }, async (e) => {
      const running = e.generate(prompt, { maxTokens: MAX_TOKENS, ignoreEos: true });
      expect(() => e.generate([1, 2.5], {})).toThrow('prompt[1] is not an int32');
      expect(() => e.generate('abc' as unknown as number[], {})).toThrow('prompt must be an array of integers or an Int32Array');
      expect(() => e.generate([1], { stopTokens: [Number.NaN] })).toThrow('stopTokens[0] is not an int32');
      expect(() => e.generate([1], { maxTokens: 2 ** 40 })).toThrow('option maxTokens must be an integer in the int32 range, got 1099511627776');
      expect(bitwiseMismatch(await running, want)).toBeUndefined();
    });
  });
});

describe('closing', () => {
  it('rejects the requests in flight and later calls, and other engines go on', async () => {
    const want = await alone();
    await withEngine(Engine, p, { mode: 'spec' }, async (other) => {
      const running = other.generate(prompt, { maxTokens: MAX_TOKENS, ignoreEos: true });
      const e = await Engine.create(p.modelDir, p.library, { mode: 'spec' });
      const doomed = e.generate(prompt, { maxTokens: MAX_TOKENS, ignoreEos: true });
      const it = e.stream(prompt, { maxTokens: MAX_TOKENS, ignoreEos: true });
      e.close();
      await expect(doomed).rejects.toThrow(/request \d+: engine closed/);
      await expect(it.next()).rejects.toThrow(/request \d+: engine closed/);
      expect(() => e.generate(prompt)).toThrow('engine is closed');
      expect(() => e.stats()).toThrow('engine is closed');
      e.close(); // twice is fine
      expect(bitwiseMismatch(await running, want)).toBeUndefined();
    });
  });
});

describe('runtime params', () => {
  it('a bad pass, key or value is refused and leaves the params as they were', async () => {
    const want = await alone();
    await withEngine(Engine, p, { mode: 'spec' }, async (e) => {
      const before = JSON.stringify(e.info().params);
      expect(() => e.setParam('verify' as 'draft', 'kv_window', 4)).toThrow("set_param: pass must be 'target' or 'draft', got 'verify'");
      expect(() => e.setParam('target', 'kv_window', 4)).toThrow("set_param: the target pass has no param 'kv_window' (it has: none)");
      for (const bad of [Number.NaN, Number.NEGATIVE_INFINITY]) {
        expect(() => e.setParam('draft', 'kv_window', bad), `kv_window = ${bad}`).toThrow("set_param: draft param 'kv_window' must be finite, got");
      }
      for (const [bad, shown] of [[2.5, '2.5'], [-0.5, '-0.5'], [2 ** 25, '33554432']] as const) {
        expect(() => e.setParam('draft', 'kv_window', bad), `kv_window = ${bad}`).toThrow(
          `set_param: draft param 'kv_window' is an i32: it takes integers of magnitude up to 2^24, got ${shown}`,
        );
      }
      e.setParam('draft', 'kv_window', 2 ** 24); // the largest exact one is fine
      e.setParam('draft', 'kv_window', 32);
      expect(JSON.stringify(e.info().params)).toBe(before);
      expect(bitwiseMismatch(await e.generate(prompt, { maxTokens: MAX_TOKENS, ignoreEos: true }), want)).toBeUndefined();
    });
  });
});
