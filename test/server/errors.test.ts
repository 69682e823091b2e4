// Every kind of bad input to `magicdec serve` gets an error in OpenAI's shape, {error: {message, type,
// param, code}}, with the status it deserves, and disturbs nothing: the server answers a good request bit
// for bit as before, and no KV page is left taken. Raw HTTP (fetch), so malformed bodies can be sent.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../server/index.ts';
import { buildRuntime } from '../runtime/build-runtime.ts';
import { metric, metrics, post, serve, settled, writeModel } from './support.ts';

const tmp = mkdtempSync(join(tmpdir(), 'md-serve-errors-'));
let server: RunningServer;
let completions: string;
let chat: string;

// Two slots, room for one request beyond them, 40 KV pages of 16 positions, bodies up to 8 KiB.
beforeAll(async () => {
  buildRuntime();
  const model = writeModel(join(tmp, 'tiny'));
  server = await serve(model, { maxBatch: 2, maxQueue: 1, kvPages: 40, maxBodyBytes: 8192 });
  completions = `${server.url}/v1/completions`;
  chat = `${server.url}/v1/chat/completions`;
}, 600_000);
afterAll(async () => {
  await server?.shutdown(1000);
  rmSync(tmp, { recursive: true, force: true });
});

const ok = { model: 'tiny', prompt: 'The lamp', max_tokens: 6, ignore_eos: true, return_token_ids: true };
const okChat = { model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 };

interface Case {
  readonly what: string;
  readonly url?: 'chat';
  readonly body: unknown;
  readonly status: number;
  readonly param?: string | null;
  readonly code?: string;
  readonly message: string | RegExp;
}

const long = (n: number) => Array.from({ length: n }, (_, i) => (i * 7) % 500);

