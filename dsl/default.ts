// The built-in deployment `magicdec gen` compiles when no spec is given: MagicDec self-speculation.
import { deploy } from './deploy.ts';
import { llama31_8b } from './models.ts';
import { causal, full, greedy, streaming } from './presets.ts';

export const defaultDeployment = deploy({
  model: llama31_8b,
  target: { attention: causal, kv: full },
  draft: { attention: causal, kv: streaming({ sink: 4, window: 508 }) },
  verify: greedy,
  gamma: 3,
  shapes: { batch: [1, 8, 32, 64, 128, 256], maxSeq: 32768, pageSize: 64 },
  dtype: 'bf16',
  arch: 'sm_90',
});

export default defaultDeployment;
