import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ropeInvFreq as codegenInvFreq } from '../../codegen/rope.ts';
import { modelConfigToHf } from '../../codegen/model-config.ts';
import { llama2_7b_32k, llama31_8b, small, type ModelConfig } from '../../dsl/models.ts';
import { Checkpoint } from '../../model/checkpoint.ts';
import { writeRandomModel } from '../../model/random.ts';
import { writeSafetensorsModel, type TensorData } from '../../model/safetensors.ts';
import { loadReferenceModel, parseReferenceConfig, ropeInvFreq } from '../reference/llama.ts';
import { tempDirs } from './tmp.ts';

const tmp = tempDirs('ref');

/** A small random model, quick to run in float64. */
const SMALL: Partial<ModelConfig> = { hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 8, vocabSize: 64 };

function randomModel(config: Partial<ModelConfig> = {}, seed = 11, dtype: 'fp32' | 'bf16' = 'fp32'): string {
  const out = tmp();
  writeRandomModel({ preset: 'tiny', config: { ...SMALL, ...config }, seed, dtype, out });
  return out;
}

function bitsEqual(a: Float64Array, b: Float64Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Copy a model directory's tensors (fp32) with edits, and its config.json with overrides. */
function rewrite(src: string, edit: (name: string, data: Float64Array, shape: readonly number[]) => TensorData | null, cfg: Record<string, unknown> = {}): string {
  const out = tmp();
  const ck = Checkpoint.open(src);
  const tensors = ck.names().flatMap((n) => {
    const t = edit(n, ck.float64(n), ck.info(n).shape);
    return t ? [t] : [];
  });
  writeSafetensorsModel(out, tensors);
  const config = { ...JSON.parse(readFileSync(join(src, 'config.json'), 'utf8')), ...cfg };
  writeFileSync(join(out, 'config.json'), JSON.stringify(config));
  return out;
}
const keep = (name: string, data: Float64Array, shape: readonly number[]): TensorData => ({ name, dtype: 'F32', shape, data: Float32Array.from(data) });

describe('reference forward: a 1-layer model computed by hand', () => {
  // hidden 2, one head of dim 2 (inv_freq = [1]: position p rotates by p radians), intermediate 1, vocab 3.
  const dir = tmp();
  const f32 = (name: string, shape: number[], values: number[]): TensorData => ({ name, dtype: 'F32', shape, data: Float32Array.from(values) });
  writeSafetensorsModel(dir, [
    f32('model.embed_tokens.weight', [3, 2], [1, 0, 0, 2, 3, 4]),
    f32('model.layers.0.input_layernorm.weight', [2], [1, 1]),
    f32('model.layers.0.self_attn.q_proj.weight', [2, 2], [1, 0, 0, 1]),
    f32('model.layers.0.self_attn.k_proj.weight', [2, 2], [1, 0, 0, 1]),
    f32('model.layers.0.self_attn.v_proj.weight', [2, 2], [1, 1, 0, 1]), // v = [h0 + h1, h1]: catches a transpose
    f32('model.layers.0.self_attn.o_proj.weight', [2, 2], [1, 0, 0, 1]),
    f32('model.layers.0.post_attention_layernorm.weight', [2], [1, 1]),
    f32('model.layers.0.mlp.gate_proj.weight', [1, 2], [1, 0]),
    f32('model.layers.0.mlp.up_proj.weight', [1, 2], [0, 1]),
    f32('model.layers.0.mlp.down_proj.weight', [2, 1], [1, 1]),
    f32('model.norm.weight', [2], [2, 1]),
    f32('lm_head.weight', [3, 2], [1, 0, 0, 1, 1, 1]),
  ]);
  const eps = 1e-6;
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      model_type: 'llama', hidden_size: 2, intermediate_size: 1, num_hidden_layers: 1, num_attention_heads: 1, num_key_value_heads: 1,
      head_dim: 2, vocab_size: 3, rms_norm_eps: eps, rope_theta: 10000, max_position_embeddings: 16, tie_word_embeddings: false,
    }),
  );
  const silu = (v: number) => v / (1 + Math.exp(-v));
  const logitsOf = (x0: number, x1: number) => {
    const rf = Math.sqrt((x0 * x0 + x1 * x1) / 2 + eps);
    const y0 = (2 * x0) / rf;
    const y1 = x1 / rf;
    return [y0, y1, y0 + y1];
  };

  it('matches the hand computation at positions 0 and 1', () => {
    const [l0, l1] = loadReferenceModel(dir).forward([0, 2]);

    // Position 0, token 0: e = [1, 0]. Attention sees only itself: out = v0 = [h0 + h1, h1] = [1/r, 0].
    const r = Math.sqrt(1 / 2 + eps);
    const a = 1 + 1 / r; // residual after attention, second component 0; the MLP adds silu(g) * 0 = 0
    expect([...l0].map((v, i) => v - logitsOf(a, 0)[i]).every((d) => Math.abs(d) < 1e-12)).toBe(true);

    // Position 1, token 2: e = [3, 4], h = e / rms; q = k = h rotated by 1 radian (rotate_half:
    // [h0 cos - h1 sin, h1 cos + h0 sin]); position 0's key is unrotated.
    const rb = Math.sqrt(25 / 2 + eps);
    const h = [3 / rb, 4 / rb];
    const q = [h[0] * Math.cos(1) - h[1] * Math.sin(1), h[1] * Math.cos(1) + h[0] * Math.sin(1)];
    const k0 = [1 / r, 0];
    const s0 = (q[0] * k0[0] + q[1] * k0[1]) / Math.SQRT2;
    const s1 = (q[0] * q[0] + q[1] * q[1]) / Math.SQRT2;
    const p0 = Math.exp(s0) / (Math.exp(s0) + Math.exp(s1));
    const p1 = 1 - p0;
    const v0 = [1 / r, 0];
    const v1 = [h[0] + h[1], h[1]];
    let x0 = 3 + p0 * v0[0] + p1 * v1[0];
    let x1 = 4 + p0 * v0[1] + p1 * v1[1];
    const rr = Math.sqrt((x0 * x0 + x1 * x1) / 2 + eps);
    const m = silu(x0 / rr) * (x1 / rr); // gate reads component 0, up component 1; down copies to both
    x0 += m;
    x1 += m;
    const want = logitsOf(x0, x1);
    for (let i = 0; i < 3; i++) expect(l1[i]).toBeCloseTo(want[i], 12);
    expect(loadReferenceModel(dir).greedy([0, 2], 1)).toEqual([want.indexOf(Math.max(...want))]);
  });
});