const CASES: Case[] = [
  { what: 'malformed JSON', body: '{"model": "tiny",', status: 400, code: 'invalid_json', message: 'the request body is not valid JSON' },
  { what: 'an empty body', body: '', status: 400, code: 'invalid_json', message: 'the request body is empty' },
  { what: 'a body that is not an object', body: '[1, 2]', status: 400, code: 'invalid_body', message: 'must be a JSON object' },
  { what: 'no model', body: { prompt: 'x' }, status: 400, param: 'model', code: 'missing_required_parameter', message: "'model' is required" },
  { what: 'a model that is not a string', body: { ...ok, model: 5 }, status: 400, param: 'model', code: 'invalid_type', message: "'model' must be a string, got number 5" },
  { what: 'an unknown model', body: { ...ok, model: 'gpt-4' }, status: 404, param: 'model', code: 'model_not_found', message: "The model 'gpt-4' does not exist; this server serves 'tiny'" },
  { what: 'no prompt', body: { model: 'tiny' }, status: 400, param: 'prompt', code: 'missing_required_parameter', message: "'prompt' is required" },
  { what: 'a prompt that is a number', body: { ...ok, prompt: 5 }, status: 400, param: 'prompt', code: 'invalid_type', message: "'prompt' must be a string, an array of token ids" },
  { what: 'a token id that is not an integer', body: { ...ok, prompt: [1, 2.5] }, status: 400, param: 'prompt[1]', code: 'invalid_type', message: "'prompt[1]' must be a token id" },
  { what: 'a token outside the vocabulary', body: { ...ok, prompt: [1, 512] }, status: 400, param: 'prompt', code: 'invalid_value', message: "'prompt[1]' is token 512, outside the vocabulary [0, 512)" },
  { what: 'two prompts', body: { ...ok, prompt: ['a', 'b'] }, status: 400, param: 'prompt', message: "'prompt' holds 2 prompts; this server takes one per request" },
  { what: 'an empty token prompt', body: { ...ok, prompt: [] }, status: 400, param: 'prompt', message: "'prompt' is empty" },
  { what: 'max_tokens as a string', body: { ...ok, max_tokens: '5' }, status: 400, param: 'max_tokens', code: 'invalid_type', message: "'max_tokens' must be an integer, got the string \"5\"" },
  { what: 'max_tokens 0', body: { ...ok, max_tokens: 0 }, status: 400, param: 'max_tokens', code: 'invalid_value', message: "'max_tokens' must be at least 1, got 0" },
  { what: 'a fractional max_tokens', body: { ...ok, max_tokens: 1.5 }, status: 400, param: 'max_tokens', code: 'invalid_type', message: "'max_tokens' must be an integer" },
  { what: 'stream as a string', body: { ...ok, stream: 'yes' }, status: 400, param: 'stream', code: 'invalid_type', message: "'stream' must be a boolean" },
  { what: 'stream_options without stream', body: { ...ok, stream_options: { include_usage: true } }, status: 400, param: 'stream_options', message: 'only allowed with stream: true' },
  { what: 'stop as a number', body: { ...ok, stop: 5 }, status: 400, param: 'stop', code: 'invalid_type', message: "'stop' must be a string or an array of strings" },
  { what: 'five stop strings', body: { ...ok, stop: ['a', 'b', 'c', 'd', 'e'] }, status: 400, param: 'stop', message: "'stop' holds at most 4 strings, got 5" },
  { what: 'an empty stop string', body: { ...ok, stop: ['a', ''] }, status: 400, param: 'stop', message: "'stop[1]' is empty" },
  {
    what: 'temperature above 0 on a speculative server with a greedy verifier',
    body: { ...ok, temperature: 0.7 },
    status: 400,
    param: 'temperature',
    code: 'unsupported_sampling',
    message: "temperature 0.7 asks for sampling, but this server decodes speculatively and the module's verifier 'greedy' accepts only the target's argmax: start the server with --mode ar to sample",
  },
  { what: 'a negative temperature', body: { ...ok, temperature: -1 }, status: 400, param: 'temperature', code: 'invalid_value', message: "'temperature' must be between 0 and 2, got -1" },
  { what: 'temperature as a string', body: { ...ok, temperature: 'hot' }, status: 400, param: 'temperature', code: 'invalid_type', message: "'temperature' must be a number" },
  { what: 'top_p above 1', body: { ...ok, top_p: 1.5 }, status: 400, param: 'top_p', code: 'invalid_value', message: "'top_p' must be between 0 and 1, got 1.5" },
  { what: 'a seed that is not an integer', body: { ...ok, seed: 'x' }, status: 400, param: 'seed', code: 'invalid_type', message: "'seed' must be an integer" },
  { what: 'a negative seed', body: { ...ok, seed: -1 }, status: 400, param: 'seed', code: 'invalid_value', message: "'seed' must be between 0 and 9007199254740991, got -1" },
  { what: 'top_p 0', body: { ...ok, top_p: 0 }, status: 400, param: 'top_p', code: 'invalid_value', message: "'top_p' must be above 0" },
  { what: 'top_k below -1', body: { ...ok, top_k: -2 }, status: 400, param: 'top_k', code: 'invalid_value', message: "'top_k' must be between -1 and 2147483647, got -2" },
  { what: 'min_p above 1', body: { ...ok, min_p: 2 }, status: 400, param: 'min_p', code: 'invalid_value', message: "'min_p' must be between 0 and 1, got 2" },
  { what: 'n above --max-batch', body: { ...ok, n: 3 }, status: 400, param: 'n', code: 'invalid_value', message: "'n' must be between 1 and 2 (the server's --max-batch), got 3" },
  { what: 'n of 0', body: { ...ok, n: 0 }, status: 400, param: 'n', code: 'invalid_value', message: "'n' must be between 1 and 2 (the server's --max-batch), got 0" },
  { what: 'n as a string', body: { ...ok, n: '2' }, status: 400, param: 'n', code: 'invalid_type', message: "'n' must be an integer" },
  {
    what: 'n choices too large for the KV pool together',
    body: { ...ok, prompt: long(400), max_tokens: 10, n: 2 },
    status: 400,
    param: 'prompt',
    code: 'context_length_exceeded',
    message: "this request needs 52 KV pages of 16 positions (2 choices of 413 positions), more than the server's 40 (--kv-pages)",
  },
  { what: 'logprobs above 20', body: { ...ok, logprobs: 21 }, status: 400, param: 'logprobs', code: 'invalid_value', message: "'logprobs' must be between 0 and 20, got 21" },
  { what: 'negative logprobs', body: { ...ok, logprobs: -1 }, status: 400, param: 'logprobs', code: 'invalid_value', message: "'logprobs' must be between 0 and 20, got -1" },
  { what: 'logprobs as a boolean (completions)', body: { ...ok, logprobs: true }, status: 400, param: 'logprobs', code: 'invalid_type', message: "'logprobs' must be an integer" },
  { what: 'chat: logprobs as a number', url: 'chat', body: { ...okChat, logprobs: 3 }, status: 400, param: 'logprobs', code: 'invalid_type', message: "'logprobs' must be a boolean" },
  { what: 'chat: top_logprobs above 20', url: 'chat', body: { ...okChat, logprobs: true, top_logprobs: 21 }, status: 400, param: 'top_logprobs', code: 'invalid_value', message: "'top_logprobs' must be between 0 and 20, got 21" },
  { what: 'chat: top_logprobs without logprobs', url: 'chat', body: { ...okChat, top_logprobs: 2 }, status: 400, param: 'top_logprobs', code: 'invalid_value', message: "'top_logprobs' needs 'logprobs': true" },
  { what: 'chat: n above --max-batch', url: 'chat', body: { ...okChat, n: 5 }, status: 400, param: 'n', code: 'invalid_value', message: "'n' must be between 1 and 2" },
  { what: 'echo', body: { ...ok, echo: true }, status: 400, param: 'echo', code: 'unsupported_parameter', message: "'echo' is not supported" },
  {
    what: 'a prompt too long for maxSeq',
    body: { ...ok, prompt: long(1000), max_tokens: 100 },
    status: 400,
    param: 'prompt',
    code: 'context_length_exceeded',
    message: "This model's maximum context length is 1024 tokens, but this request needs 1103: 1000 in the prompt + 100 max_tokens + 3 positions speculative decoding reserves (gamma)",
  },
  {
    what: 'a prompt too long for the KV pool',
    body: { ...ok, prompt: long(700), max_tokens: 10 },
    status: 400,
    param: 'prompt',
    code: 'context_length_exceeded',
    message: "this request needs 45 KV pages of 16 positions (713 positions), more than the server's 40 (--kv-pages)",
  },
  { what: 'chat: no messages', url: 'chat', body: { model: 'tiny' }, status: 400, param: 'messages', code: 'missing_required_parameter', message: "'messages' is required" },
  { what: 'chat: messages not an array', url: 'chat', body: { model: 'tiny', messages: 'hi' }, status: 400, param: 'messages', code: 'invalid_type', message: "'messages' must be an array" },
  { what: 'chat: no message', url: 'chat', body: { model: 'tiny', messages: [] }, status: 400, param: 'messages', message: "'messages' must hold at least one message" },
  { what: 'chat: an unknown role', url: 'chat', body: { model: 'tiny', messages: [{ role: 'wizard', content: 'x' }] }, status: 400, param: 'messages[0].role', message: "'messages[0].role' must be one of system, developer, user, assistant, tool" },
  { what: 'chat: content that is a number', url: 'chat', body: { model: 'tiny', messages: [{ role: 'user', content: 7 }] }, status: 400, param: 'messages[0].content', code: 'invalid_type', message: "'messages[0].content' must be a string" },
  {
    what: 'chat: an image part',
    url: 'chat',
    body: { model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] },
    status: 400,
    param: 'messages[0].content',
    message: 'this server takes text only',
  },
  { what: 'chat: an unknown model', url: 'chat', body: { ...okChat, model: 'x' }, status: 404, param: 'model', code: 'model_not_found', message: "The model 'x' does not exist" },
  { what: 'chat: sampling', url: 'chat', body: { ...okChat, temperature: 1 }, status: 400, param: 'temperature', code: 'unsupported_sampling', message: 'asks for sampling' },
  { what: 'chat: tools', url: 'chat', body: { ...okChat, tools: [{ type: 'function', function: { name: 'f' } }] }, status: 400, param: 'tools', code: 'unsupported_parameter', message: "'tools' are not supported" },
  {
    what: 'chat: a conversation too long',
    url: 'chat',
    body: { ...okChat, messages: [{ role: 'user', content: 'word '.repeat(400) }], max_tokens: 800 },
    status: 400,
    param: 'messages',
    code: 'context_length_exceeded',
    message: /^This model's maximum context length is 1024 tokens, but this request needs \d+: \d+ in the prompt \+ 800 max_tokens/,
  },
  { what: 'a body over --max-body-bytes', body: { ...ok, prompt: 'x'.repeat(9000) }, status: 413, param: null, code: 'request_too_large', message: 'the request body is larger than 8192 bytes (--max-body-bytes)' },
];

