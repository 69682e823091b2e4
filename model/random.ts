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

import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { modelConfigToHf, readHfConfig } from '../codegen/model-config.ts';
import { small, tiny, type ModelConfig } from '../dsl/models.ts';
import type { FloatDtype } from './dtypes.ts';
import { Prng, hashString } from './prng.ts';
import { INDEX_FILE, writeSafetensorsModel, type TensorData } from './safetensors.ts';
import { buildTokenizerFiles } from './tokenizer-build.ts';

export type RandomPreset = 'tiny' | 'small';
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

const PRESETS: Readonly<Record<RandomPreset, ModelConfig>> = { tiny, small };
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
