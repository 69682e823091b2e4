// Hugging Face config.json <-> ModelConfig. Only the Llama family the runtime implements is accepted
// (llama, mistral, qwen2); anything it would silently get wrong (other activations, extra biases, other
// rope scalings) is rejected with an error that names the file and the field.
import * as path from 'node:path';
import type { ModelConfig, RopeScaling } from '../dsl/models.ts';

type Arch = ModelConfig['architecture'];

const ARCH_CLASSES: Readonly<Record<string, Arch>> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
};
const CLASS_OF: Readonly<Record<Arch, string>> = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' };

/** Hugging Face's default rope_theta for Llama-family configs that omit it. */
const DEFAULT_ROPE_THETA = 10000;
/** Hugging Face's MistralConfig default when config.json has no sliding_window field. */
const MISTRAL_DEFAULT_WINDOW = 4096;

class Fields {
  constructor(
    private readonly obj: Record<string, unknown>,
    readonly file: string,
  ) {}

  fail(field: string, what: string): never {
    throw new Error(`${this.file}: field '${field}' ${what}`);
  }

  has(field: string): boolean {
    return this.obj[field] !== undefined && this.obj[field] !== null;
  }

  raw(field: string): unknown {
    return this.obj[field];
  }

  posInt(field: string, fallback?: number): number {
    if (!this.has(field)) {
      if (fallback !== undefined) return fallback;
      this.fail(field, 'is missing (a positive integer is required)');
    }
    const v = this.obj[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) this.fail(field, `must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  }

  posNum(field: string, fallback?: number): number {
    if (!this.has(field)) {
      if (fallback !== undefined) return fallback;
      this.fail(field, 'is missing (a positive number is required)');
    }
    const v = this.obj[field];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(field, `must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(field: string, fallback: boolean): boolean {
    if (!this.has(field)) return fallback;
    const v = this.obj[field];
    if (typeof v !== 'boolean') this.fail(field, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }
}

function architectureOf(f: Fields): Arch {
  if (f.has('model_type')) {
    const t = f.raw('model_type');
    if (typeof t !== 'string') f.fail('model_type', `must be a string, got ${JSON.stringify(t)}`);
    if (t === 'llama' || t === 'mistral' || t === 'qwen2') return t;
    f.fail('model_type', `is '${t}', an unsupported architecture (supported: llama, mistral, qwen2)`);
  }
  if (f.has('architectures')) {
    const a = f.raw('architectures');
    if (!Array.isArray(a) || a.length === 0 || typeof a[0] !== 'string') f.fail('architectures', `must be a non-empty list of class names, got ${JSON.stringify(a)}`);
    const arch = ARCH_CLASSES[a[0]];
    if (!arch) f.fail('architectures', `names '${a[0]}', an unsupported architecture (supported: ${Object.keys(ARCH_CLASSES).join(', ')})`);
    return arch;
  }
  return f.fail('model_type', 'is missing (and there is no architectures list): cannot tell the architecture');
}

function ropeScalingOf(f: Fields): RopeScaling | undefined {
  if (!f.has('rope_scaling')) return undefined;
  const rs = f.raw('rope_scaling');
  if (typeof rs !== 'object' || Array.isArray(rs) || rs === null) f.fail('rope_scaling', `must be an object or null, got ${JSON.stringify(rs)}`);
  const r = new Fields(rs as Record<string, unknown>, `${f.file}: rope_scaling`);
  const kind = r.has('rope_type') ? r.raw('rope_type') : r.raw('type');
  if (kind === 'default') return undefined;
  if (kind === 'linear') return { type: 'linear', factor: r.posNum('factor') };
  if (kind === 'llama3') {
    return {
      type: 'llama3',
      factor: r.posNum('factor'),
      lowFreqFactor: r.posNum('low_freq_factor'),
      highFreqFactor: r.posNum('high_freq_factor'),
      originalMaxPositionEmbeddings: r.posInt('original_max_position_embeddings'),
    };
  }
  return f.fail('rope_scaling.rope_type', `is ${JSON.stringify(kind)}; supported: 'llama3', 'linear', 'default'`);
}

/** The model name: the last segment of `_name_or_path` if present, else the config's directory name. */
function nameOf(obj: Record<string, unknown>, file: string): string {
  const n = obj['_name_or_path'];
  if (typeof n === 'string' && n.trim()) return n.replace(/[\\/]+$/, '').split(/[\\/]/).pop()!;
  const dir = path.basename(path.dirname(path.resolve(file)));
  const base = path.basename(file, '.json');
  return base === 'config' ? dir || 'model' : base;
}

/** Read a Hugging Face config.json; `file` is used in error messages and to name the model. */
export function readHfConfig(text: string, file: string): ModelConfig {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new Error(`${file}: expected a JSON object at the top level`);
  const o = obj as Record<string, unknown>;
  const f = new Fields(o, file);
  const architecture = architectureOf(f);

  const hiddenSize = f.posInt('hidden_size');
  const numHeads = f.posInt('num_attention_heads');
  const numKvHeads = f.posInt('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) f.fail('num_key_value_heads', `(${numKvHeads}) must divide num_attention_heads (${numHeads})`);
  if (!f.has('head_dim') && hiddenSize % numHeads !== 0) f.fail('head_dim', `is missing and hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${numHeads})`);
  const headDim = f.posInt('head_dim', hiddenSize / numHeads);
  if (headDim % 2 !== 0) f.fail('head_dim', `must be even for rotary embeddings, got ${headDim}`);

  if (f.has('hidden_act') && f.raw('hidden_act') !== 'silu') f.fail('hidden_act', `is ${JSON.stringify(f.raw('hidden_act'))}; only 'silu' is supported`);
  if (architecture !== 'qwen2' && f.bool('attention_bias', false)) f.fail('attention_bias', 'is true; only Qwen2 (q/k/v biases) is supported with attention biases');
  if (f.bool('mlp_bias', false)) f.fail('mlp_bias', 'is true; MLP biases are not supported');

  const ropeScaling = ropeScalingOf(f);
  const slidingWindow = slidingWindowOf(f, architecture);
  const config: ModelConfig = {
    name: nameOf(o, file),
    architecture,
    hiddenSize,
    intermediateSize: f.posInt('intermediate_size'),
    numLayers: f.posInt('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: f.posInt('vocab_size'),
    maxPositionEmbeddings: f.posInt('max_position_embeddings'),
    ropeTheta: f.posNum('rope_theta', DEFAULT_ROPE_THETA),
    ...(ropeScaling ? { ropeScaling } : {}),
    rmsNormEps: f.posNum('rms_norm_eps'),
    qkvBias: architecture === 'qwen2',
    tieWordEmbeddings: f.bool('tie_word_embeddings', false),
    ...(slidingWindow !== undefined ? { slidingWindow } : {}),
  };
  return config;
}

/**
 * Mistral attends within a sliding window (Hugging Face's default is 4096 when the field is absent; null
 * means none). Qwen2's per-layer sliding window (use_sliding_window) is not supported.
 */
function slidingWindowOf(f: Fields, architecture: Arch): number | undefined {
  if (architecture === 'qwen2' && f.bool('use_sliding_window', false)) f.fail('use_sliding_window', 'is true; Qwen2 sliding-window layers are not supported');
  if (architecture !== 'mistral') return undefined;
  const w = f.raw('sliding_window');
  if (w === undefined) return MISTRAL_DEFAULT_WINDOW;
  return w === null ? undefined : f.posInt('sliding_window');
}

/** The inverse of readHfConfig: a config.json object (used to write random test models). */
export function modelConfigToHf(m: ModelConfig): Record<string, unknown> {
  const rs = m.ropeScaling;
  return {
    _name_or_path: m.name,
    architectures: [CLASS_OF[m.architecture]],
    model_type: m.architecture,
    hidden_act: 'silu',
    hidden_size: m.hiddenSize,
    intermediate_size: m.intermediateSize,
    num_hidden_layers: m.numLayers,
    num_attention_heads: m.numHeads,
    num_key_value_heads: m.numKvHeads,
    head_dim: m.headDim,
    vocab_size: m.vocabSize,
    max_position_embeddings: m.maxPositionEmbeddings,
    rope_theta: m.ropeTheta,
    rope_scaling: !rs
      ? null
      : rs.type === 'linear'
        ? { rope_type: 'linear', factor: rs.factor }
        : {
            rope_type: 'llama3',
            factor: rs.factor,
            low_freq_factor: rs.lowFreqFactor,
            high_freq_factor: rs.highFreqFactor,
            original_max_position_embeddings: rs.originalMaxPositionEmbeddings,
          },
    rms_norm_eps: m.rmsNormEps,
    tie_word_embeddings: m.tieWordEmbeddings,
    ...(m.architecture === 'qwen2' ? { use_sliding_window: false } : { attention_bias: false }),
    ...(m.architecture === 'mistral' ? { sliding_window: m.slidingWindow ?? null } : {}),
    torch_dtype: 'bfloat16',
  };
}
