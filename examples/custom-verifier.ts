// A verifier written in the spec itself, compiled exactly like the built-in presets: its accept and
// residual functions are lowered to IR and rendered into the module's verification kernel (md_verify_sample).
// This one is speculative sampling spelled out by hand: a drafted token the target finds at least as likely
// as the draft did is kept; otherwise it is kept with probability p / q (u is uniform in (0, 1)); after a
// rejection the next token is drawn from the target's surplus over the draft, max(0, p - q) normalised. So
// every emitted token is distributed as the target's own sample (exact in distribution), and greedy
// requests (temperature 0) emit the autoregressive tokens bit for bit. Check it with
//   npx magicdec check examples/custom-verifier.ts
// or run it with
//   npx magicdec model random --seed 1 --out out/tiny-model
//   npx magicdec run --model out/tiny-model --spec examples/custom-verifier.ts --prompt "Once" --temperature 0.8 --seed 1
import { causal, deploy, full, models, streaming, verifier } from 'magicdec';

const surplusSampling = verifier({
  name: 'surplus_sampling',
  mode: 'sample',
  accept: (p, q, u) => {
    if (p === 0) return false;  // the target never emits a token it gives no probability
    if (q <= p) return true;
    return u * q < p;
  },
  residual: (p, q) => (p > q ? p - q : 0),
});

export default deploy({
  model: models.tiny,
  target: { attention: causal, kv: full },
  draft: { attention: causal, kv: streaming({ sink: 4, window: 60 }) },
  verify: surplusSampling,
  gamma: 3,
  shapes: { batch: [1, 4], maxSeq: 1024, pageSize: 32 },
  dtype: 'bf16',
  arch: 'cpu',
});
