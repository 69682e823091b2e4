// Hugging Face config.json <-> ModelConfig, by the rules of docs/MODEL-FILES.md, which the runtime's reader
// (runtime/src/model_config.cpp) follows too, check for check and in the same order; both run the cases of
// test/fixtures/config-cases.json. Only the Llama family the runtime implements is accepted (llama,
// mistral, qwen2); anything it would silently get wrong (other activations, extra biases, other rope
// scalings) is refused with an error that names the file and the field.
import * as path from 'node:path';
import type { ModelConfig, RopeScaling } from '../dsl/models.ts';
import { CONFIG_INT_LIMITS, MAX_EOS_TOKEN_IDS, type ConfigIntField } from './limits.ts';
import { parseStrictJson, readRegularFile, type JsonValue } from './strict-json.ts';

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

/** A config object's fields; JSON null reads as absent. */
class Fields {
  constructor(readonly obj: JsonValue) {}

  find(key: string): JsonValue | undefined {
    const v = this.obj.get(key);
    return v && v.kind !== 'null' ? v : undefined;
  }
  has(key: string): boolean {
    return this.find(key) !== undefined;
  }

  fail(key: string, what: string): never {
    throw new Error(`${this.obj.file}: field '${this.obj.path ? `${this.obj.path}.${key}` : key}' ${what}`);
  }

  /** An integer field in [1, its limit], written as an integer (128.0 is refused). */
  static positiveInt(v: JsonValue): number {
    const max = CONFIG_INT_LIMITS[v.path as ConfigIntField];
    if (max === undefined) throw new Error(`internal error: no limit for config field '${v.path}'`);
    const x = v.integer();
    if (x === undefined) v.fail(`must be an integer, got ${v.dump()}`);
    if (x < 1n || x > BigInt(max)) v.fail(`must be an integer from 1 to ${max}, got ${v.dump()}`);
    return Number(x);
  }
  posInt(key: string, fallback?: number): number {
    const v = this.find(key);
    if (v) return Fields.positiveInt(v);
    if (fallback === undefined) this.fail(key, 'is missing');
    return fallback;
  }

  static positiveNumber(v: JsonValue): number {
    const x = v.number();
    if (x === undefined) v.fail(`must be a number, got ${v.dump()}`);
    if (!(x > 0)) v.fail(`must be positive, got ${v.dump()}`);
    return x;
  }
  posNum(key: string, fallback?: number): number {
    const v = this.find(key);
    if (v) return Fields.positiveNumber(v);
    if (fallback === undefined) this.fail(key, 'is missing');
    return fallback;
  }

  bool(key: string, fallback: boolean): boolean {
    const v: JsonValue | undefined = this.find(key);
    if (!v) return fallback;
    const b = v.boolean();
    if (b === undefined) return v.fail(`must be true or false, got ${v.dump()}`);
    return b;
  }
}

function architectureOf(f: Fields): Arch {
  const mt: JsonValue | undefined = f.find('model_type');
  if (mt) {
    const t = mt.string();
    if (t === undefined) mt.fail(`must be a string, got ${mt.dump()}`);
    if (t === 'llama' || t === 'mistral' || t === 'qwen2') return t;
    mt.fail(`is '${t}'; supported: llama, mistral, qwen2`);
  }
  const archs: JsonValue | undefined = f.find('architectures');
  if (archs) {
    const first = archs.items()[0]?.string();
    if (archs.kind !== 'array' || first === undefined) return archs.fail(`must be a non-empty list of class names, got ${archs.dump()}`);
    const arch = Object.hasOwn(ARCH_CLASSES, first) ? ARCH_CLASSES[first] : undefined;
    if (!arch) return archs.fail(`names '${first}'; supported: ${Object.keys(ARCH_CLASSES).join(', ')}`);
    return arch;
  }
  return f.fail('model_type', "is missing (and there is no 'architectures' list to infer it from)");
}

