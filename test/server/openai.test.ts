// `magicdec serve` through the official `openai` client, on loopback: completions and chat, streaming and
// not, give the tokens `magicdec run` gives for the same prompt (greedy), speculative and autoregressive
// servers agree token for token, stop strings cut the text, the chat template of tokenizer_config.json is
// used when there is one, and usage (with magicdec's own numbers) comes with every answer.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizer, type LoadedTokenizer } from '../../model/tokenizer.ts';
import type { RunningServer } from '../../server/index.ts';
import { fallbackChatText } from '../../server/chat.ts';
import { buildRuntime } from '../runtime/build-runtime.ts';
import { runTokens, serve, settled, writeModel } from './support.ts';

const tmp = mkdtempSync(join(tmpdir(), 'md-serve-openai-'));
let model: string;
let templated: string;
let tok: LoadedTokenizer;
let spec: RunningServer;
let ar: RunningServer;
let chatServer: RunningServer;
let client: OpenAI;
let arClient: OpenAI;

const PROMPT = 'The keeper climbed the narrow stairs to light the lamp.';
// A template that differs visibly from the fallback: role markers and the BOS token in the text.
const TEMPLATE = "{{ bos_token }}{% for m in messages %}[{{ m.role | upper }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[ASSISTANT]{% endif %}";

/** Extension fields the server adds to the OpenAI shapes. */
interface Extra {
  token_ids?: number[];
}
interface MagicdecUsage {
  magicdec: { mode: string; acceptance: number | null; tokens_per_round: number; rounds: number; drafted: number; accepted: number };
}

