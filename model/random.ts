// Random Llama-family models for tests and demos, written in the Hugging Face layout the runtime loads:
// config.json, model.safetensors (or shards + index), tokenizer.json, tokenizer_config.json.
//
// Weights are deterministic per (seed, tensor name). Scales keep activations O(1) through the layers:
// embedding rows and projections' outputs ~N(0, 1) (weights ~N(0, 1/fan_in)), norm weights ~1 + N(0, 0.1^2),
// and logits ~N(0, LOGIT_STD^2), peaked enough that sampling is not uniform.
// Tied embeddings need care: with a final norm weight near 1 the last token's own embedding, still in the
// residual stream, gives it a logit bonus of about |e|^2 / rms(h) and greedy decoding locks onto repeating
// it; shrinking the embedding instead lets attention's context average drown the current token, with the
// same result. So for tied models the final norm weight has random signs (magnitude LOGIT_STD/sqrt(H)):
// the effective LM head e_v * w is then uncorrelated with e_v and there is no systematic self-bonus.
//
// Presets: `tiny` and `small` (dsl/models.ts); `mha` and `gqa`, the benchmark's miniatures of
// LLaMA-2-7B-32K (4 layers, hidden 512, 8 heads of dimension 64, FFN 1536, vocab 4096; 8 or 2 KV heads);
// and `local`, the `mha` shape with SYNTHETIC structured attention (localizeAttention below; how it is
// built: docs/BENCH.md, "The local preset"): i.i.d. random weights attend almost uniformly, trained models
// attend mostly to the first tokens and to recent positions, and that is what makes a sink + window draft
// agree with the target.

import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { modelConfigToHf, readHfConfig } from '../codegen/model-config.ts';
import { small, tiny, type ModelConfig } from '../dsl/models.ts';
import type { FloatDtype } from './dtypes.ts';
import { Prng, hashString } from './prng.ts';
import { INDEX_FILE, writeSafetensorsModel, type TensorData } from './safetensors.ts';
import { buildTokenizerFiles } from './tokenizer-build.ts';

export type RandomPreset = 'tiny' | 'small' | 'mha' | 'gqa' | 'local';
export const RANDOM_PRESETS: readonly RandomPreset[] = ['tiny', 'small', 'mha', 'gqa', 'local'];
export type WeightDtype = 'fp32' | 'bf16' | 'fp16';

export interface RandomModelOptions {
  /** Base shape (default 'tiny'); `config` fields override it. */
  readonly preset?: RandomPreset;
  readonly config?: Partial<ModelConfig>;
  readonly seed: number;
  readonly dtype: WeightDtype;
  /** Output directory (created if missing; earlier model files in it are replaced). */
  readonly out: string;
  /** Number of safetensors shards (default 1: a single model.safetensors). */
  readonly shards?: number;
  /** `local` only: overrides of its attention-structure constants (calibration; default LOCAL_ATTENTION). */
  readonly local?: Partial<LocalAttention>;
}

export interface RandomModelInfo {
  readonly dir: string;
  readonly config: ModelConfig;
  /** Safetensors files written, relative to `dir`. */
  readonly files: readonly string[];
  readonly tokenizer: 'byte-level' | 'char-level';
  readonly bosId: number;
  readonly eosId: number;
  readonly parameters: number;
}

/** The benchmark's miniature of LLaMA-2-7B-32K (issue 8): every KV head its own, so KV dominates at long context. */
const mha: ModelConfig = {
  name: 'mha',
  architecture: 'llama',
  hiddenSize: 512,
  intermediateSize: 1536,
  numLayers: 4,
  numHeads: 8,
  numKvHeads: 8,
  headDim: 64,
  vocabSize: 4096,
  maxPositionEmbeddings: 65536,
  ropeTheta: 500000,
  rmsNormEps: 1e-5,
  qkvBias: false,
  tieWordEmbeddings: false,
};