function ropeScalingOf(f: Fields): RopeScaling | undefined {
  const rs: JsonValue | undefined = f.find('rope_scaling');
  if (!rs) return undefined;
  if (rs.kind !== 'object') rs.fail(`must be an object or null, got ${rs.dump()}`);
  const s: Fields = new Fields(rs);
  const kind: JsonValue | undefined = s.has('rope_type') ? s.find('rope_type') : s.find('type');
  if (!kind) s.fail('rope_type', 'is missing');
  const type = kind.string();
  if (type === undefined) return kind.fail(`must be a string, got ${kind.dump()}`);
  if (type === 'default') return undefined;
  if (type !== 'llama3' && type !== 'linear') return kind.fail(`is '${type}'; supported: llama3, linear, default`);
  const factor = s.posNum('factor');
  if (type === 'linear') return { type, factor };
  return {
    type,
    factor,
    lowFreqFactor: s.posNum('low_freq_factor'),
    highFreqFactor: s.posNum('high_freq_factor'),
    originalMaxPositionEmbeddings: s.posInt('original_max_position_embeddings'),
  };
}

/** Mistral's window: absent is Hugging Face's default 4096, null is none (so null is not "absent" here). */
function slidingWindowOf(f: Fields, architecture: Arch): number | undefined {
  if (architecture !== 'mistral') return undefined;
  const w = f.obj.get('sliding_window');
  if (!w) return MISTRAL_DEFAULT_WINDOW;
  return w.kind === 'null' ? undefined : Fields.positiveInt(w);
}

/** bos/eos ids are checked (the runtime stops on them) though ModelConfig does not carry them. */
function checkSpecialTokens(f: Fields, vocabSize: number): void {
  const tokenId = (v: JsonValue): void => {
    const x = v.integer();
    if (x === undefined || x < 0n || x >= BigInt(vocabSize)) v.fail(`must be a token id from 0 to ${vocabSize - 1} (vocab_size - 1), got ${v.dump()}`);
  };
  const bos = f.find('bos_token_id');
  if (bos) tokenId(bos);
  const eos: JsonValue | undefined = f.find('eos_token_id');
  if (!eos) return;
  if (eos.kind !== 'array') return tokenId(eos);
  if (eos.size < 1 || eos.size > MAX_EOS_TOKEN_IDS) eos.fail(`must list 1 to ${MAX_EOS_TOKEN_IDS} token ids, got ${eos.size}`);
  eos.items().forEach(tokenId);
}

/** The model name: the last segment of `_name_or_path` if present, else the config's directory name. */
function nameOf(f: Fields, file: string): string {
  const n = f.find('_name_or_path')?.string();
  if (n !== undefined && n.trim()) return n.replace(/[\\/]+$/, '').split(/[\\/]/).pop()!;
  const dir = path.basename(path.dirname(path.resolve(file)));
  const base = path.basename(file, '.json');
  return base === 'config' ? dir || 'model' : base;
}