beforeAll(async () => {
  buildRuntime();
  model = writeModel(join(tmp, 'tiny'));
  templated = join(tmp, 'templated');
  cpSync(model, templated, { recursive: true });
  const cfgFile = join(templated, 'tokenizer_config.json');
  writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(readFileSync(cfgFile, 'utf8')), chat_template: TEMPLATE }));
  tok = await loadTokenizer(model);
  // One after the other: concurrent builds of one module in one process race in the build cache.
  spec = await serve(model);
  ar = await serve(model, { mode: 'ar' });
  chatServer = await serve(templated);
  client = new OpenAI({ baseURL: `${spec.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  arClient = new OpenAI({ baseURL: `${ar.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 600_000);
afterAll(async () => {
  await Promise.all([spec, ar, chatServer].map((s) => s?.shutdown(1000)));
  rmSync(tmp, { recursive: true, force: true });
});

describe('magicdec serve with the openai client', () => {
  it('lists the model', async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual(['tiny']);
    expect((await client.models.retrieve('tiny')).owned_by).toBe('magicdec');
  });

  it('completions: the tokens of `magicdec run`, as text and token ids, with usage; the stream says the same', async () => {
    const want = await runTokens(model, { text: PROMPT }, 24);
    const body = { model: 'tiny', prompt: PROMPT, max_tokens: 24, ignore_eos: true, return_token_ids: true };
    const got = await client.completions.create(body as OpenAI.CompletionCreateParamsNonStreaming);
    const c = got.choices[0] as OpenAI.CompletionChoice & Extra;
    expect(c.token_ids).toEqual(want);
    expect(c.text).toBe(tok.decode(want, { unknownAsId: true }));
    expect(c.finish_reason).toBe('length');
    expect(got.object).toBe('text_completion');
    const promptTokens = 1 + tok.encode(PROMPT).length; // BOS + the text, as `run` tokenizes it
    expect(got.usage).toMatchObject({ prompt_tokens: promptTokens, completion_tokens: 24, total_tokens: promptTokens + 24 });
    const u = got.usage as unknown as MagicdecUsage;
    expect(u.magicdec.mode).toBe('spec');
    expect(u.magicdec.rounds).toBeGreaterThan(0);
    expect(u.magicdec.acceptance).toBeGreaterThan(0);
    expect(u.magicdec.tokens_per_round).toBeGreaterThanOrEqual(1);

    const stream = await client.completions.create({ ...body, stream: true } as OpenAI.CompletionCreateParamsStreaming);
    let text = '';
    const ids: number[] = [];
    const finishes: (string | null)[] = [];
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      const ch = chunk.choices[0] as OpenAI.CompletionChoice & Extra;
      text += ch.text;
      ids.push(...(ch.token_ids ?? []));
      finishes.push(ch.finish_reason);
      usage ??= chunk.usage ?? undefined;
    }
    expect(ids).toEqual(want);
    expect(text).toBe(c.text);
    expect(finishes.at(-1)).toBe('length');
    expect(finishes.slice(0, -1).every((f) => f === null)).toBe(true);
    expect(usage).toMatchObject({ prompt_tokens: promptTokens, completion_tokens: 24 });
  });

  it('chat: the fallback template, streaming and not, gives the tokens `run` gives for the rendered prompt', async () => {
    const messages = [
      { role: 'system' as const, content: 'You are terse.' },
      { role: 'user' as const, content: 'Where is the lamp?' },
    ];
    const ids = [tok.bos!, ...tok.encode(fallbackChatText(messages))];
    const want = await runTokens(model, { tokens: ids }, 20);
    const body = { model: 'tiny', messages, max_tokens: 20, ignore_eos: true, return_token_ids: true };
    const got = await client.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const c = got.choices[0] as OpenAI.ChatCompletion.Choice & Extra;
    expect(c.token_ids).toEqual(want);
    expect(c.message.role).toBe('assistant');
    expect(c.message.content).toBe(tok.decode(want, { unknownAsId: true }));
    expect(got.usage).toMatchObject({ prompt_tokens: ids.length, completion_tokens: 20 });

    const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } } as OpenAI.ChatCompletionCreateParamsStreaming);
    let content = '';
    const roles: string[] = [];
    let usage: OpenAI.CompletionUsage | undefined;
    let finish: string | null = null;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      if (chunk.choices.length === 0) usage = chunk.usage ?? undefined; // include_usage: the last chunk
      for (const ch of chunk.choices) {
        if (ch.delta.role) roles.push(ch.delta.role);
        content += ch.delta.content ?? '';
        finish = ch.finish_reason ?? finish;
      }
    }
    expect(roles).toEqual(['assistant']);
    expect(content).toBe(c.message.content);
    expect(finish).toBe('length');
    expect(usage).toMatchObject({ prompt_tokens: ids.length, completion_tokens: 20, total_tokens: ids.length + 20 });
  });

  it("chat: tokenizer_config.json's chat_template is rendered (BOS from the template, not added twice)", async () => {
    const messages = [{ role: 'user' as const, content: 'Light the lamp.' }];
    const text = '<s>[USER] Light the lamp.\n[ASSISTANT]';
    const ids = tok.encode(text);
    expect(ids[0]).toBe(tok.bos); // the tokenizer reads <s> in the text as the BOS token
    const want = await runTokens(templated, { tokens: ids }, 12);
    const c = new OpenAI({ baseURL: `${chatServer.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const got = await c.chat.completions.create({ model: 'templated', messages, max_tokens: 12, ignore_eos: true, return_token_ids: true } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect((got.choices[0] as OpenAI.ChatCompletion.Choice & Extra).token_ids).toEqual(want);
    expect(got.usage?.prompt_tokens).toBe(ids.length);
  });

  it('speculative and autoregressive servers give the same tokens, prompt after prompt', async () => {
    const prompts = ['a', 'The lamp', `${PROMPT} ${PROMPT} ${PROMPT}`, 'Stairs, stairs and more stairs: the keeper counted them all.'];
    for (const prompt of prompts) {
      const body = { model: 'tiny', prompt, max_tokens: 30, ignore_eos: true, return_token_ids: true } as OpenAI.CompletionCreateParamsNonStreaming;
      const [s, a] = await Promise.all([client.completions.create(body), arClient.completions.create(body)]);
      expect((s.choices[0] as Extra).token_ids, prompt).toEqual((a.choices[0] as Extra).token_ids);
      expect(s.choices[0].text).toBe(a.choices[0].text);
      expect((a.usage as unknown as MagicdecUsage).magicdec).toMatchObject({ mode: 'ar', acceptance: null, tokens_per_round: 1 });
    }
    // The short draft window of the test spec rejects drafts: equality held through rollbacks.
    const u = (await client.completions.create({ model: 'tiny', prompt: prompts[2], max_tokens: 30, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming)).usage as unknown as MagicdecUsage;
    expect(u.magicdec.accepted).toBeLessThan(u.magicdec.drafted);
  });

  it('stop strings end the text before the stop, streaming and not, and free the request', async () => {
    const full = await client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 40, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    const text = full.choices[0].text;
    // A stop string from the middle of the output (three characters from position 12).
    const stop = text.slice(12, 15);
    const cut = text.indexOf(stop);
    expect(cut).toBeGreaterThan(0);
    const body = { model: 'tiny', prompt: PROMPT, max_tokens: 40, ignore_eos: true, stop: [stop, 'never-seen-stop'] };
    const got = await client.completions.create(body);
    expect(got.choices[0].text).toBe(text.slice(0, cut));
    expect(got.choices[0].finish_reason).toBe('stop');
    expect(got.usage!.completion_tokens).toBeLessThan(40);
    let streamed = '';
    let finish: string | null = null;
    for await (const chunk of await client.completions.create({ ...body, stream: true })) {
      streamed += chunk.choices[0].text;
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    expect(streamed).toBe(text.slice(0, cut));
    expect(finish).toBe('stop');
    const m = await settled(spec);
    expect(m).toMatch(/^magicdec_requests_finished_total\{reason="stop"\} [1-9]/m);
  });

  it('an autoregressive server samples: seeded requests replay, equal `magicdec run --temperature --seed`, and report their seed', async () => {
    const body = { model: 'tiny', prompt: PROMPT, max_tokens: 24, ignore_eos: true, return_token_ids: true, temperature: 0.9, top_p: 0.95, seed: 7 };
    const want = await runTokens(model, { text: PROMPT }, 24, 'ar', ['--temperature', '0.9', '--top-p', '0.95', '--seed', '7']);
    const a = await arClient.completions.create(body as OpenAI.CompletionCreateParamsNonStreaming);
    expect((a.choices[0] as Extra).token_ids).toEqual(want);
    expect((a.usage as unknown as MagicdecUsage).magicdec).toMatchObject({ mode: 'ar', seed: 7 });
    let streamed: number[] = [];
    for await (const chunk of await arClient.completions.create({ ...body, stream: true } as OpenAI.CompletionCreateParamsStreaming)) {
      streamed = [...streamed, ...((chunk.choices[0] as Extra | undefined)?.token_ids ?? [])];
    }
    expect(streamed).toEqual(want);
    const greedy = await runTokens(model, { text: PROMPT }, 24, 'ar');
    expect(want).not.toEqual(greedy);
    const other = await arClient.completions.create({ ...body, seed: 8 } as OpenAI.CompletionCreateParamsNonStreaming);
    expect((other.choices[0] as Extra).token_ids).not.toEqual(want);
    // Without a seed the engine draws one, and says which: sending it back replays the tokens.
    const { seed: _, ...unseeded } = body;
    const drawn = await arClient.completions.create(unseeded as OpenAI.CompletionCreateParamsNonStreaming);
    const seed = (drawn.usage as unknown as MagicdecUsage & { magicdec: { seed?: number } }).magicdec.seed;
    expect(Number.isSafeInteger(seed)).toBe(true);
    const again = await arClient.completions.create({ ...unseeded, seed } as OpenAI.CompletionCreateParamsNonStreaming);
    expect((again.choices[0] as Extra).token_ids).toEqual((drawn.choices[0] as Extra).token_ids);
  });

  it('max_tokens defaults to 16 for completions; bad input surfaces as the client\'s typed errors', async () => {
    const got = await client.completions.create({ model: 'tiny', prompt: [1, 2, 3], ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(got.usage!.completion_tokens).toBe(16);
    await expect(client.completions.create({ model: 'nope', prompt: 'x' })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.completions.create({ model: 'tiny', prompt: 'x', temperature: 0.8 })).rejects.toMatchObject({ status: 400, param: 'temperature', code: 'unsupported_sampling' });
    await expect(client.chat.completions.create({ model: 'tiny', messages: [] })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
  });
});