const PRESETS: Readonly<Record<RandomPreset, ModelConfig>> = {
  tiny,
  small,
  mha,
  gqa: { ...mha, name: 'gqa', numKvHeads: 2 },
  local: { ...mha, name: 'local', architecture: 'qwen2', qkvBias: true },
};
const LOGIT_STD = 3;
const NORM_JITTER = 0.1;
const BIAS_STD = 0.5;

const SAFETENSORS_DTYPE: Readonly<Record<WeightDtype, FloatDtype>> = { fp32: 'F32', bf16: 'BF16', fp16: 'F16' };
const TORCH_DTYPE: Readonly<Record<WeightDtype, string>> = { fp32: 'float32', bf16: 'bfloat16', fp16: 'float16' };

/** The preset merged with the overrides, validated by a round trip through the config.json reader. */
export function resolveRandomConfig(preset: RandomPreset | undefined, overrides: Partial<ModelConfig> = {}): ModelConfig {
  const base = PRESETS[preset ?? 'tiny'];
  if (!base) throw new Error(`unknown preset ${JSON.stringify(preset)} (expected ${Object.keys(PRESETS).join(' or ')})`);
  const merged: ModelConfig = { ...base, ...overrides };
  const qkvBias = merged.architecture === 'qwen2';
  if (overrides.qkvBias !== undefined && overrides.qkvBias !== qkvBias) {
    throw new Error(`config.qkvBias: ${merged.architecture} models ${qkvBias ? 'always have' : 'have no'} q/k/v biases, got qkvBias: ${overrides.qkvBias}`);
  }
  const config = { ...merged, qkvBias };
  readHfConfig(JSON.stringify(modelConfigToHf(config)), `random model config (preset ${preset ?? 'tiny'} + overrides)`);
  return config;
}

interface WeightSpec {
  readonly name: string;
  readonly shape: readonly [number] | readonly [number, number];
  /** value = sign * (mean + std * normal), sign = +1 or, with randomSign, +-1 equally likely */
  readonly mean: number;
  readonly std: number;
  readonly randomSign?: boolean;
}

/** Every tensor of the model in Hugging Face naming and checkpoint order, with its init distribution. */
export function weightSpecs(c: ModelConfig): WeightSpec[] {
  const H = c.hiddenSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const linear = (name: string, out: number, inp: number): WeightSpec => ({ name, shape: [out, inp], mean: 0, std: 1 / Math.sqrt(inp) });
  const norm = (name: string): WeightSpec => ({ name, shape: [H], mean: 1, std: NORM_JITTER });
  const bias = (name: string, n: number): WeightSpec => ({ name, shape: [n], mean: 0, std: BIAS_STD });
  const logitScale = LOGIT_STD / Math.sqrt(H);
  const specs: WeightSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, H], mean: 0, std: 1 }];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    specs.push(norm(`${p}.input_layernorm.weight`));
    specs.push(linear(`${p}.self_attn.q_proj.weight`, q, H));
    specs.push(linear(`${p}.self_attn.k_proj.weight`, kv, H));
    specs.push(linear(`${p}.self_attn.v_proj.weight`, kv, H));
    if (c.qkvBias) {
      specs.push(bias(`${p}.self_attn.q_proj.bias`, q));
      specs.push(bias(`${p}.self_attn.k_proj.bias`, kv));
      specs.push(bias(`${p}.self_attn.v_proj.bias`, kv));
    }
    specs.push(linear(`${p}.self_attn.o_proj.weight`, H, q));
    specs.push(norm(`${p}.post_attention_layernorm.weight`));
    specs.push(linear(`${p}.mlp.gate_proj.weight`, c.intermediateSize, H));
    specs.push(linear(`${p}.mlp.up_proj.weight`, c.intermediateSize, H));
    specs.push(linear(`${p}.mlp.down_proj.weight`, H, c.intermediateSize));
  }
  if (c.tieWordEmbeddings) {
    specs.push({ name: 'model.norm.weight', shape: [H], mean: logitScale, std: logitScale * NORM_JITTER, randomSign: true });
  } else {
    specs.push(norm('model.norm.weight'));
    specs.push({ name: 'lm_head.weight', shape: [c.vocabSize, H], mean: 0, std: logitScale });
  }
  return specs;
}