function expectError(r: Awaited<ReturnType<typeof post>>, c: Omit<Case, 'what' | 'body' | 'url'>, what: string): void {
  expect(r.status, `${what}: ${r.text}`).toBe(c.status);
  expect(r.headers.get('content-type'), what).toMatch(/^application\/json/);
  const e = r.json as { error: Record<string, unknown> };
  expect(Object.keys(e), what).toEqual(['error']);
  expect(Object.keys(e.error).sort(), what).toEqual(['code', 'message', 'param', 'type']);
  expect(e.error.type, what).toBe(c.status >= 500 ? 'server_error' : c.status === 429 ? 'rate_limit_error' : 'invalid_request_error');
  if (typeof c.message === 'string') expect(e.error.message, what).toContain(c.message);
  else expect(e.error.message, what).toMatch(c.message);
  if (c.param !== undefined) expect(e.error.param, what).toBe(c.param);
  if (c.code !== undefined) expect(e.error.code, what).toBe(c.code);
  expect(String(e.error.message), what).not.toMatch(/\n|    at /); // one line, no stack
}

describe('bad input to magicdec serve', () => {
  let good: number[];
  beforeAll(async () => {
    const r = await post(completions, ok);
    expect(r.status).toBe(200);
    good = (r.json!.choices as { token_ids: number[] }[])[0].token_ids;
  });

  for (const c of CASES) {
    it(`${c.what}: ${c.status}`, async () => {
      expectError(await post(c.url === 'chat' ? chat : completions, c.body), c, c.what);
    });
  }

  it('an unknown route: 404 in the same shape; a stream that fails validation is an ordinary JSON error', async () => {
    const r = await post(`${server.url}/v1/embeddings`, { model: 'tiny', input: 'x' });
    expectError(r, { status: 404, code: 'not_found', message: 'no route POST /v1/embeddings' }, 'unknown route');
    expectError(await post(completions, { ...ok, stream: true, temperature: 2 }), { status: 400, param: 'temperature', message: 'sampling' }, 'stream');
  });

  it('more requests (choices) than --max-batch + --max-queue: 429, and the rest are served', async () => {
    // Three requests of 38 KV pages each: the pool (40) runs one at a time, so all three stay in flight.
    const big = { model: 'tiny', prompt: [1, 2], max_tokens: 600, ignore_eos: true, stream: true };
    const held = [0, 1, 2].map(() => new AbortController());
    const inFlight = async (n: number) => {
      for (let i = 0; ; i++) {
        if (metric(await metrics(server), 'magicdec_requests_in_flight') === n) return;
        if (i > 400) throw new Error(`${n} requests never were in flight together`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    const streams = held.slice(0, 2).map((ac) => post(completions, big, { signal: ac.signal }).catch(() => undefined));
    await inFlight(2);
    // Two held and room for three: a request of two choices does not fit, one of one does.
    expectError(await post(completions, { ...ok, n: 2 }), { status: 429, code: 'rate_limit_exceeded', message: 'at most 3 (--max-batch + --max-queue)' }, 'n = 2 with 2 held');
    streams.push(post(completions, big, { signal: held[2].signal }).catch(() => undefined));
    await inFlight(3);
    expectError(await post(completions, ok), { status: 429, code: 'rate_limit_exceeded', message: 'at most 3 (--max-batch + --max-queue)' }, 'queue full');
    for (const ac of held) ac.abort();
    await Promise.all(streams);
    await settled(server);
  });

  it('after all of it the server answers as before, with every KV page free, and counted the errors', async () => {
    const r = await post(completions, ok);
    expect(r.status).toBe(200);
    expect((r.json!.choices as { token_ids: number[] }[])[0].token_ids).toEqual(good);
    const m = await settled(server);
    expect(metric(m, 'magicdec_kv_pages_free')).toBe(40);
    expect(metric(m, 'magicdec_http_requests_total', 'route="/v1/completions",status="400"')).toBeGreaterThan(20);
    expect(metric(m, 'magicdec_http_requests_total', 'route="/v1/completions",status="429"')).toBe(2);
    expect(metric(m, 'magicdec_http_requests_total', 'route="/v1/completions",status="413"')).toBe(1);
    expect(m).not.toMatch(/status="5\d\d"/);
  });
});
