// Llama 3.1 8B on an H100 (sm_90) with a soft-capped target (Gemma-2 style tanh capping of the
// attention logits) and a sink + window draft; batch buckets up to 256 at 32K context.
//   npx magicdec gen examples/softcap-long-context.ts --out out/softcap
import { attention, deploy, full, greedy, kvPolicy, models } from 'magicdec';

export const softcapped = attention({
  name: 'softcapped',
  params: { cap: 50 },
  mask: (q, kv) => kv <= q,
  score: (s, q, kv, head, p) => p.cap * Math.tanh(s / p.cap),
});

export const streaming = kvPolicy({
  name: 'streaming',
  params: { sink: 16, window: 496 },
  keep: (kv, len, p) => kv < p.sink || kv >= len - p.window,
});

export default deploy({
  model: models.llama31_8b,
  target: { attention: softcapped, kv: full },
  draft: { attention: softcapped, kv: streaming },
  verify: greedy,
  gamma: 3,
  shapes: { batch: [1, 32, 64, 128, 256], maxSeq: 32768, pageSize: 64 },
  dtype: 'bf16',
  arch: 'sm_90',
});
