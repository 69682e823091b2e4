// md_verify_sample's inputs, shared by its CPU kernel tests (test/kernels/verify-sample.test.ts) and the CUDA
// kernel's under the SIMT emulator (test/emu/verify-sample.test.ts).
import type { SamplingParams } from '../../../model/sampling.ts';

/** One sequence's verification: gamma + 1 target rows, gamma draft rows and drafted tokens, its params, seed and position. */
export interface Seq {
  target: Float32Array[];
  draft: Float32Array[];
  tokens: number[];
  params: SamplingParams;
  seed: bigint;
  pos: number;
}

/** md_verify_sample's arguments for `seqs`, each with `gamma` drafted tokens (vocabulary V). */
export function verifySampleArgs(V: number, seqs: readonly Seq[], gamma: number) {
  // Room for every row given, even where a bad gamma says otherwise (the kernel must refuse it unread).
  const g = Math.max(gamma, ...seqs.map((s) => s.draft.length));
  const target = new Float32Array(seqs.length * (g + 1) * V);
  const draft = new Float32Array(seqs.length * g * V);
  seqs.forEach((s, b) => {
    s.target.forEach((row, j) => target.set(row, (b * (gamma + 1) + j) * V));
    s.draft.forEach((row, j) => draft.set(row, (b * gamma + j) * V));
  });
  const seed = new Uint32Array(seqs.length * 2);
  seqs.forEach((s, b) => {
    seed[2 * b] = Number(s.seed & 0xffffffffn);
    seed[2 * b + 1] = Number(s.seed >> 32n);
  });
  return {
    target_logits: target,
    draft_logits: draft,
    draft_tokens: Int32Array.from(seqs.flatMap((s) => s.tokens)),
    temperature: Float32Array.from(seqs, (s) => s.params.temperature),
    top_k: Int32Array.from(seqs, (s) => s.params.topK),
    top_p: Float32Array.from(seqs, (s) => s.params.topP),
    min_p: Float32Array.from(seqs, (s) => s.params.minP),
    seed,
    row_pos: Int32Array.from(seqs, (s) => s.pos),
    accepted: { out: seqs.length * 4 },
    next: { out: seqs.length * 4 },
    gamma,
    batch: seqs.length,
  };
}

/** Logits giving exactly the probabilities `probs` over tokens `at` (the rest -inf: probability 0). */
export function logitsFor(V: number, at: readonly number[], probs: readonly number[]): Float32Array {
  const l = new Float32Array(V).fill(-Infinity);
  at.forEach((t, i) => (l[t] = probs[i] > 0 ? Math.log(probs[i]) : -Infinity));
  return l;
}

export const T1: SamplingParams = { temperature: 1, topK: 0, topP: 1, minP: 0 };