/** Read a Hugging Face config.json's text; `file` is used in error messages and to name the model. */
export function readHfConfig(text: string, file: string): ModelConfig {
  const root = parseStrictJson(text, file);
  if (root.kind !== 'object') throw new Error(`${file}: the top level must be a JSON object`);
  const f: Fields = new Fields(root);
  const architecture = architectureOf(f);
  const hiddenSize = f.posInt('hidden_size');
  const intermediateSize = f.posInt('intermediate_size');
  const numLayers = f.posInt('num_hidden_layers');
  const numHeads = f.posInt('num_attention_heads');
  const numKvHeads = f.posInt('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) f.fail('num_key_value_heads', `(${numKvHeads}) must divide num_attention_heads (${numHeads})`);
  if (!f.has('head_dim') && hiddenSize % numHeads !== 0) f.fail('head_dim', `is missing and hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${numHeads})`);
  const headDim = f.posInt('head_dim', hiddenSize / numHeads);
  if (headDim % 2 !== 0) f.fail('head_dim', `must be even for rotary embeddings, got ${headDim}`);
  const vocabSize = f.posInt('vocab_size');
  const maxPositionEmbeddings = f.posInt('max_position_embeddings');
  const ropeTheta = f.posNum('rope_theta', DEFAULT_ROPE_THETA);
  const ropeScaling = ropeScalingOf(f);
  const rmsNormEps = f.posNum('rms_norm_eps');
  const tieWordEmbeddings = f.bool('tie_word_embeddings', false);
  const act: JsonValue | undefined = f.find('hidden_act');
  if (act && act.string() !== 'silu') act.fail(`is ${act.dump()}; only silu is supported`);
  if (f.bool('mlp_bias', false)) f.fail('mlp_bias', 'is true; MLP biases are not supported');
  const qkvBias = architecture === 'qwen2'; // Qwen2 has q/k/v biases; no other attention bias is supported
  if (!qkvBias && f.bool('attention_bias', false)) f.fail('attention_bias', 'is true; only Qwen2 (q/k/v biases) is supported with attention biases');
  const slidingWindow = slidingWindowOf(f, architecture);
  if (architecture === 'qwen2' && f.bool('use_sliding_window', false)) f.fail('use_sliding_window', 'is true; Qwen2 sliding-window layers are not supported');
  checkSpecialTokens(f, vocabSize);
  return {
    name: nameOf(f, file),
    architecture,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    maxPositionEmbeddings,
    ropeTheta,
    ...(ropeScaling ? { ropeScaling } : {}),
    rmsNormEps,
    qkvBias,
    tieWordEmbeddings,
    ...(slidingWindow !== undefined ? { slidingWindow } : {}),
  };
}

/** Read a config.json file (a regular file: a FIFO is refused without blocking). */
export function readHfConfigFile(file: string, shownAs: string = file): ModelConfig {
  return readHfConfig(readRegularFile(file), shownAs);
}

/** config.json names -> ModelConfig names, for messages about a model written in TypeScript. */
const CAMEL: Readonly<Record<string, string>> = {
  model_type: 'architecture',
  hidden_size: 'hiddenSize',
  intermediate_size: 'intermediateSize',
  num_hidden_layers: 'numLayers',
  num_attention_heads: 'numHeads',
  num_key_value_heads: 'numKvHeads',
  head_dim: 'headDim',
  vocab_size: 'vocabSize',
  max_position_embeddings: 'maxPositionEmbeddings',
  rope_theta: 'ropeTheta',
  rms_norm_eps: 'rmsNormEps',
  tie_word_embeddings: 'tieWordEmbeddings',
  sliding_window: 'slidingWindow',
  rope_scaling: 'ropeScaling',
  'rope_scaling.rope_type': 'ropeScaling.type',
  'rope_scaling.factor': 'ropeScaling.factor',
  'rope_scaling.low_freq_factor': 'ropeScaling.lowFreqFactor',
  'rope_scaling.high_freq_factor': 'ropeScaling.highFreqFactor',
  'rope_scaling.original_max_position_embeddings': 'ropeScaling.originalMaxPositionEmbeddings',
};

/**
 * What is wrong with a model written in TypeScript (a preset, a spec's object, a test's), by the same rules
 * as a config.json: it is checked as the config.json modelConfigToHf writes for it, and the first problem
 * comes back with the field's ModelConfig name ("field 'hiddenSize' must be an integer from 1 to 65536,
 * got 8589934592"); undefined when there is none. Non-finite numbers are refused first (JSON has none).
 */
export function modelConfigProblem(m: ModelConfig): string | undefined {
  const numbers: [string, unknown][] = [
    ...Object.entries(m),
    ...Object.entries(m.ropeScaling ?? {}).map(([k, v]): [string, unknown] => [`ropeScaling.${k}`, v]),
  ];
  for (const [k, v] of numbers) if (typeof v === 'number' && !Number.isFinite(v)) return `field '${k}' must be a finite number, got ${v}`;
  const LABEL = 'model';
  try {
    readHfConfig(JSON.stringify(modelConfigToHf(m)), LABEL);
    return undefined;
  } catch (e) {
    const rename = (name: string) => (Object.hasOwn(CAMEL, name) ? CAMEL[name] : name);
    return (e as Error).message.replace(`${LABEL}: `, '').replace(/[a-z]+(?:_[a-z]+)+(?:\.[a-z]+(?:_[a-z]+)*)?/g, rename);
  }
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
