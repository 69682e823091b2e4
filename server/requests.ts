// The bodies of POST /v1/completions and /v1/chat/completions, checked and turned into one request the
// engine can run: the prompt as token ids, max_tokens, stop strings, streaming and sampling. Every problem is
// a 400 naming the field; a prompt that does not fit the module's maxSeq or the KV pool says by how much.
import type { LoadedTokenizer } from '../model/tokenizer.ts';
import { type ChatTemplate, readMessages } from './chat.ts';
import { ApiError, badRequest, modelNotFound } from './errors.ts';
import { type Body, onlyNeutral, optionalBoolean, optionalInteger, optionalObject, requiredString, stopStrings, wrongType } from './fields.ts';
import { MAX_TOP_LOGPROBS } from './logprobs.ts';
import { readSampling, type SamplingParams } from './sampling.ts';

/** What the server knows of the model it serves, for checking requests. */
export interface ModelContext {
  /** The model id clients name (GET /v1/models). */
  readonly id: string;
  readonly tokenizer: LoadedTokenizer;
  readonly vocabSize: number;
  /** The module's maxSeq: prompt + max_tokens (+ overshoot) must fit. */
  readonly maxSeq: number;
  /** Positions a request reserves past max_tokens: the module's gamma when speculative, else 0. */
  readonly overshoot: number;
  readonly pageSize: number;
  readonly kvPages: number;
  /** Sequences the engine decodes at once: the most choices (`n`) a request may ask for. */
  readonly maxBatch: number;
  readonly chat: ChatTemplate;
}

export interface GenerationRequest {
  readonly kind: 'completion' | 'chat';
  readonly prompt: readonly number[];
  readonly maxTokens: number;
  readonly stop: readonly string[];
  readonly stream: boolean;
  /** stream_options.include_usage: a last chunk with usage and no choices (OpenAI's form). */
  readonly includeUsage: boolean;
  readonly sampling: SamplingParams;
  /** Extension (as vLLM's): do not stop at the model's EOS token. */
  readonly ignoreEos: boolean;
  /** Extension (as vLLM's): each choice (and each streamed delta) also carries its token ids. */
  readonly returnTokenIds: boolean;
  /** Choices: each its own engine request (server/generation.ts). */
  readonly n: number;
  /** With logprobs: how many top tokens each token's entry lists (0..MAX_TOP_LOGPROBS); undefined: no logprobs. */
  readonly logprobs?: number;
}

/** OpenAI's default max_tokens for completions. */
export const DEFAULT_COMPLETION_TOKENS = 16;

function checkModel(body: Body, ctx: ModelContext): void {
  const model = requiredString(body, 'model');
  if (model !== ctx.id) throw modelNotFound(model, ctx.id);
}

/** Token ids checked against the vocabulary. */
function tokenIds(v: readonly unknown[], param: string, vocab: number): number[] {
  return v.map((t, i) => {
    if (typeof t !== 'number' || !Number.isInteger(t)) wrongType(`${param}[${i}]`, 'a token id (an integer)', t);
    if (t < 0 || t >= vocab) throw badRequest(`'${param}[${i}]' is token ${t}, outside the vocabulary [0, ${vocab})`, param, 'invalid_value');
    return t;
  });
}

/** Text to token ids: BOS first when the tokenizer has one and the text does not already hold it. */
function encode(ctx: ModelContext, text: string, withBos: boolean): number[] {
  const ids = ctx.tokenizer.encode(text);
  const bad = ids.findIndex((t) => t >= ctx.vocabSize);
  if (bad >= 0) throw new ApiError(500, `the tokenizer gives token ${ids[bad]}, outside the model's vocabulary [0, ${ctx.vocabSize})`, 'server_error');
  return withBos && ctx.tokenizer.bos !== undefined ? [ctx.tokenizer.bos, ...ids] : ids;
}

/** A completion's prompt: a string, or token ids, or a one-element list of either. */
function completionPrompt(body: Body, ctx: ModelContext): number[] {
  let v = body.prompt;
  if (v === undefined || v === null) throw badRequest("'prompt' is required", 'prompt', 'missing_required_parameter');
  if (Array.isArray(v) && v.length > 0 && (typeof v[0] === 'string' || Array.isArray(v[0]))) {
    if (v.length > 1) throw badRequest(`'prompt' holds ${v.length} prompts; this server takes one per request`, 'prompt', 'invalid_value');
    v = v[0];
  }
  if (typeof v === 'string') return encode(ctx, v, true);
  if (Array.isArray(v)) return tokenIds(v, 'prompt', ctx.vocabSize);
  return wrongType('prompt', 'a string, an array of token ids, or a one-element array of either', v);
}

/** Refuses what this server does not implement, where the request asks for more than the neutral value. */
function refuseUnsupported(body: Body, kind: GenerationRequest['kind']): void {
  onlyNeutral(body, 'presence_penalty', [0], 'is not supported (only 0)');
  onlyNeutral(body, 'frequency_penalty', [0], 'is not supported (only 0)');
  if (body.logit_bias !== undefined && body.logit_bias !== null) {
    const lb = body.logit_bias;
    if (typeof lb !== 'object' || Array.isArray(lb) || Object.keys(lb).length > 0) onlyNeutral(body, 'logit_bias', [], 'is not supported (only {})');
  }
  if (kind === 'completion') {
    onlyNeutral(body, 'best_of', [1], 'must be 1');
    onlyNeutral(body, 'echo', [false], 'is not supported (only false)');
    onlyNeutral(body, 'suffix', [''], 'is not supported');
  } else {
    if (Array.isArray(body.tools) && body.tools.length > 0) onlyNeutral(body, 'tools', [], 'are not supported');
    const rf = body.response_format as { type?: unknown } | null | undefined;
    if (rf !== undefined && rf !== null && !(typeof rf === 'object' && rf.type === 'text')) onlyNeutral(body, 'response_format', [], "is not supported (only {type: 'text'})");
  }
}

