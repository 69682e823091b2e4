// Self-speculative *sampling* that stays exact: the MagicDec draft (the model itself over a StreamingLLM view
// of its KV cache) with the sampleAndMatch verifier. At every position the target's token is its own sample
// under the request's temperature, top-k, top-p and min-p, with Gumbel noise keyed by the request's seed and
// the position; the draft samples with the same noise, and drafted tokens are accepted while they agree. So
// a seeded speculative run emits exactly the seeded autoregressive run's tokens. Try it with
//   npx magicdec model random --seed 1 --out out/tiny-model
//   npx magicdec run --model out/tiny-model --spec examples/sample-and-match.ts --prompt "Once" --temperature 0.7 --seed 1
import { causal, deploy, full, models, sampleAndMatch, streaming } from 'magicdec';

export default deploy({
  model: models.tiny,
  target: { attention: causal, kv: full },
  draft: { attention: causal, kv: streaming({ sink: 4, window: 124 }) },
  verify: sampleAndMatch,
  gamma: 4,
  shapes: { batch: [1, 4], maxSeq: 2048, pageSize: 32 },
  dtype: 'bf16',
  arch: 'cpu',
});
