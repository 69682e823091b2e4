// The sampling fields of a request (temperature, top_p, top_k, min_p, seed), read once for both endpoints,
// and the engine's request options for them (docs/ABI.md, "Sampling"). temperature defaults to 0, greedy
// (OpenAI's default is 1): the output is then deterministic and the same in both modes. A speculative
// server whose module verifies greedily cannot sample (the runtime accepts only the target's argmax there),
// so it answers temperature > 0 with a 400 saying to use --mode ar.
import type { RequestOptions } from '../runtime/node/index.ts';
import { badRequest } from './errors.ts';
import { type Body, optionalInteger, optionalNumber } from './fields.ts';

export interface SamplingParams {
  /** 0 (the default here) is greedy. */
  readonly temperature: number;
  /** 0 keeps every token (-1, vLLM's spelling, means the same). */
  readonly topK: number;
  readonly topP: number;
  readonly minP: number;
  /** Keys the request's noise (with the position): the same seed replays the same tokens. */
  readonly seed?: number;
}

/** The largest seed the engine takes: seeds are integers in [0, 2^53). */
export const MAX_SEED = 2 ** 53 - 1;

/** The sampling fields of `body`, type- and range-checked (400 naming the field otherwise). */
export function readSampling(body: Body): SamplingParams {
  const temperature = optionalNumber(body, 'temperature', { min: 0, max: 2 }) ?? 0;
  const topP = optionalNumber(body, 'top_p', { min: 0, max: 1 }) ?? 1;
  if (topP === 0) throw badRequest("'top_p' must be above 0 (1 keeps every token), got 0", 'top_p', 'invalid_value');
  const topK = Math.max(0, optionalInteger(body, 'top_k', { min: -1, max: 2 ** 31 - 1 }) ?? 0);
  const minP = optionalNumber(body, 'min_p', { min: 0, max: 1 }) ?? 0;
  const seed = optionalInteger(body, 'seed', { min: 0, max: MAX_SEED });
  return { temperature, topK, topP, minP, ...(seed === undefined ? {} : { seed }) };
}

/** Whether `p` asks for anything but the most likely token. */
export function samples(p: SamplingParams): boolean {
  return p.temperature > 0;
}

/** What the server can do: sample (autoregressive), or only decode greedily (speculative with a greedy verifier). */
export interface SamplingSupport {
  readonly canSample: boolean;
  /** Why not, for the 400. */
  readonly why?: string;
}

/** The engine's request options for `p`. */
export function engineSampling(p: SamplingParams, support: SamplingSupport): Pick<RequestOptions, 'temperature' | 'topK' | 'topP' | 'minP' | 'seed'> {
  if (samples(p) && !support.canSample) {
    throw badRequest(`temperature ${p.temperature} asks for sampling, but ${support.why ?? 'this server decodes greedily'}`, 'temperature', 'unsupported_sampling');
  }
  return { temperature: p.temperature, topK: p.topK, topP: p.topP, minP: p.minP, ...(p.seed === undefined ? {} : { seed: p.seed }) };
}