/** `n`: 1 up to the sequences the engine decodes at once, so that a request's choices run together. */
function choices(body: Body, ctx: ModelContext): number {
  const n = optionalInteger(body, 'n') ?? 1;
  if (n < 1 || n > ctx.maxBatch) throw badRequest(`'n' must be between 1 and ${ctx.maxBatch} (the server's --max-batch), got ${n}`, 'n', 'invalid_value');
  return n;
}

/** Completions' `logprobs`: the number of top tokens, 0..MAX_TOP_LOGPROBS; absent or null: none. */
function completionLogprobs(body: Body): number | undefined {
  return optionalInteger(body, 'logprobs', { min: 0, max: MAX_TOP_LOGPROBS });
}

/** Chat's `logprobs: true` with `top_logprobs` 0..MAX_TOP_LOGPROBS (which needs logprobs true, as OpenAI's does). */
function chatLogprobs(body: Body): number | undefined {
  const on = optionalBoolean(body, 'logprobs') ?? false;
  const top = optionalInteger(body, 'top_logprobs', { min: 0, max: MAX_TOP_LOGPROBS });
  if (top !== undefined && !on) throw badRequest("'top_logprobs' needs 'logprobs': true", 'top_logprobs', 'invalid_value');
  return on ? (top ?? 0) : undefined;
}

/**
 * The prompt plus max_tokens (plus the speculative overshoot) must fit the module's maxSeq, and the KV
 * pages of all `n` choices the pool (each choice reserves its own).
 */
function checkFits(ctx: ModelContext, promptTokens: number, maxTokens: number, n: number, param: string): void {
  const need = promptTokens + maxTokens + ctx.overshoot;
  const spec = ctx.overshoot ? ` + ${ctx.overshoot} positions speculative decoding reserves (gamma)` : '';
  if (need > ctx.maxSeq) {
    throw badRequest(
      `This model's maximum context length is ${ctx.maxSeq} tokens, but this request needs ${need}: ${promptTokens} in the prompt + ${maxTokens} max_tokens${spec}. ` +
        'Shorten the prompt or lower max_tokens.',
      param,
      'context_length_exceeded',
    );
  }
  const pages = n * Math.ceil(need / ctx.pageSize);
  if (pages > ctx.kvPages) {
    const each = n > 1 ? ` (${n} choices of ${need} positions)` : ` (${need} positions)`;
    throw badRequest(
      `this request needs ${pages} KV pages of ${ctx.pageSize} positions${each}, more than the server's ${ctx.kvPages} (--kv-pages)`,
      param,
      'context_length_exceeded',
    );
  }
}

function common(body: Body, kind: GenerationRequest['kind'], prompt: number[], maxTokens: number, n: number, logprobs: number | undefined): GenerationRequest {
  const streamOptions = optionalObject(body, 'stream_options');
  const stream = optionalBoolean(body, 'stream') ?? false;
  if (streamOptions && !stream) throw badRequest("'stream_options' is only allowed with stream: true", 'stream_options', 'invalid_value');
  const includeUsage = streamOptions ? (optionalBoolean(streamOptions, 'include_usage') ?? false) : false;
  return {
    kind,
    prompt,
    maxTokens,
    stop: stopStrings(body),
    stream,
    includeUsage,
    sampling: readSampling(body),
    ignoreEos: optionalBoolean(body, 'ignore_eos') ?? false,
    returnTokenIds: optionalBoolean(body, 'return_token_ids') ?? false,
    n,
    ...(logprobs === undefined ? {} : { logprobs }),
  };
}

function nonEmpty(prompt: number[], param: string): number[] {
  if (prompt.length === 0) throw badRequest(`'${param}' is empty`, param, 'invalid_value');
  return prompt;
}

export function parseCompletion(body: Body, ctx: ModelContext): GenerationRequest {
  checkModel(body, ctx);
  refuseUnsupported(body, 'completion');
  const prompt = nonEmpty(completionPrompt(body, ctx), 'prompt');
  const maxTokens = optionalInteger(body, 'max_tokens', { min: 1 }) ?? DEFAULT_COMPLETION_TOKENS;
  const n = choices(body, ctx);
  const req = common(body, 'completion', prompt, maxTokens, n, completionLogprobs(body));
  checkFits(ctx, prompt.length, maxTokens, n, 'prompt');
  return req;
}

export function parseChat(body: Body, ctx: ModelContext): GenerationRequest {
  checkModel(body, ctx);
  refuseUnsupported(body, 'chat');
  const messages = readMessages(body);
  const { text, bosInText } = ctx.chat.render(messages);
  const prompt = nonEmpty(encode(ctx, text, !bosInText), 'messages');
  const asked = optionalInteger(body, 'max_completion_tokens', { min: 1 }) ?? optionalInteger(body, 'max_tokens', { min: 1 });
  // Without a limit, a chat reply may use the rest of the context the module and its share of the pool
  // allow (each of the n choices reserves its KV pages for it).
  const n = choices(body, ctx);
  const room = Math.min(ctx.maxSeq, Math.floor(ctx.kvPages / n) * ctx.pageSize) - prompt.length - ctx.overshoot;
  const maxTokens = asked ?? Math.max(1, room);
  const req = common(body, 'chat', prompt, maxTokens, n, chatLogprobs(body));
  checkFits(ctx, prompt.length, maxTokens, n, 'messages');
  return req;
}
