// The sampling fields of a request (temperature, top_p, top_k, min_p, seed), read once for both endpoints,
// and what the engine is asked for. The runtime verifies greedily today (runtime/src/engine.h), so any
// value that would sample is refused with a 400 naming it, and the others change nothing: greedy output is
// deterministic, so `seed` is accepted and has no effect. When the engine takes sampling parameters, wire
// them in `engineSampling` (and drop the refusal); the request parsing stays as it is.
import type { RequestOptions } from '../runtime/node/index.ts';
import { badRequest } from './errors.ts';
import { type Body, optionalInteger, optionalNumber } from './fields.ts';

export interface SamplingParams {
  /** 0 (the default here) is greedy. */
  readonly temperature: number;
  readonly topP: number;
  readonly topK: number;
  readonly minP: number;
  readonly seed?: number;
}

/** The sampling fields of `body`, type- and range-checked (400 naming the field otherwise). */
export function readSampling(body: Body): SamplingParams {
  const temperature = optionalNumber(body, 'temperature', { min: 0, max: 2 }) ?? 0;
  const topP = optionalNumber(body, 'top_p', { min: 0, max: 1 }) ?? 1;
  const topK = optionalInteger(body, 'top_k', { min: -1 }) ?? -1;
  const minP = optionalNumber(body, 'min_p', { min: 0, max: 1 }) ?? 0;
  const seed = optionalInteger(body, 'seed', { min: -(2 ** 63), max: 2 ** 64 - 1 });
  return { temperature, topP, topK, minP, ...(seed === undefined ? {} : { seed }) };
}

/** Whether `p` asks for anything but the most likely token. */
export function samples(p: SamplingParams): boolean {
  return p.temperature > 0;
}

/** The engine's request options for `p`: greedy only, until the runtime samples. */
export function engineSampling(p: SamplingParams): Pick<RequestOptions, never> {
  if (samples(p)) {
    throw badRequest(
      `temperature ${p.temperature} asks for sampling, which this server does not do yet: it decodes greedily (temperature 0, the default here)`,
      'temperature',
      'unsupported_sampling',
    );
  }
  return {};
}
