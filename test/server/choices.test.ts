// logprobs and n > 1 through the openai client, on loopback. logprobs: each token's is the float64
// log-softmax of the logits the engine keeps for it (recomputed here from the server's own engine), the top
// lists are the N most likely tokens, most likely first, the same streaming and not, and identical on a
// speculative and an autoregressive server. n: greedy choices are identical, seeded sampled choice i is
// the single request seeded seed + i, streams carry each choice's index, usage sums the choices, and a
// client that disconnects cancels every choice (all KV pages free).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PREFILL_ROWS, type RunningServer } from '../../server/index.ts';
import { tokenText } from '../../server/logprobs.ts';
import { buildRuntime } from '../runtime/build-runtime.ts';
import { metric, metrics, serve, settled, writeModel } from './support.ts';

const tmp = mkdtempSync(join(tmpdir(), 'md-serve-choices-'));
let spec: RunningServer;
let ar: RunningServer;
let client: OpenAI;
let arClient: OpenAI;

const PROMPT = [1, 40, 77, 12, 300, 9, 55, 200, 31, 8, 120, 64];
const TOKENS = 20;
const TOP = 5;

type Completion = OpenAI.Completion;
type Streamed = OpenAI.CompletionCreateParamsStreaming;
type Plain = OpenAI.CompletionCreateParamsNonStreaming;
interface Ids {
  token_ids?: number[];
}

