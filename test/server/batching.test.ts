// Continuous batching end to end through HTTP, on loopback. Requests that arrive while others decode get
// exactly the tokens they get alone (row invariance, docs/ARCHITECTURE.md invariant 1, now through the
// server); a load of 400 requests from 64 concurrent clients with mixed prompt lengths, streaming and not,
// loses or corrupts none and answers no 5xx; a soak of clients that disconnect at random points leaks no KV
// page, and their requests are cancelled rather than run to the end. /metrics shows every page free after.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../server/index.ts';
import { buildRuntime } from '../runtime/build-runtime.ts';
import { metric, metrics, parseEvents, post, runTokens, serve, settled, writeModel } from './support.ts';

const tmp = mkdtempSync(join(tmpdir(), 'md-serve-batch-'));
let model: string;
let server: RunningServer;
let V: number;

beforeAll(async () => {
  buildRuntime();
  model = writeModel(join(tmp, 'tiny'));
  server = await serve(model, { maxBatch: 64, maxQueue: 1024 });
  V = server.context.vocabSize;
}, 600_000);
afterAll(async () => {
  await server?.shutdown(1000);
  rmSync(tmp, { recursive: true, force: true });
});

/** A deterministic pseudo-random generator, so a failure replays. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

interface Case {
  prompt: number[];
  maxTokens: number;
  ignoreEos: boolean;
}

function body(c: Case, stream: boolean): Record<string, unknown> {
  return { model: 'tiny', prompt: c.prompt, max_tokens: c.maxTokens, ignore_eos: c.ignoreEos, stream, return_token_ids: true };
}

/** The token ids of a response, JSON or a stream; checks the stream's shape on the way. */
function tokensOf(r: Awaited<ReturnType<typeof post>>): number[] {
  if (r.events) {
    expect(r.events.at(-1)).toBe('[DONE]');
    const chunks = r.events.slice(0, -1) as { choices: { token_ids?: number[]; finish_reason: string | null }[] }[];
    expect(chunks.at(-1)!.choices[0].finish_reason).not.toBeNull();
    return chunks.flatMap((c) => c.choices[0].token_ids ?? []);
  }
  return (r.json!.choices as { token_ids: number[] }[])[0].token_ids;
}

/** Each case's tokens with nothing else in flight. */
async function alone(cases: readonly Case[]): Promise<number[][]> {
  const out: number[][] = [];
  for (const c of cases) {
    const r = await post(`${server.url}/v1/completions`, body(c, false));
    expect(r.status, r.text).toBe(200);
    out.push(tokensOf(r));
  }
  return out;
}

function cases(n: number, seed: number, longest: number, tokens: [number, number]): Case[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => {
    const len = r() < 0.6 ? 1 + Math.floor(r() * 40) : 41 + Math.floor(r() * (longest - 40));
    return {
      prompt: Array.from({ length: len }, () => Math.floor(r() * V)),
      maxTokens: tokens[0] + Math.floor(r() * (tokens[1] - tokens[0] + 1)),
      ignoreEos: r() < 0.8,
    };
  });
}

