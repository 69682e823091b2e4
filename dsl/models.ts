// Model shapes the compiler specialises kernels to. Field names follow the Hugging Face `config.json`
// of Llama-family models (camel-cased); `codegen/model-config.ts` reads a real config.json into this form.

export interface RopeScaling {
  /** 'llama3' (Llama 3.1 frequency-dependent scaling) or 'linear' (position interpolation). */
  readonly type: 'llama3' | 'linear';
  readonly factor: number;
  readonly lowFreqFactor?: number;
  readonly highFreqFactor?: number;
  readonly originalMaxPositionEmbeddings?: number;
}

export interface ModelConfig {
  readonly name: string;
  readonly architecture: 'llama' | 'mistral' | 'qwen2';
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly maxPositionEmbeddings: number;
  readonly ropeTheta: number;
  readonly ropeScaling?: RopeScaling;
  readonly rmsNormEps: number;
  /** Qwen2 has biases on the q/k/v projections. */
  readonly qkvBias: boolean;
  readonly tieWordEmbeddings: boolean;
  /** Mistral's sliding window: a query at q attends to kv only when q - kv < slidingWindow. */
  readonly slidingWindow?: number;
}

export const llama2_7b_32k: ModelConfig = {
  name: 'llama-2-7b-32k',
  architecture: 'llama',
  hiddenSize: 4096,
  intermediateSize: 11008,
  numLayers: 32,
  numHeads: 32,
  numKvHeads: 32,
  headDim: 128,
  vocabSize: 32000,
  maxPositionEmbeddings: 32768,
  ropeTheta: 10000,
  ropeScaling: { type: 'linear', factor: 8 },
  rmsNormEps: 1e-5,
  qkvBias: false,
  tieWordEmbeddings: false,
};

export const llama31_8b: ModelConfig = {
  name: 'llama-3.1-8b',
  architecture: 'llama',
  hiddenSize: 4096,
  intermediateSize: 14336,
  numLayers: 32,
  numHeads: 32,
  numKvHeads: 8,
  headDim: 128,
  vocabSize: 128256,
  maxPositionEmbeddings: 131072,
  ropeTheta: 500000,
  ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
  rmsNormEps: 1e-5,
  qkvBias: false,
  tieWordEmbeddings: false,
};

/** A tiny GQA Llama for tests and the demo: small enough that a CPU decodes thousands of tokens a second. */
export const tiny: ModelConfig = {
  name: 'tiny',
  architecture: 'llama',
  hiddenSize: 128,
  intermediateSize: 384,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 32,
  vocabSize: 512,
  maxPositionEmbeddings: 16384,
  ropeTheta: 10000,
  rmsNormEps: 1e-5,
  qkvBias: false,
  tieWordEmbeddings: false,
};

/** A small model (~50M parameters) for benchmarks where KV traffic should dominate at long context. */
export const small: ModelConfig = {
  name: 'small',
  architecture: 'llama',
  hiddenSize: 512,
  intermediateSize: 1536,
  numLayers: 4,
  numHeads: 8,
  numKvHeads: 4,
  headDim: 64,
  vocabSize: 4096,
  maxPositionEmbeddings: 32768,
  ropeTheta: 500000,
  ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
  rmsNormEps: 1e-5,
  qkvBias: false,
  tieWordEmbeddings: true,
};

export const models = { llama2_7b_32k, llama31_8b, tiny, small } as const;

/** Preset names accepted wherever a model is expected. */
export const modelPresets: Readonly<Record<string, ModelConfig>> = {
  'llama-2-7b-32k': llama2_7b_32k,
  'llama-3.1-8b': llama31_8b,
  tiny,
  small,
};