function sample(spec: WeightSpec, seed: number): Float32Array {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const rng = new Prng(seed, hashString(spec.name));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const sign = spec.randomSign && rng.nextU32() & 1 ? -1 : 1;
    out[i] = sign * (spec.mean + spec.std * rng.normal());
  }
  return out;
}

/**
 * The constants of the `local` preset's attention structure (docs/BENCH.md, "The local preset"). Logits
 * are q.k / sqrt(head_dim), as the kernels compute them; "pairs" are RoPE's rotate-half pairs (j, j + D/2),
 * pair j turning at the model's inverse frequency theta^(-2j/D), highest frequency first.
 */
export interface LocalAttention {
  /** Positional weight lambda per pair: a key d positions back scores lambda * sum_j w_j cos(theta_j d). */
  readonly locality: number;
  /** Spread of w_j across KV heads and pairs: w = max(0.2, 1 + jitter * N(0, 1)). */
  readonly jitter: number;
  /** Standard deviation of the content logit (the content pairs' q.k, from the token's hidden state). */
  readonly content: number;
  /** The BOS key's sink logit minus a key's positional logit at distance 0 (sum_j lambda w_j). */
  readonly sink: number;
  /** BOS's marker: its residual stream holds bos * sqrt(hidden) in dimension 0, every other token 0. */
  readonly bos: number;
  /** Lowest-frequency pairs carrying the sink (they turn by under 0.2 rad over 64K positions at theta 5e5). */
  readonly sinkPairs: number;
  /** The next-lowest pairs, carrying content; all higher-frequency pairs are positional. */
  readonly contentPairs: number;
}

/** Calibrated so that sink 4 + window 508 at 16K context, gamma 3, accepts 0.75-0.85 (docs/BENCH.md). */
export const LOCAL_ATTENTION: LocalAttention = { locality: 0.65, jitter: 0.25, content: 2, sink: 2, bos: 4, sinkPairs: 4, contentPairs: 4 };

/** The residual-stream dimension that marks BOS (no layer writes it). */
const BOS_DIM = 0;

/**
 * Rewrites i.i.d. random weights (by name, in place) into the `local` preset's structure, every layer alike.
 * The model is a Qwen2 (q/k/v biases); what is not named here keeps its random init.
 *
 * - Residual dimension 0 marks BOS: embedding column 0 is bos * sqrt(H) for BOS and 0 for every other token,
 *   and no o_proj / down_proj row writes it; v_proj, gate_proj and up_proj ignore it, the final norm zeroes it.
 * - Positional pairs: the q and k biases hold sqrt(lambda w_j sqrt(D)) on the pair's first half and the weight
 *   rows are zero (but for the key's dimension 0, which cancels the bias on BOS), so every query and every key
 *   but BOS's carry the same vector and, RoPE'd, a query and a key d positions back score
 *   lambda * sum_j w_j cos(theta_j d): the score falls about like log d over the frequencies' range, so
 *   attention falls like a power of the distance, with the content-independent ripples RoPE gives.
 * - Content pairs: random q and k weight rows (no bias) reading the normalised hidden state, scaled so that
 *   their logit has standard deviation `content`.
 * - Sink pairs: a q bias on every query and k weights that read dimension 0 only, so BOS's key (and no other)
 *   scores atZero + sink against every query, wherever it is, atZero = lambda * sum_j w_j being a key's positional score at
 *   distance 0; these pairs turn slowly enough that the sink logit barely moves with position.
 * - lm_head gives BOS a zero logit row (it is never generated; prompts start with it).
 */