describe('reference forward: structural properties', () => {
  const dir = randomModel();
  const ref = loadReferenceModel(dir);

  it('is causal: logits at position i do not depend on later tokens', () => {
    const a = [3, 17, 42, 5, 9, 33, 60, 1];
    const b = [3, 17, 42, 5, 0, 2, 4, 8];
    const la = ref.forward(a);
    const lb = ref.forward(b);
    for (let i = 0; i < 4; i++) expect(bitsEqual(la[i], lb[i])).toBe(true);
    for (let i = 4; i < 8; i++) expect(bitsEqual(la[i], lb[i])).toBe(false);
    const prefix = ref.forward(a.slice(0, 5));
    for (let i = 0; i < 5; i++) expect(bitsEqual(prefix[i], la[i])).toBe(true);
  });

  it('decodes greedily as repeated argmax of forward, and not degenerately', () => {
    const prompt = [7, 8, 9];
    const out = ref.greedy(prompt, 24);
    const seq = [...prompt, ...out];
    const logits = ref.forward(seq.slice(0, -1));
    for (let i = 0; i < out.length; i++) {
      const l = logits[prompt.length - 1 + i];
      expect(l[out[i]]).toBe(Math.max(...l));
    }
    expect(new Set(out).size).toBeGreaterThan(6);
    // The same for a model with tied embeddings, where repetition is the usual failure.
    const tied = loadReferenceModel(randomModel({ tieWordEmbeddings: true }, 4)).greedy(prompt, 24);
    expect(new Set(tied).size).toBeGreaterThan(6);
  });

  it('gives the same logits from a sharded checkpoint', () => {
    const out = tmp();
    writeRandomModel({ preset: 'tiny', config: SMALL, seed: 11, dtype: 'fp32', out, shards: 4 });
    const tokens = [1, 2, 3, 4];
    const a = ref.forward(tokens);
    const b = loadReferenceModel(out).forward(tokens);
    for (let i = 0; i < tokens.length; i++) expect(bitsEqual(a[i], b[i])).toBe(true);
  });

  it('maps query head h to kv head h / (heads / kv_heads) (GQA == MHA with repeated k/v)', () => {
    const D = SMALL.headDim!;
    const groups = SMALL.numHeads! / SMALL.numKvHeads!;
    const mha = rewrite(
      dir,
      (name, data, shape) => {
        if (!/\.(k|v)_proj\.weight$/.test(name)) return keep(name, data, shape);
        const rows: number[] = [];
        for (let h = 0; h < SMALL.numHeads!; h++) {
          const g = Math.floor(h / groups);
          rows.push(...data.subarray(g * D * shape[1], (g + 1) * D * shape[1]));
        }
        return { name, dtype: 'F32', shape: [SMALL.numHeads! * D, shape[1]], data: Float32Array.from(rows) };
      },
      { num_key_value_heads: SMALL.numHeads },
    );
    const tokens = [5, 6, 7, 8, 9];
    const a = ref.forward(tokens);
    const b = loadReferenceModel(mha).forward(tokens);
    for (let i = 0; i < tokens.length; i++) expect(bitsEqual(a[i], b[i])).toBe(true);
  });

  it('adds Qwen2 q/k/v biases (zero biases == the Llama model without them)', () => {
    const qwen = randomModel({ architecture: 'qwen2' }, 12);
    const asLlama = rewrite(qwen, (n, d, s) => (n.endsWith('.bias') ? null : keep(n, d, s)), { model_type: 'llama', architectures: ['LlamaForCausalLM'] });
    const zeroBias = rewrite(qwen, (n, d, s) => keep(n, n.endsWith('.bias') ? d.map(() => 0) : d, s));
    const tokens = [1, 2, 3];
    const q = loadReferenceModel(qwen).forward(tokens);
    const l = loadReferenceModel(asLlama).forward(tokens);
    const z = loadReferenceModel(zeroBias).forward(tokens);
    for (let i = 0; i < tokens.length; i++) {
      expect(bitsEqual(z[i], l[i])).toBe(true);
      expect(bitsEqual(q[i], l[i])).toBe(false);
    }
  });

  it('applies a Mistral sliding window (RoPE is relative: the last W tokens alone give the same logits)', () => {
    const mistral = rewrite(randomModel({ architecture: 'mistral', numLayers: 1 }, 13), keep, { sliding_window: 3 });
    const m = loadReferenceModel(mistral);
    expect(m.config.slidingWindow).toBe(3);
    const tokens = [10, 20, 30, 40, 50, 60];
    const full = m.forward(tokens);
    const windowed = m.forward(tokens.slice(3));
    for (let v = 0; v < 64; v++) expect(full[5][v]).toBeCloseTo(windowed[2][v], 9);
    const noWindow = loadReferenceModel(rewrite(mistral, keep, { sliding_window: null })).forward(tokens);
    expect(bitsEqual(noWindow[2], full[2])).toBe(true);
    expect(Math.abs(noWindow[5][0] - full[5][0])).toBeGreaterThan(1e-6);
  });

  it('reports bad tokens, missing and misshapen tensors, unsupported configs', () => {
    expect(() => ref.forward([1, 64])).toThrow('forward: token 1 is 64, not an id in [0, 64)');
    expect(() => ref.greedy([], 3)).toThrow('greedy: the prompt must hold at least one token');
    const noHead = rewrite(dir, (n, d, s) => (n === 'lm_head.weight' ? null : keep(n, d, s)));
    expect(() => loadReferenceModel(noHead)).toThrow('checkpoint has no tensor "lm_head.weight"');
    const badShape = rewrite(dir, keep, { intermediate_size: 65 });
    expect(() => loadReferenceModel(badShape)).toThrow('tensor "model.layers.0.mlp.gate_proj.weight" has shape [64, 32], expected [65, 32]');
    const yarn = rewrite(dir, keep, { rope_scaling: { rope_type: 'yarn', factor: 4 } });
    expect(() => loadReferenceModel(yarn)).toThrow('rope_scaling type "yarn" is not supported by the reference');
    expect(() => parseReferenceConfig({ model_type: 'gpt2' }, 'c.json')).toThrow('c.json: model_type "gpt2" is not llama, mistral or qwen2');
  });
});

