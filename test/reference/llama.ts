// An independent float64 forward pass of a Llama-family model (Llama 2/3/3.1, Mistral, Qwen2), read from a
// Hugging Face directory (config.json + safetensors). It is the oracle the engine's logits are compared
// with, so it shares nothing with the kernels or with codegen's config/RoPE code: it parses config.json
// itself, follows Hugging Face transformers' modeling code line by line, and favours the obvious loop
// over the fast one. One token at a time with a KV cache, so it is causal by construction.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../../model/checkpoint.ts';

export type ReferenceRopeScaling =
  | { readonly type: 'linear'; readonly factor: number }
  | {
      readonly type: 'llama3';
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositionEmbeddings: number;
    };

export interface ReferenceConfig {
  readonly modelType: 'llama' | 'mistral' | 'qwen2';
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeScaling?: ReferenceRopeScaling;
  readonly tieWordEmbeddings: boolean;
  readonly qkvBias: boolean;
  /** Mistral's sliding window: a query at q sees keys k with q - k < window. */
  readonly slidingWindow?: number;
}

/** Parse config.json the way transformers' LlamaConfig/MistralConfig/Qwen2Config do, defaults included. */
export function parseReferenceConfig(json: Record<string, unknown>, file: string): ReferenceConfig {
  const num = (k: string, fallback?: number): number => {
    const v = json[k] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${file}: "${k}" must be a number, got ${JSON.stringify(json[k])}`);
    return v;
  };
  const modelType = json.model_type;
  if (modelType !== 'llama' && modelType !== 'mistral' && modelType !== 'qwen2') {
    throw new Error(`${file}: model_type ${JSON.stringify(modelType)} is not llama, mistral or qwen2`);
  }
  const hiddenSize = num('hidden_size');
  const numHeads = num('num_attention_heads');
  const numKvHeads = num('num_key_value_heads', numHeads);
  const headDim = (json.head_dim as number | null | undefined) ?? hiddenSize / numHeads;
  if (!Number.isInteger(headDim) || numHeads % numKvHeads !== 0) {
    throw new Error(`${file}: head_dim ${headDim} / heads ${numHeads} / kv heads ${numKvHeads} are inconsistent`);
  }

  let ropeScaling: ReferenceRopeScaling | undefined;
  const rs = json.rope_scaling as Record<string, unknown> | null | undefined;
  if (rs) {
    const type = rs.rope_type ?? rs.type;
    const f = (k: string): number => {
      if (typeof rs[k] !== 'number') throw new Error(`${file}: rope_scaling.${k} must be a number`);
      return rs[k] as number;
    };
    if (type === 'linear') ropeScaling = { type, factor: f('factor') };
    else if (type === 'llama3') {
      ropeScaling = {
        type,
        factor: f('factor'),
        lowFreqFactor: f('low_freq_factor'),
        highFreqFactor: f('high_freq_factor'),
        originalMaxPositionEmbeddings: f('original_max_position_embeddings'),
      };
    } else if (type !== 'default') throw new Error(`${file}: rope_scaling type ${JSON.stringify(type)} is not supported by the reference`);
  }

  let slidingWindow: number | undefined;
  if (modelType === 'mistral') {
    // MistralConfig's default window is 4096; an explicit null means full attention.
    const w = json.sliding_window === undefined ? 4096 : json.sliding_window;
    if (w !== null) slidingWindow = num('sliding_window', 4096);
  }
  if (modelType === 'qwen2' && json.use_sliding_window === true) throw new Error(`${file}: Qwen2 sliding-window layers are not supported by the reference`);
  if (json.hidden_act !== undefined && json.hidden_act !== 'silu') throw new Error(`${file}: hidden_act ${JSON.stringify(json.hidden_act)} is not silu`);

  return {
    modelType,
    hiddenSize,
    intermediateSize: num('intermediate_size'),
    numLayers: num('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: num('vocab_size'),
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 10000),
    ropeScaling,
    tieWordEmbeddings: json.tie_word_embeddings === true,
    qkvBias: modelType === 'qwen2' || json.attention_bias === true,
    slidingWindow,
  };
}

/**
 * RoPE inverse frequencies as transformers computes them (modeling_rope_utils.py), in float64:
 * default 1 / theta^(2i/d); linear divides all by factor; llama3 keeps high frequencies, divides low
 * ones by factor and interpolates the band between.
 */
export function ropeInvFreq(headDim: number, theta: number, scaling?: ReferenceRopeScaling): Float64Array {
  const inv = new Float64Array(headDim / 2);
  for (let i = 0; i < headDim / 2; i++) inv[i] = 1 / theta ** ((2 * i) / headDim);
  if (!scaling) return inv;
  if (scaling.type === 'linear') return inv.map((f) => f / scaling.factor);
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: oldCtx } = scaling;
  const lowFreqWavelen = oldCtx / lowFreqFactor;
  const highFreqWavelen = oldCtx / highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f;
    if (wavelen > lowFreqWavelen) return f / factor;
    const smooth = (oldCtx / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
    return ((1 - smooth) * f) / factor + smooth * f;
  });
}

interface Layer {
  inNorm: Float64Array;
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
  qBias?: Float64Array;
  kBias?: Float64Array;
  vBias?: Float64Array;
  o: Float64Array;
  postNorm: Float64Array;
  gate: Float64Array;
  up: Float64Array;
  down: Float64Array;
}

/** y = W x (+ b) for a Hugging Face linear weight W of shape [out, in]. */
function linear(w: Float64Array, x: Float64Array, out: number, b?: Float64Array): Float64Array {
  const inp = x.length;
  const y = new Float64Array(out);
  for (let n = 0; n < out; n++) {
    let s = 0;
    for (let k = 0; k < inp; k++) s += w[n * inp + k] * x[k];
    y[n] = b ? s + b[n] : s;
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => w[i] * (v * r));
}

/** rotate_half RoPE on each head of `x` (heads * d values) at position `pos`, in place. */
function applyRope(x: Float64Array, heads: number, d: number, pos: number, invFreq: Float64Array): void {
  const half = d / 2;
  for (let h = 0; h < heads; h++) {
    const o = h * d;
    for (let i = 0; i < half; i++) {
      const angle = pos * invFreq[i];
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      const x1 = x[o + i];
      const x2 = x[o + half + i];
      x[o + i] = x1 * c - x2 * s;
      x[o + half + i] = x2 * c + x1 * s;
    }
  }
}

const silu = (v: number) => v / (1 + Math.exp(-v));

export interface ReferenceModel {
  readonly config: ReferenceConfig;
  readonly invFreq: Float64Array;
  /** Logits (vocabSize values) at every position of `tokens`, starting at position 0. */
  forward(tokens: readonly number[]): Float64Array[];
  /** `n` greedily decoded tokens after `prompt` (argmax, ties to the lowest id, as torch.argmax). */
  greedy(prompt: readonly number[], n: number): number[];
}

export function loadReferenceModel(dir: string): ReferenceModel {
  const cfgPath = join(dir, 'config.json');
  const cfg = parseReferenceConfig(JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>, cfgPath);
  const ckpt = Checkpoint.open(dir);
  const { hiddenSize: H, numHeads, numKvHeads, headDim: D, intermediateSize: I, vocabSize: V } = cfg;

  const tensor = (name: string, shape: readonly number[]): Float64Array => {
    const info = ckpt.info(name);
    if (info.shape.length !== shape.length || info.shape.some((s, i) => s !== shape[i])) {
      throw new Error(`${info.file}: tensor "${name}" has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}]`);
    }
    return ckpt.float64(name);
  };

  const embed = tensor('model.embed_tokens.weight', [V, H]);
  const layers: Layer[] = [];
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`;
    layers.push({
      inNorm: tensor(`${p}.input_layernorm.weight`, [H]),
      q: tensor(`${p}.self_attn.q_proj.weight`, [numHeads * D, H]),
      k: tensor(`${p}.self_attn.k_proj.weight`, [numKvHeads * D, H]),
      v: tensor(`${p}.self_attn.v_proj.weight`, [numKvHeads * D, H]),
      qBias: cfg.qkvBias ? tensor(`${p}.self_attn.q_proj.bias`, [numHeads * D]) : undefined,
      kBias: cfg.qkvBias ? tensor(`${p}.self_attn.k_proj.bias`, [numKvHeads * D]) : undefined,
      vBias: cfg.qkvBias ? tensor(`${p}.self_attn.v_proj.bias`, [numKvHeads * D]) : undefined,
      o: tensor(`${p}.self_attn.o_proj.weight`, [H, numHeads * D]),
      postNorm: tensor(`${p}.post_attention_layernorm.weight`, [H]),
      gate: tensor(`${p}.mlp.gate_proj.weight`, [I, H]),
      up: tensor(`${p}.mlp.up_proj.weight`, [I, H]),
      down: tensor(`${p}.mlp.down_proj.weight`, [H, I]),
    });
  }
  const finalNorm = tensor('model.norm.weight', [H]);
  // Tied models use the embedding as the LM head even if an lm_head.weight is present (as transformers does).
  const lmHead = cfg.tieWordEmbeddings ? embed : tensor('lm_head.weight', [V, H]);
  const invFreq = ropeInvFreq(D, cfg.ropeTheta, cfg.ropeScaling);
  const groups = numHeads / numKvHeads;
  const scale = 1 / Math.sqrt(D);

  /** Incremental decoding state: per layer, the roped keys and the values of every position so far. */
  const session = () => {
    const keys: Float64Array[][] = layers.map(() => []);
    const values: Float64Array[][] = layers.map(() => []);
    return (token: number): Float64Array => {
      const pos = keys[0]?.length ?? 0;
      let x = embed.slice(token * H, (token + 1) * H);
      layers.forEach((L, l) => {
        const h = rmsNorm(x, L.inNorm, cfg.rmsNormEps);
        const q = linear(L.q, h, numHeads * D, L.qBias);
        const k = linear(L.k, h, numKvHeads * D, L.kBias);
        const v = linear(L.v, h, numKvHeads * D, L.vBias);
        applyRope(q, numHeads, D, pos, invFreq);
        applyRope(k, numKvHeads, D, pos, invFreq);
        keys[l].push(k);
        values[l].push(v);
        const first = cfg.slidingWindow === undefined ? 0 : Math.max(0, pos - cfg.slidingWindow + 1);
        const attn = new Float64Array(numHeads * D);
        for (let hd = 0; hd < numHeads; hd++) {
          const g = Math.floor(hd / groups); // repeat_kv: query head hd reads kv head hd / groups
          const scores: number[] = [];
          for (let t = first; t <= pos; t++) {
            let s = 0;
            for (let i = 0; i < D; i++) s += q[hd * D + i] * keys[l][t][g * D + i];
            scores.push(s * scale);
          }
          const m = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - m));
          const z = e.reduce((a, b) => a + b, 0);
          for (let t = first; t <= pos; t++) {
            const p = e[t - first] / z;
            for (let i = 0; i < D; i++) attn[hd * D + i] += p * values[l][t][g * D + i];
          }
        }
        const o = linear(L.o, attn, H);
        x = x.map((xv, i) => xv + o[i]);
        const h2 = rmsNorm(x, L.postNorm, cfg.rmsNormEps);
        const gate = linear(L.gate, h2, I);
        const up = linear(L.up, h2, I);
        const down = linear(L.down, gate.map((gv, i) => silu(gv) * up[i]), H);
        x = x.map((xv, i) => xv + down[i]);
      });
      return linear(lmHead, rmsNorm(x, finalNorm, cfg.rmsNormEps), V);
    };
  };

  const checkTokens = (tokens: readonly number[], what: string) => {
    tokens.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new Error(`${what}: token ${i} is ${t}, not an id in [0, ${V})`);
    });
  };

  const argmax = (logits: Float64Array): number => {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    return best;
  };

  return {
    config: cfg,
    invFreq,
    forward(tokens) {
      checkTokens(tokens, 'forward');
      const step = session();
      return tokens.map((t) => step(t));
    },
    greedy(prompt, n) {
      checkTokens(prompt, 'greedy');
      if (prompt.length === 0) throw new Error('greedy: the prompt must hold at least one token');
      const step = session();
      let logits: Float64Array = new Float64Array(0);
      for (const t of prompt) logits = step(t);
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        const next = argmax(logits);
        out.push(next);
        if (i + 1 < n) logits = step(next);
      }
      return out;
    },
  };
}
