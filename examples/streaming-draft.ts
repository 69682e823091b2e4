// A MagicDec deployment written in the DSL: the tiny model on the CPU, drafting with a StreamingLLM view
// of the same KV cache. Compile it with
//   npx magicdec gen examples/streaming-draft.ts --build
import { attention, deploy, greedy, kvPolicy, models } from 'magicdec';

/** Each query attends to itself and everything before it. */
export const causal = attention({ name: 'causal', mask: (q, kv) => kv <= q });

/** The target pass reads the whole cache. */
export const everything = kvPolicy({ name: 'everything', keep: () => true });

/**
 * The draft reads the first `sink` positions and the last `window`: a fixed budget however long the
 * context, which is what makes drafting cheap at long context. Params are runtime arguments of the
 * kernel: changing them does not recompile.
 */
export const sinkWindow = kvPolicy({
  name: 'sink_window',
  params: { sink: 4, window: 252 },
  keep: (kv, len, p) => kv < p.sink || kv >= len - p.window,
});

export default deploy({
  model: models.tiny,
  target: { attention: causal, kv: everything },
  draft: { attention: causal, kv: sinkWindow },
  verify: greedy,
  gamma: 4,
  shapes: { batch: [1, 4], maxSeq: 2048, pageSize: 32 },
  dtype: 'fp32',
  arch: 'cpu',
});