describe('continuous batching through HTTP', () => {
  it('requests arriving while others decode get exactly the tokens they get alone', async () => {
    const long = cases(4, 7, 300, [150, 150]).map((c) => ({ ...c, ignoreEos: true }));
    const late = cases(12, 8, 500, [4, 40]);
    const [wantLong, wantLate] = [await alone(long), await alone(late)];
    // `magicdec run` agrees with the server alone.
    expect(await runTokens(model, { tokens: long[0].prompt }, long[0].maxTokens, 'spec')).toEqual(wantLong[0]);

    // The long ones stream; once each has tokens, the late ones arrive, streaming and not.
    const firsts = long.map(() => {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      return { promise, resolve };
    });
    const finishedAt: number[] = [];
    const longTokens = long.map(async (c, i) => {
      const res = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body(c, true)) });
      let text = '';
      const first = firsts[i].resolve;
      const decoder = new TextDecoder();
      for await (const part of res.body!) {
        text += decoder.decode(part, { stream: true });
        if (text.includes('token_ids')) first();
      }
      finishedAt[i] = performance.now();
      return parseEvents(text);
    });
    await Promise.all(firsts.map((f) => f.promise));
    const lateResults = await Promise.all(late.map((c, i) => post(`${server.url}/v1/completions`, body(c, i % 2 === 0))));
    const lateDone = performance.now();
    lateResults.forEach((r, i) => {
      expect(r.status, r.text).toBe(200);
      expect(tokensOf(r), `late request ${i} (prompt ${late[i].prompt.length}, max ${late[i].maxTokens})`).toEqual(wantLate[i]);
    });
    const longEvents = await Promise.all(longTokens);
    longEvents.forEach((events, i) => expect(tokensOf({ status: 200, headers: new Headers(), text: '', events }), `long request ${i}`).toEqual(wantLong[i]));
    // They really overlapped: the long requests were still decoding when the late ones were all done.
    expect(Math.min(...finishedAt)).toBeGreaterThan(lateDone);
    await settled(server);
  });

  it('load: 400 requests from 64 concurrent clients, mixed prompt lengths, streaming and not: none lost, corrupted or 5xx', async () => {
    const pool = cases(32, 9, 600, [1, 24]);
    const want = await alone(pool);
    const before = await metrics(server);
    const rss0 = metric(before, 'magicdec_process_resident_memory_bytes');
    const r = rng(10);
    const plan = Array.from({ length: 400 }, () => ({ k: Math.floor(r() * pool.length), stream: r() < 0.5 }));
    let next = 0;
    const statuses = new Map<number, number>();
    const wrong: string[] = [];
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        for (let j = next++; j < plan.length; j = next++) {
          const { k, stream } = plan[j];
          const res = await post(`${server.url}/v1/completions`, body(pool[k], stream));
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          if (res.status !== 200) wrong.push(`request ${j}: ${res.status} ${res.text.slice(0, 200)}`);
          else if (JSON.stringify(tokensOf(res)) !== JSON.stringify(want[k])) wrong.push(`request ${j} (case ${k}, stream ${stream}): tokens differ`);
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    expect(wrong).toEqual([]);
    expect([...statuses]).toEqual([[200, 400]]);
    const after = await settled(server);
    expect(metric(after, 'magicdec_kv_pages_free')).toBe(server.kvPages);
    expect(metric(after, 'magicdec_http_requests_total', 'route="/v1/completions",status="200"')).toBeGreaterThanOrEqual(400 + pool.length);
    expect(after).not.toMatch(/^magicdec_http_requests_total\{[^}]*status="5\d\d"\}/m);
    const rss1 = metric(after, 'magicdec_process_resident_memory_bytes');
    console.log(`load: 400 requests in ${seconds.toFixed(1)} s; RSS ${(rss0 / 2 ** 20).toFixed(0)} -> ${(rss1 / 2 ** 20).toFixed(0)} MiB`);
  });

  it('soak: clients that disconnect at random points leak no KV pages, and their requests are cancelled', async () => {
    const before = await metrics(server);
    const cancelled0 = metric(before, 'magicdec_requests_finished_total', 'reason="cancelled"');
    const r = rng(11);
    let afterChunks = 0;
    let early = 0;
    let completed = 0;
    const n = 192;
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        for (let j = next++; j < n; j = next++) {
          const len = 1 + Math.floor(r() * 300);
          const prompt = Array.from({ length: len }, () => Math.floor(r() * V));
          const kind = r();
          const ac = new AbortController();
          if (kind < 0.15) {
            // Runs to the end.
            const res = await post(`${server.url}/v1/completions`, { model: 'tiny', prompt, max_tokens: 8, ignore_eos: true, stream: r() < 0.5 });
            expect(res.status).toBe(200);
            completed++;
            continue;
          }
          const b = JSON.stringify({ model: 'tiny', prompt, max_tokens: 600, ignore_eos: true, stream: kind < 0.85 });
          if (kind >= 0.85) {
            // Gives up on a JSON answer before it comes (or before the request is even read).
            setTimeout(() => ac.abort(), Math.floor(r() * 30));
            await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: b, signal: ac.signal }).then(
              (res) => res.text(),
              () => undefined,
            ).catch(() => undefined);
            early++;
            continue;
          }
          // Reads a few chunks of the stream, then hangs up.
          const res = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: b, signal: ac.signal });
          const want = 1 + Math.floor(r() * 12);
          let seen = 0;
          try {
            for await (const part of res.body!) {
              seen += new TextDecoder().decode(part).split('\n\n').filter((e) => e.includes('"text"')).length;
              if (seen >= want) {
                ac.abort();
                break;
              }
            }
          } catch {
            // aborted
          }
          afterChunks++;
        }
      }),
    );
    // Cancelled at the next step each: long before 600 tokens each could have been generated.
    const after = await settled(server, 15_000);
    expect(metric(after, 'magicdec_kv_pages_free')).toBe(server.kvPages);
    const cancelled = metric(after, 'magicdec_requests_finished_total', 'reason="cancelled"') - cancelled0;
    expect(cancelled).toBeGreaterThanOrEqual(afterChunks);
    expect(cancelled).toBeLessThanOrEqual(afterChunks + early);
    expect(afterChunks).toBeGreaterThan(50);
    expect(completed + early + afterChunks).toBe(n);
    // And the server still serves, bit for bit as before.
    const c = { prompt: [5, 6, 7], maxTokens: 12, ignoreEos: true };
    const [a] = await alone([c]);
    expect(a).toEqual(await runTokens(model, { tokens: c.prompt }, 12, 'spec'));
  });
});
