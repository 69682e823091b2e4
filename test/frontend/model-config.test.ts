// readHfConfig on real-looking Hugging Face configs (Llama 3.1, Mistral, Qwen2), its errors, the round
// trip through modelConfigToHf, and the config.json cases it shares with the runtime's reader.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { models, type ModelConfig } from '../../dsl/models.ts';
import { modelConfigProblem, modelConfigToHf, readHfConfig, readHfConfigFile } from '../../codegen/model-config.ts';

const llama31 = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: 128001,
  hidden_act: 'silu',
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.43.0.dev0',
  use_cache: true,
  vocab_size: 128256,
};

const mistral = {
  architectures: ['MistralForCausalLM'],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: 'mistral',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_theta: 1000000.0,
  sliding_window: null,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  vocab_size: 32768,
};

const qwen2 = {
  architectures: ['Qwen2ForCausalLM'],
  attention_dropout: 0.0,
  hidden_act: 'silu',
  hidden_size: 896,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 21,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  use_sliding_window: false,
  vocab_size: 151936,
};

const read = (o: object, file = 'models/x/config.json') => readHfConfig(JSON.stringify(o), file);

describe('readHfConfig', () => {
  it('reads Llama 3.1 8B, matching the built-in preset', () => {
    expect(read(llama31, 'hf/llama-3.1-8b/config.json')).toEqual(models.llama31_8b);
  });

  it("reads Mistral's sliding window: absent means Hugging Face's 4096, null means none", () => {
    const { sliding_window: _, ...absent } = mistral;
    expect(read(absent, 'a/config.json').slidingWindow).toBe(4096);
    expect(read({ ...mistral, sliding_window: 512 }, 'b/config.json').slidingWindow).toBe(512);
    expect(read(mistral, 'c/config.json')).not.toHaveProperty('slidingWindow');
    expect(() => read({ ...mistral, sliding_window: 0 }, 'd/config.json')).toThrow(/d\/config\.json: field 'sliding_window'/);
    expect(() => read({ ...qwen2, use_sliding_window: true }, 'e/config.json')).toThrow(/e\/config\.json: field 'use_sliding_window' is true/);
  });

  it('reads Mistral 7B v0.3 (no rope scaling)', () => {
    const m = read(mistral, 'hf/Mistral-7B-v0.3/config.json');
    expect(m).toEqual({
      name: 'Mistral-7B-v0.3',
      architecture: 'mistral',
      hiddenSize: 4096,
      intermediateSize: 14336,
      numLayers: 32,
      numHeads: 32,
      numKvHeads: 8,
      headDim: 128,
      vocabSize: 32768,
      maxPositionEmbeddings: 32768,
      ropeTheta: 1000000,
      rmsNormEps: 1e-5,
      qkvBias: false,
      tieWordEmbeddings: false,
    });
  });

  it('reads Qwen2 0.5B: QKV bias, tied embeddings, head_dim from hidden/heads', () => {
    const m = read(qwen2, 'hf/Qwen2-0.5B/config.json');
    expect(m.architecture).toBe('qwen2');
    expect(m.qkvBias).toBe(true);
    expect(m.tieWordEmbeddings).toBe(true);
    expect(m.headDim).toBe(64);
    expect(m.numKvHeads).toBe(2);
    expect(m.name).toBe('Qwen2-0.5B');
  });

  it('defaults num_key_value_heads to the head count and reads linear rope scaling (Llama 2 32K)', () => {
    const { num_key_value_heads: _, ...cfg } = { ...llama31, num_key_value_heads: 32, intermediate_size: 11008, vocab_size: 32000, max_position_embeddings: 32768, rope_theta: 10000, rope_scaling: { type: 'linear', factor: 8 }, bos_token_id: 1, eos_token_id: 2 };
    const m = read(cfg, 'hf/llama-2-7b-32k/config.json');
    expect(m).toEqual(models.llama2_7b_32k);
  });

  it('takes the architecture from `architectures` when model_type is absent', () => {
    const { model_type: _, ...cfg } = mistral;
    expect(read(cfg).architecture).toBe('mistral');
  });

  it.each([
    ['hidden_size', "field 'hidden_size' is missing"],
    ['vocab_size', "field 'vocab_size' is missing"],
    ['num_hidden_layers', "field 'num_hidden_layers' is missing"],
    ['rms_norm_eps', "field 'rms_norm_eps' is missing"],
    ['intermediate_size', "field 'intermediate_size' is missing"],
  ])('names the file and the missing field %s', (field, msg) => {
    const cfg: Record<string, unknown> = { ...llama31 };
    delete cfg[field];
    expect(() => read(cfg, 'ckpt/config.json')).toThrow(`ckpt/config.json: ${msg}`);
  });

  it('rejects ill-typed fields, unsupported architectures and rope scalings', () => {
    expect(() => read({ ...llama31, hidden_size: '4096' }, 'a.json')).toThrow(`a.json: field 'hidden_size' must be an integer, got "4096"`);
    expect(() => read({ ...llama31, num_key_value_heads: 5 }, 'a.json')).toThrow("field 'num_key_value_heads' (5) must divide num_attention_heads (32)");
    expect(() => read({ ...llama31, model_type: 'gpt2' }, 'a.json')).toThrow("a.json: field 'model_type' is 'gpt2'; supported: llama, mistral, qwen2");
    expect(() => read({ ...llama31, model_type: undefined, architectures: ['GPT2LMHeadModel'] }, 'a.json')).toThrow("field 'architectures' names 'GPT2LMHeadModel'");
    expect(() => read({ ...llama31, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'a.json')).toThrow("field 'rope_scaling.rope_type' is 'yarn'; supported: llama3, linear, default");
    expect(() => read({ ...llama31, rope_scaling: { rope_type: 'llama3', factor: 8 } }, 'a.json')).toThrow("a.json: field 'rope_scaling.low_freq_factor' is missing");
    expect(() => read({ ...llama31, hidden_act: 'gelu' }, 'a.json')).toThrow("field 'hidden_act' is \"gelu\"; only silu is supported");
    expect(() => read({ ...llama31, attention_bias: true }, 'a.json')).toThrow("field 'attention_bias' is true");
    expect(() => read({ ...llama31, tie_word_embeddings: 'yes' }, 'a.json')).toThrow("field 'tie_word_embeddings' must be true or false");
    expect(() => readHfConfig('{ "hidden_size": 4096, ', 'b.json')).toThrow('b.json: not valid JSON');
    expect(() => readHfConfig('[1, 2]', 'b.json')).toThrow('b.json: the top level must be a JSON object');
    expect(() => read({ hidden_size: 8 }, 'c.json')).toThrow("c.json: field 'model_type' is missing");
  });

  it('round-trips every preset and random configs through modelConfigToHf', () => {
    for (const m of Object.values(models)) expect(read(modelConfigToHf(m))).toEqual(m);
    const arch = fc.constantFrom<ModelConfig['architecture']>('llama', 'mistral', 'qwen2');
    const cfg = fc
      .record({
        architecture: arch,
        kv: fc.integer({ min: 1, max: 8 }),
        group: fc.integer({ min: 1, max: 4 }),
        halfHeadDim: fc.integer({ min: 1, max: 64 }),
        layers: fc.integer({ min: 1, max: 8 }),
        inter: fc.integer({ min: 1, max: 4096 }),
        vocab: fc.integer({ min: 1, max: 200000 }),
        maxPos: fc.integer({ min: 1, max: 1 << 20 }),
        theta: fc.double({ min: 1, max: 1e7, noNaN: true }),
        eps: fc.double({ min: 1e-8, max: 1e-3, noNaN: true }),
        tie: fc.boolean(),
        scaling: fc.option(fc.oneof(fc.record({ type: fc.constant('linear' as const), factor: fc.double({ min: 1, max: 64, noNaN: true }) }),
          fc.record({ type: fc.constant('llama3' as const), factor: fc.double({ min: 1, max: 64, noNaN: true }), lowFreqFactor: fc.constant(1), highFreqFactor: fc.constant(4), originalMaxPositionEmbeddings: fc.constant(8192) })), { nil: undefined }),
      })
      .map(
        (r): ModelConfig => ({
          name: 'rand',
          architecture: r.architecture,
          hiddenSize: r.kv * r.group * r.halfHeadDim * 2,
          intermediateSize: r.inter,
          numLayers: r.layers,
          numHeads: r.kv * r.group,
          numKvHeads: r.kv,
          headDim: r.halfHeadDim * 2,
          vocabSize: r.vocab,
          maxPositionEmbeddings: r.maxPos,
          ropeTheta: r.theta,
          ...(r.scaling ? { ropeScaling: r.scaling } : {}),
          rmsNormEps: r.eps,
          qkvBias: r.architecture === 'qwen2',
          tieWordEmbeddings: r.tie,
        }),
      );
    fc.assert(
      fc.property(cfg, (m) => {
        expect(read(modelConfigToHf(m))).toEqual(m);
      }),
    );
  });
});

/** test/fixtures/config-cases.json: the cases runtime/src/model_config.cpp runs too (test/runtime/unit_tests.cpp). */
interface ConfigCase {
  readonly name: string;
  readonly text?: string;
  readonly replace?: readonly (readonly [string, string])[];
  readonly accept: boolean;
  readonly expect?: Readonly<Record<string, unknown>>;
  readonly error?: { readonly field?: string; readonly message: string };
}
const fixture = JSON.parse(readFileSync(new URL('../fixtures/config-cases.json', import.meta.url), 'utf8')) as { base: string; cases: ConfigCase[] };

export function caseText(c: ConfigCase, base: string): string {
  let t = c.text ?? base;
  for (const [from, to] of c.replace ?? []) {
    if (!t.includes(from)) throw new Error(`case '${c.name}': '${from}' is not in the text`);
    t = t.replace(from, () => to);
  }
  return t;
}

/** A parsed value by its config.json name, as the fixture's `expect` states it. */
const PARSED: Readonly<Record<string, (m: ModelConfig) => unknown>> = {
  architecture: (m) => m.architecture,
  hidden_size: (m) => m.hiddenSize,
  intermediate_size: (m) => m.intermediateSize,
  num_hidden_layers: (m) => m.numLayers,
  num_attention_heads: (m) => m.numHeads,
  num_key_value_heads: (m) => m.numKvHeads,
  head_dim: (m) => m.headDim,
  vocab_size: (m) => m.vocabSize,
  max_position_embeddings: (m) => m.maxPositionEmbeddings,
  rope_theta: (m) => m.ropeTheta,
  rms_norm_eps: (m) => m.rmsNormEps,
  tie_word_embeddings: (m) => m.tieWordEmbeddings,
  qkv_bias: (m) => m.qkvBias,
  sliding_window: (m) => m.slidingWindow ?? 0,
  'rope_scaling.type': (m) => m.ropeScaling?.type ?? '',
  'rope_scaling.factor': (m) => m.ropeScaling?.factor,
  'rope_scaling.original_max_position_embeddings': (m) => m.ropeScaling?.originalMaxPositionEmbeddings,
};
/** Checked by the runtime only: ModelConfig does not carry them (readHfConfig range-checks them all the same). */
const RUNTIME_ONLY = new Set(['bos_token_id', 'eos_token_id']);

describe('the config.json cases shared with the runtime (test/fixtures/config-cases.json)', () => {
  it('has accepted and refused cases, each named once', () => {
    const names = fixture.cases.map((c) => c.name);
    expect(new Set(names).size).toBe(names.length);
    expect(fixture.cases.filter((c) => c.accept).length).toBeGreaterThan(10);
    expect(fixture.cases.filter((c) => !c.accept).length).toBeGreaterThan(50);
  });

  it.each(fixture.cases.map((c) => [c.name, c] as const))('%s', (_, c) => {
    const text = caseText(c, fixture.base);
    if (c.accept) {
      const m = readHfConfig(text, 'config.json');
      for (const [key, want] of Object.entries(c.expect ?? {})) {
        if (RUNTIME_ONLY.has(key)) continue;
        const get = PARSED[key];
        if (!get) throw new Error(`case '${c.name}': no reader for expected field '${key}'`);
        expect(get(m), key).toEqual(want);
      }
    } else {
      const { field, message } = c.error!;
      expect(() => readHfConfig(text, 'config.json')).toThrow(`config.json: ${field ? `field '${field}' ` : ''}${message}`);
    }
  });
});

describe('modelConfigProblem: a model written in TypeScript, by the same rules', () => {
  it('names the ModelConfig field and the limit, before any codegen', () => {
    expect(modelConfigProblem(models.tiny)).toBeUndefined();
    expect(modelConfigProblem({ ...models.tiny, hiddenSize: 2 ** 33 })).toBe("field 'hiddenSize' must be an integer from 1 to 65536, got 8589934592");
    expect(modelConfigProblem({ ...models.tiny, headDim: 2 ** 26 })).toBe("field 'headDim' must be an integer from 1 to 1024, got 67108864");
    expect(modelConfigProblem({ ...models.tiny, vocabSize: 2 ** 31 })).toBe("field 'vocabSize' must be an integer from 1 to 1048576, got 2147483648");
    expect(modelConfigProblem({ ...models.tiny, numKvHeads: 3 })).toBe("field 'numKvHeads' (3) must divide numHeads (4)");
    expect(modelConfigProblem({ ...models.tiny, ropeTheta: Number.NaN })).toBe("field 'ropeTheta' must be a finite number, got NaN");
    expect(modelConfigProblem({ ...models.tiny, ropeScaling: { type: 'linear', factor: Infinity } })).toBe("field 'ropeScaling.factor' must be a finite number, got Infinity");
    expect(modelConfigProblem({ ...models.tiny, hiddenSize: 128.5 })).toBe("field 'hiddenSize' must be an integer, got 128.5");
  });
});

describe('readHfConfigFile', () => {
  it('refuses a FIFO without blocking on it, and a directory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'md-cfg-'));
    try {
      const fifo = join(dir, 'config.json');
      execFileSync('mkfifo', [fifo]);
      expect(() => readHfConfigFile(fifo)).toThrow(`${fifo}: not a regular file`);
      expect(() => readHfConfigFile(dir)).toThrow(`${dir}: not a regular file`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