beforeAll(async () => {
  buildRuntime();
  const model = writeModel(join(tmp, 'tiny'));
  spec = await serve(model);
  ar = await serve(model, { mode: 'ar' });
  client = new OpenAI({ baseURL: `${spec.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  arClient = new OpenAI({ baseURL: `${ar.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 600_000);
afterAll(async () => {
  await Promise.all([spec, ar].map((s) => s?.shutdown(1000)));
  rmSync(tmp, { recursive: true, force: true });
});

/** log-softmax in float64, written independently of the server's: log(sum exp) by a sorted, shifted sum. */
function logSoftmax(row: Float32Array): number[] {
  const xs = Array.from(row);
  const max = Math.max(...xs);
  const sum = [...xs].sort((a, b) => a - b).reduce((s, x) => s + Math.exp(x - max), 0);
  return xs.map((x) => x - max - Math.log(sum));
}

const body = { model: 'tiny', prompt: PROMPT, max_tokens: TOKENS, ignore_eos: true, return_token_ids: true, logprobs: TOP };

describe('logprobs', () => {
  it("completions: each token's logprob is the log-softmax of its kept logits; top_logprobs are the N most likely, sorted, with the chosen token", async () => {
    const got = await arClient.completions.create(body as Plain);
    const c = got.choices[0] as OpenAI.CompletionChoice & Ids;
    const lp = c.logprobs!;
    // The reference: the same prompt on the server's own engine, keeping its logits.
    const ref = await ar.engine.generate(PROMPT, { maxTokens: TOKENS, ignoreEos: true, keepLogits: true });
    expect(c.token_ids).toEqual(ref.tokens);
    expect(lp.tokens).toHaveLength(TOKENS);
    expect(lp.token_logprobs).toHaveLength(TOKENS);
    const tok = ar.context.tokenizer;
    for (let i = 0; i < TOKENS; i++) {
      const lsm = logSoftmax(ref.logits![i]);
      expect(lp.token_logprobs![i]).toBeCloseTo(lsm[ref.tokens[i]], 12);
      // A token's text, or OpenAI's bytes: form for a token that is only part of a UTF-8 character.
      const text = tok.decode([ref.tokens[i]], { keepSpecial: true });
      if (text.includes('\uFFFD')) expect(lp.tokens![i]).toMatch(/^bytes:(\\x[0-9a-f]{2})+$/);
      else expect(lp.tokens![i]).toBe(text);
      // The top N by the reference's ranking (larger first, then lower id), as text -> logprob.
      const order = lsm.map((v, t) => ({ v, t })).sort((a, b) => b.v - a.v || a.t - b.t);
      const top = lp.top_logprobs![i];
      const want = order.slice(0, TOP);
      const chosenInTop = want.some((w) => w.t === ref.tokens[i]);
      expect(Object.keys(top).length).toBe(chosenInTop ? TOP : TOP + 1);
      // (Looked up by text: a JSON object's integer-like keys do not keep their order; chat's lists show the order.)
      for (const w of want) expect(top[tokenText(tok, w.t).text]).toBeCloseTo(w.v, 12);
      expect(top[lp.tokens![i]]).toBeCloseTo(lsm[ref.tokens[i]], 12); // the chosen token is always there
      // Greedy: the chosen token is the most likely one.
      expect(order[0].t).toBe(ref.tokens[i]);
    }
    // text_offset: where each token's text starts in the choice's text.
    expect(lp.text_offset![0]).toBe(0);
    let whole = 0;
    for (let i = 0; i < TOKENS; i++) {
      const end = i + 1 < TOKENS ? lp.text_offset![i + 1] : c.text.length;
      expect(end).toBeGreaterThanOrEqual(lp.text_offset![i]);
      if (lp.tokens![i].startsWith('bytes:')) continue; // its character's text starts at the token completing it
      const slice = c.text.slice(lp.text_offset![i], end);
      // After partial-character tokens, the text they complete (or U+FFFD for bytes that form none) comes first.
      if (i > 0 && lp.tokens![i - 1].startsWith('bytes:')) expect(slice.endsWith(lp.tokens![i])).toBe(true);
      else expect(slice).toBe(lp.tokens![i]);
      whole++;
    }
    expect(whole).toBeGreaterThan(TOKENS / 2);
  });

  it("completions: a sampled token outside the top N is added to its top_logprobs (OpenAI's legacy shape)", async () => {
    const got = await arClient.completions.create({ ...body, logprobs: 1, temperature: 1.5, seed: 3, max_tokens: 40 } as Plain);
    const lp = got.choices[0].logprobs!;
    let outside = 0;
    lp.top_logprobs!.forEach((top, i) => {
      const keys = Object.keys(top);
      expect(top[lp.tokens![i]]).toBe(lp.token_logprobs![i]);
      if (keys.length === 2) {
        outside++;
        expect(Math.max(...Object.values(top))).toBeGreaterThan(lp.token_logprobs![i]); // the top one beats it
      } else expect(keys).toEqual([lp.tokens![i]]);
    });
    expect(outside).toBeGreaterThan(0);
  });

  it('are identical on the speculative and the autoregressive server, streaming and not', async () => {
    const [s, a] = await Promise.all([client.completions.create(body as Plain), arClient.completions.create(body as Plain)]);
    expect((s.choices[0] as Ids).token_ids).toEqual((a.choices[0] as Ids).token_ids);
    expect(s.choices[0].logprobs).toEqual(a.choices[0].logprobs);
    const joined = { tokens: [] as string[], token_logprobs: [] as number[], top_logprobs: [] as Record<string, number>[], text_offset: [] as number[] };
    for await (const chunk of await client.completions.create({ ...body, stream: true } as Streamed)) {
      const l = chunk.choices[0]?.logprobs;
      if (!l) continue;
      joined.tokens.push(...l.tokens!);
      joined.token_logprobs.push(...l.token_logprobs!);
      joined.top_logprobs.push(...l.top_logprobs!);
      joined.text_offset.push(...l.text_offset!);
    }
    expect(joined).toEqual(a.choices[0].logprobs);
  });

  it('chat: logprobs.content with token, logprob, bytes and top_logprobs (the greedy token first), streaming and not, AR == spec', async () => {
    const chat = { model: 'tiny', messages: [{ role: 'user' as const, content: 'Light the lamp' }], max_tokens: 12, logprobs: true, top_logprobs: 3 };
    const [s, a] = await Promise.all([client.chat.completions.create(chat), arClient.chat.completions.create(chat)]);
    const content = a.choices[0].logprobs!.content!;
    expect(s.choices[0].logprobs).toEqual(a.choices[0].logprobs);
    expect(content.length).toBe(a.usage!.completion_tokens);
    for (const e of content) {
      expect(e.top_logprobs).toHaveLength(3);
      expect(e.top_logprobs[0].token).toBe(e.token);
      expect(e.top_logprobs[0].logprob).toBe(e.logprob);
      expect(e.logprob).toBeLessThanOrEqual(0);
      for (let k = 1; k < 3; k++) expect(e.top_logprobs[k - 1].logprob).toBeGreaterThanOrEqual(e.top_logprobs[k].logprob);
      if (!e.token.startsWith('bytes:')) expect(e.bytes).toEqual([...Buffer.from(e.token, 'utf8')]);
    }
    const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
    for await (const chunk of await arClient.chat.completions.create({ ...chat, stream: true })) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    expect(streamed).toEqual(content);
    // Without logprobs there are none.
    const none = await arClient.chat.completions.create({ ...chat, logprobs: false, top_logprobs: undefined });
    expect(none.choices[0].logprobs).toBeNull();
  });
});

describe('n choices', () => {
  const plain = { model: 'tiny', prompt: PROMPT, max_tokens: 10, ignore_eos: true, return_token_ids: true };
  const ids = (c: Completion) => c.choices.map((x) => (x as Ids).token_ids);

  it('greedy: n identical choices with their indices; usage sums them', async () => {
    const one = await client.completions.create(plain as Plain);
    const three = await client.completions.create({ ...plain, n: 3 } as Plain);
    expect(three.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    for (const c of three.choices) {
      expect((c as Ids).token_ids).toEqual((one.choices[0] as Ids).token_ids);
      expect(c.text).toBe(one.choices[0].text);
    }
    expect(three.usage).toMatchObject({ prompt_tokens: PROMPT.length, completion_tokens: 30, total_tokens: PROMPT.length + 30 });
  });

  it('sampled with a seed: choice i is the request seeded seed + i; the stream carries the same per index', async () => {
    const sampled = { ...plain, temperature: 1, seed: 41 };
    const three = await arClient.completions.create({ ...sampled, n: 3 } as Plain);
    const singles = await Promise.all([41, 42, 43].map((seed) => arClient.completions.create({ ...sampled, seed } as Plain)));
    expect(ids(three)).toEqual(singles.map((s) => (s.choices[0] as Ids).token_ids));
    expect(new Set(ids(three).map((t) => t!.join(','))).size).toBeGreaterThan(1);
    expect((three.usage as unknown as { magicdec: { seed: number } }).magicdec.seed).toBe(41);
    const byIndex: number[][] = [[], [], []];
    const finished: number[] = [];
    for await (const chunk of await arClient.completions.create({ ...sampled, n: 3, stream: true, logprobs: 1 } as Streamed)) {
      for (const c of chunk.choices) {
        byIndex[c.index].push(...((c as Ids).token_ids ?? []));
        if (c.finish_reason) finished.push(c.index);
      }
    }
    expect(byIndex).toEqual(ids(three));
    expect(finished.sort()).toEqual([0, 1, 2]);
  });

  it('without a seed, several sampled choices report the one seed that replays them all', async () => {
    const sampled = { ...plain, temperature: 1, n: 2 };
    const first = await arClient.completions.create(sampled as Plain);
    const seed = (first.usage as unknown as { magicdec: { seed: number } }).magicdec.seed;
    const again = await arClient.completions.create({ ...sampled, seed } as Plain);
    expect(ids(again)).toEqual(ids(first));
  });

  it('a client that disconnects mid-stream cancels every choice: all KV pages free, n requests cancelled', async () => {
    const before = metric(await metrics(spec), 'magicdec_requests_finished_total', 'reason="cancelled"');
    const ac = new AbortController();
    const stream = await client.completions.create({ ...plain, max_tokens: 1000, n: 4, stream: true } as Streamed, { signal: ac.signal });
    try {
      for await (const _ of stream) {
        ac.abort();
        break;
      }
    } catch {
      // the client's abort
    }
    const after = await settled(spec);
    expect(metric(after, 'magicdec_requests_finished_total', 'reason="cancelled"') - before).toBe(4);
  });
});

describe('the schedule', () => {
  it('defaults step_tokens to a full decode round plus DEFAULT_PREFILL_ROWS prompt rows', () => {
    // max batch 8; gamma 3 when speculative.
    expect(spec.engine.info().options).toMatchObject({ stepTokens: 8 * 4 + DEFAULT_PREFILL_ROWS });
    expect(ar.engine.info().options).toMatchObject({ stepTokens: 8 + DEFAULT_PREFILL_ROWS });
    expect(DEFAULT_PREFILL_ROWS).toBe(128); // the value README and the serve help state
  });
});