export function localizeAttention(t: Map<string, Float32Array>, c: ModelConfig, seed: number, bosId: number, p: LocalAttention): void {
  const H = c.hiddenSize;
  const D = c.headDim;
  const P = D / 2;
  const nPos = P - p.sinkPairs - p.contentPairs;
  if (!c.qkvBias || c.tieWordEmbeddings) throw new Error('the local preset needs q/k/v biases (qwen2) and an untied lm_head');
  if (!(p.locality >= 0) || !(p.content >= 0) || !(p.jitter >= 0) || !(p.bos > 0) || !Number.isFinite(p.sink)) throw new Error(`local attention constants out of range: ${JSON.stringify(p)}`);
  if (!Number.isInteger(p.sinkPairs) || !Number.isInteger(p.contentPairs) || p.sinkPairs < 1 || p.contentPairs < 1 || nPos < 1) {
    throw new Error(`local attention needs 1 or more sink, content and positional pairs out of ${P}, got sinkPairs ${p.sinkPairs}, contentPairs ${p.contentPairs}`);
  }
  const get = (name: string): Float32Array => {
    const x = t.get(name);
    if (!x) throw new Error(`localizeAttention: no tensor ${name}`);
    return x;
  };
  const marker = p.bos * Math.sqrt(H);
  /** What BOS's dimension 0 reads after a norm of weight 1 there, its content at unit scale. */
  const bosRead = marker / Math.sqrt(p.bos * p.bos + 1);
  const zeroCol = (w: Float32Array, rows: number) => {
    for (let i = 0; i < rows; i++) w[i * H + BOS_DIM] = 0;
  };
  const zeroRow = (w: Float32Array) => w.fill(0, BOS_DIM * (w.length / H), (BOS_DIM + 1) * (w.length / H));

  const embed = get('model.embed_tokens.weight');
  for (let v = 0; v < c.vocabSize; v++) embed[v * H + BOS_DIM] = v === bosId ? marker : 0;
  for (let l = 0; l < c.numLayers; l++) {
    const pre = `model.layers.${l}`;
    get(`${pre}.input_layernorm.weight`)[BOS_DIM] = 1;
    get(`${pre}.post_attention_layernorm.weight`)[BOS_DIM] = 1;
    const q = get(`${pre}.self_attn.q_proj.weight`);
    const k = get(`${pre}.self_attn.k_proj.weight`);
    const qb = get(`${pre}.self_attn.q_proj.bias`);
    const kb = get(`${pre}.self_attn.k_proj.bias`);
    for (const x of [q, k, qb, kb]) x.fill(0);
    get(`${pre}.self_attn.v_proj.bias`).fill(0);
    const rng = new Prng(seed, hashString(`${pre}.self_attn#local`));
    const contentStd = Math.sqrt((p.content * Math.sqrt(D / (2 * p.contentPairs))) / H);
    const group = c.numHeads / c.numKvHeads;
    for (let g = 0; g < c.numKvHeads; g++) {
      const qRows = Array.from({ length: group }, (_, i) => (g * group + i) * D);
      const kRow = g * D;
      let atZero = 0;
      for (let j = 0; j < nPos; j++) {
        const w = p.locality * Math.max(0.2, 1 + p.jitter * rng.normal());
        atZero += w;
        const a = Math.sqrt(w * Math.sqrt(D));
        for (const qr of qRows) qb[qr + j] = a;
        kb[kRow + j] = a;
        // BOS's key cancels its positional bias, so the sink's logit does not fall with distance.
        k[(kRow + j) * H + BOS_DIM] = -a / bosRead;
      }
      for (let j = nPos; j < nPos + p.contentPairs; j++) {
        for (const half of [j, j + P]) {
          for (const qr of qRows) for (let i = 0; i < H; i++) if (i !== BOS_DIM) q[(qr + half) * H + i] = contentStd * rng.normal();
          for (let i = 0; i < H; i++) if (i !== BOS_DIM) k[(kRow + half) * H + i] = contentStd * rng.normal();
        }
      }
      // Sink: sinkPairs * qBias * (kWeight * bosRead) / sqrt(D) = atZero + sink, against BOS's key only.
      const prod = (Math.sqrt(D) * (atZero + p.sink)) / p.sinkPairs;
      const mag = Math.sqrt(Math.abs(prod));
      for (let j = P - p.sinkPairs; j < P; j++) {
        for (const qr of qRows) qb[qr + j] = mag;
        k[(kRow + j) * H + BOS_DIM] = (Math.sign(prod) * mag) / bosRead;
      }
    }
    zeroCol(get(`${pre}.self_attn.v_proj.weight`), c.numKvHeads * D);
    zeroRow(get(`${pre}.self_attn.o_proj.weight`));
    zeroCol(get(`${pre}.mlp.gate_proj.weight`), c.intermediateSize);
    zeroCol(get(`${pre}.mlp.up_proj.weight`), c.intermediateSize);
    zeroRow(get(`${pre}.mlp.down_proj.weight`));
  }
  get('model.norm.weight')[BOS_DIM] = 0;
  get('lm_head.weight').fill(0, bosId * H, (bosId + 1) * H);
}