describe('RoPE scaling', () => {
  it('default: inv_freq[i] = theta^(-2i/d)', () => {
    const inv = ropeInvFreq(8, 10000);
    expect([...inv]).toEqual([1, 10000 ** -0.25, 10000 ** -0.5, 10000 ** -0.75]);
  });

  it('linear: every frequency divided by the factor', () => {
    const inv = ropeInvFreq(8, 10000, { type: 'linear', factor: 4 });
    expect([...inv]).toEqual([...ropeInvFreq(8, 10000)].map((f) => f / 4));
  });

  it('llama3 (Llama 3.1 parameters): high frequencies kept, low divided, the band between interpolated', () => {
    const scaling = { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } as const;
    const base = ropeInvFreq(128, 500000);
    const inv = ropeInvFreq(128, 500000, scaling);
    let kept = 0;
    let divided = 0;
    let smoothed = 0;
    for (let i = 0; i < 64; i++) {
      const wavelen = (2 * Math.PI) / base[i];
      if (wavelen < 8192 / 4) {
        expect(inv[i]).toBe(base[i]);
        kept++;
      } else if (wavelen > 8192 / 1) {
        expect(inv[i]).toBe(base[i] / 8);
        divided++;
      } else {
        const smooth = (8192 / wavelen - 1) / (4 - 1);
        expect(inv[i]).toBeCloseTo((1 - smooth) * (base[i] / 8) + smooth * base[i], 15);
        expect(inv[i]).toBeLessThan(base[i]);
        expect(inv[i]).toBeGreaterThan(base[i] / 8);
        smoothed++;
      }
    }
    // Llama 3.1-8B: wavelen_i = 2*pi*500000^(i/64) < 2048 iff i/64 < ln(2048/2pi)/ln(500000) = 0.4410, i.e.
    // i <= 28; > 8192 iff i/64 > ln(8192/2pi)/ln(500000) = 0.5466, i.e. i >= 35.
    expect([kept, smoothed, divided]).toEqual([29, 6, 29]);
    expect(inv[0]).toBe(1);
  });

  it('reads rope_scaling under rope_type or the legacy type key, and scaling changes only positions > 0', () => {
    const scaled = { rope_scaling: { type: 'linear', factor: 2 } };
    expect(parseReferenceConfig({ model_type: 'llama', hidden_size: 8, num_attention_heads: 1, intermediate_size: 1, num_hidden_layers: 1, vocab_size: 4, ...scaled }, 'c').ropeScaling).toEqual({
      type: 'linear',
      factor: 2,
    });
    const dir = randomModel({}, 21);
    const plain = loadReferenceModel(dir).forward([4, 5, 6]);
    for (const rs of [{ rope_type: 'linear', factor: 2 }, { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 4 }]) {
      const other = loadReferenceModel(rewrite(dir, keep, { rope_scaling: rs })).forward([4, 5, 6]);
      expect(bitsEqual(other[0], plain[0])).toBe(true);
      expect(bitsEqual(other[2], plain[2])).toBe(false);
    }
  });

  it("agrees with the kernels' RoPE table (codegen/rope.ts) on the presets", () => {
    for (const m of [llama2_7b_32k, llama31_8b, small]) {
      const c = parseReferenceConfig(modelConfigToHf(m), m.name);
      const ref = ropeInvFreq(c.headDim, c.ropeTheta, c.ropeScaling);
      const gen = codegenInvFreq(m);
      const relErr = ref.map((f, i) => Math.abs(gen[i] - f) / f);
      expect(Math.max(...relErr)).toBeLessThan(1e-12);
    }
  });
});