/** Model files this writer produces; removed first so a re-run with fewer shards leaves no stale ones. */
function isModelFile(f: string): boolean {
  return f === INDEX_FILE || /^model(-\d{5}-of-\d{5})?\.safetensors$/.test(f);
}

export function writeRandomModel(opts: RandomModelOptions): RandomModelInfo {
  if (!Number.isSafeInteger(opts.seed)) throw new Error(`seed must be an integer, got ${opts.seed}`);
  const stDtype = SAFETENSORS_DTYPE[opts.dtype];
  if (!stDtype) throw new Error(`dtype must be fp32, bf16 or fp16, got ${JSON.stringify(opts.dtype)}`);
  const config = resolveRandomConfig(opts.preset, opts.config);
  const tok = buildTokenizerFiles(config.vocabSize, config.maxPositionEmbeddings);

  const specs = weightSpecs(config);
  const tensors: TensorData[] = specs.map((s) => ({ name: s.name, dtype: stDtype, shape: s.shape, data: sample(s, opts.seed) }));
  if ((opts.preset ?? 'tiny') === 'local') {
    localizeAttention(new Map(tensors.map((t) => [t.name, t.data as Float32Array])), config, opts.seed, tok.bosId, { ...LOCAL_ATTENTION, ...opts.local });
  } else if (opts.local !== undefined) {
    throw new Error(`options.local applies to the local preset only, not ${opts.preset ?? 'tiny'}`);
  }

  mkdirSync(opts.out, { recursive: true });
  for (const f of existsSync(opts.out) ? readdirSync(opts.out) : []) if (isModelFile(f)) rmSync(join(opts.out, f));
  const written = writeSafetensorsModel(opts.out, tensors, { shards: opts.shards ?? 1, metadata: { format: 'pt' } });

  const hf: Record<string, unknown> = {
    ...modelConfigToHf(config),
    torch_dtype: TORCH_DTYPE[opts.dtype],
    bos_token_id: tok.bosId,
    eos_token_id: tok.eosId,
  };
  const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';
  writeFileSync(join(opts.out, 'config.json'), json(hf));
  writeFileSync(join(opts.out, 'tokenizer.json'), json(tok.tokenizer));
  writeFileSync(join(opts.out, 'tokenizer_config.json'), json(tok.config));

  return {
    dir: opts.out,
    config,
    files: written.files,
    tokenizer: tok.kind,
    bosId: tok.bosId,
    eosId: tok.eosId,
    parameters: tensors.reduce((s, t) => s + t.data.length, 0),
  };
}
