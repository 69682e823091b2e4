// The engine's schedule (runtime/src/engine.h, Engine::step) and cancellation. A step runs a decode round
// over every decoding request and then a prefill chunk in the rest of the step's token budget, so a request
// keeps getting tokens in every step while a long prompt is fed beside it, and that prompt advances every
// step. A cancelled request frees its slot and KV pages at the next step, whether it was queued, prefilling
// or decoding, and the others' tokens and logits stay bit for bit those they produce alone (invariant 1).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CancelledError as CancelledErrorT, Engine as EngineT, Generation } from '../../runtime/node/index.ts';
import { bitwiseMismatch, prepareCase, withEngine, type PreparedCase } from '../support/runtime-cases.ts';
import { Stepper } from '../support/runtime-stepper.ts';
import { buildRuntime, runProgram, type RuntimeBuild } from './build-runtime.ts';

const root = mkdtempSync(join(tmpdir(), 'md-schedule-'));
let rt: RuntimeBuild;
let Engine: typeof EngineT;
let CancelledError: typeof CancelledErrorT;
let p: PreparedCase;
let V: number;

const prompt = (n: number, k: number) => Array.from({ length: n }, (_, i) => (i * 31 + k * 17 + 5) % V);

beforeAll(async () => {
  rt = buildRuntime();
  ({ Engine, CancelledError } = await import('../../runtime/node/index.ts'));
  p = await prepareCase('tiedBf16', root);
  V = p.case.model.vocabSize;
}, 600_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Each prompt decoded alone, autoregressively: what any schedule must reproduce bit for bit. */
async function alone(prompts: readonly (readonly number[])[], maxTokens: number): Promise<Generation[]> {
  return withEngine(Engine, p, { mode: 'ar', maxBatch: 1 }, async (e) => {
    const out: Generation[] = [];
    for (const pr of prompts) out.push(await e.generate(pr, { maxTokens, ignoreEos: true }));
    return out;
  });
}

describe('schedule: decode rounds and prefill chunks share every step', () => {
  it('a decoding request gets tokens in every step while a long prompt prefills, and the prompt advances every step', async () => {
    const G = p.case.gamma;
    const stepTokens = 2 * (G + 1) + 10; // a full round of 2, plus 10: the prompt gets 10 + (G + 1) rows a step beside one decoder
    const short = prompt(6, 1);
    const long = prompt(300, 2);
    const opts = { maxTokens: 200, ignoreEos: true };
    const [refShort, refLong] = await alone([short, long], opts.maxTokens);
    const s = await Stepper.create(p.modelDir, p.library, V, { mode: 'spec', maxBatch: 2, stepTokens });
    try {
      const run = await s.run([
        { prompt: short, opts, at: 0 },
        { prompt: long, opts: { maxTokens: 8, ignoreEos: true }, at: 2 },
      ]);
      const [a, b] = run.requests;
      // The long prompt's prefill: admitted at step 2, one chunk of stepTokens - (G + 1) rows per step.
      const chunk = stepTokens - (G + 1);
      const bound = 2 + Math.ceil(long.length / chunk) - 1;
      expect(b.firstTokenAt).toBeGreaterThan(2);
      expect(b.firstTokenAt).toBeLessThanOrEqual(bound);
      expect(a.finishedAt, 'the decoding request outlives the prefill (else the test shows nothing)').toBeGreaterThan(b.firstTokenAt);
      for (let step = 2; step <= b.firstTokenAt; step++) {
        expect(a.tokenSteps, `the decoding request got no token in step ${step}`).toContain(step);
        expect(run.prefillSteps, `the prompt did not advance in step ${step}`).toContain(step);
      }
      // From its first token to its last, the decoding request got tokens in every single step.
      expect(a.tokenSteps).toEqual(Array.from({ length: a.finishedAt - a.firstTokenAt + 1 }, (_, i) => a.firstTokenAt + i));
      expect(bitwiseMismatch(a, refShort)).toBeUndefined();
      expect(bitwiseMismatch(b, refLong, 0, 8)).toBeUndefined();
      expect(run.stats.freePages).toBe(2 * p.plan.pagesPerSeq);
    } finally {
      s.close();
    }
  });

  it('step_tokens must cover a full decode round, and info reports it', async () => {
    const G = p.case.gamma;
    await expect(Engine.create(p.modelDir, p.library, { mode: 'spec', maxBatch: 2, stepTokens: 2 * (G + 1) - 1 })).rejects.toThrow(
      `option step_tokens: ${2 * (G + 1) - 1} is less than the ${2 * (G + 1)} rows of a full decode round (max_batch 2 x (gamma ${G} + 1))`,
    );
    await expect(Engine.create(p.modelDir, p.library, { mode: 'ar', maxBatch: 3, stepTokens: 2 })).rejects.toThrow(
      'option step_tokens: 2 is less than the 3 rows of a full decode round (max_batch 3)',
    );
    await withEngine(Engine, p, { mode: 'ar', maxBatch: 3, stepTokens: 3 }, async (e) => {
      expect(e.info().options).toMatchObject({ stepTokens: 3 });
      // Three rows a step: two decoders leave one row for the third prompt, which still completes.
      const prompts = [prompt(4, 3), prompt(5, 4), prompt(40, 5)];
      const want = await alone(prompts, 12);
      const got = await Promise.all(prompts.map((pr) => e.generate(pr, { maxTokens: 12, ignoreEos: true })));
      got.forEach((g, i) => expect(g.tokens, `prompt ${i}`).toEqual(want[i].tokens));
    });
  });

  it('prefillFirst: no decode round while a prompt prefills, so rounds decode the whole batch; the same tokens', async () => {
    const G = p.case.gamma;
    const stepTokens = 2 * (G + 1) + 10;
    const short = prompt(6, 11);
    const long = prompt(300, 12);
    const opts = { maxTokens: 40, ignoreEos: true };
    const [refShort, refLong] = await alone([short, long], opts.maxTokens);
    const s = await Stepper.create(p.modelDir, p.library, V, { mode: 'spec', maxBatch: 2, stepTokens, prefillFirst: true });
    try {
      expect(s.info().options).toMatchObject({ prefillFirst: true });
      const run = await s.run([
        { prompt: short, opts, at: 0 },
        { prompt: long, opts, at: 2 },
      ]);
      const [a, b] = run.requests;
      // The long prompt gets the whole budget each step: stepTokens rows, not stepTokens - (G + 1).
      expect(b.firstTokenAt).toBeLessThanOrEqual(2 + Math.ceil(long.length / stepTokens) - 1);
      // While it prefills, the short request (decoding since step 1) gets nothing; afterwards both decode.
      for (let step = 3; step <= b.firstTokenAt; step++) expect(a.tokenSteps, `step ${step}`).not.toContain(step);
      expect(a.tokenSteps).toContain(b.firstTokenAt + 1);
      expect(b.tokenSteps).toContain(b.firstTokenAt + 1);
      expect(bitwiseMismatch(a, refShort)).toBeUndefined();
      expect(bitwiseMismatch(b, refLong)).toBeUndefined();
    } finally {
      s.close();
    }
  });
});

describe('cancellation', () => {
  it('frees the slot and pages of a decoding, a prefilling and a queued request at the next step; the rest decode as alone', async () => {
    const prompts = [prompt(9, 6), prompt(12, 7), prompt(260, 8), prompt(7, 9), prompt(11, 10)];
    const opts = { maxTokens: 60, ignoreEos: true };
    const ref = await alone(prompts, opts.maxTokens);
    const total = 3 * p.plan.pagesPerSeq;
    const s = await Stepper.create(p.modelDir, p.library, V, { mode: 'spec', maxBatch: 3, stepTokens: 3 * (p.case.gamma + 1) + 8 });
    const cancelledAt = new Map<number, number>();
    try {
      expect(s.cancel(1000), 'an id never issued').toBe(false);
      const run = await s.run(
        prompts.map((pr, i) => ({ prompt: pr, opts, at: i < 3 ? 0 : 1 })),
        (step, reqs) => {
          const [, decoding, prefilling, queued] = reqs;
          // Request 1 decodes by step 3; request 2's long prompt is still being fed at step 4; request 3
          // waits for a slot (three are taken) when it is cancelled at step 2.
          if (step === 2) {
            expect(s.cancel(queued.id)).toBe(true);
            cancelledAt.set(3, step);
          } else if (step === 3) {
            expect(decoding.tokens.length).toBeGreaterThan(1);
            s.cancel(decoding.id);
            cancelledAt.set(1, step);
          } else if (step === 4) {
            expect(prefilling.firstTokenAt).toBe(-1);
            s.cancel(prefilling.id);
            cancelledAt.set(2, step);
          }
        },
      );
      for (const [i, step] of cancelledAt) {
        const r = run.requests[i];
        expect(r.reason, `request ${i}`).toBe('cancelled');
        expect(r.finishedAt, `request ${i} ends in the step after its cancel`).toBe(step);
        expect(bitwiseMismatch(r, ref[i], 0, r.tokens.length), `request ${i}'s tokens before the cancel`).toBeUndefined();
      }
      expect(run.requests[3].tokens).toEqual([]);
      expect(run.requests[2].tokens).toEqual([]);
      // Request 4 took the slot request 1 freed at step 3; at step 4 only request 2's pages change hands:
      // all it reserved (prompt + max tokens + gamma) comes back in the step that cancels it.
      expect(run.freePages[4] - run.freePages[3]).toBe(Math.ceil((260 + 60 + p.case.gamma) / p.case.pageSize));
      for (const i of [0, 4]) {
        expect(run.requests[i].reason).toBe('length');
        expect(bitwiseMismatch(run.requests[i], ref[i]), `request ${i}`).toBeUndefined();
      }
      expect(run.stats.freePages).toBe(total);
      // Cancelling a request that has finished changes nothing.
      expect(s.cancel(run.requests[0].id)).toBe(true);
    } finally {
      s.close();
    }
  });

  it('an AbortSignal or leaving a stream early cancels; the promise settles once the pages are free', async () => {
    const prompts = [prompt(10, 11), prompt(20, 12), prompt(30, 13)];
    const ref = await alone(prompts, 40);
    await withEngine(Engine, p, { mode: 'spec', maxBatch: 3 }, async (e) => {
      const total = e.stats().freePages;
      const ac = new AbortController();
      const keep = e.generate(prompts[0], { maxTokens: 40, ignoreEos: true });
      const aborted = e.stream(prompts[1], { maxTokens: 40, ignoreEos: true, signal: ac.signal });
      const left = e.stream(prompts[2], { maxTokens: 40, ignoreEos: true });
      const got: number[] = [];
      let err: unknown;
      try {
        for await (const t of aborted) {
          got.push(t);
          if (got.length === 3) ac.abort();
        }
      } catch (x) {
        err = x;
      }
      expect(err).toBeInstanceOf(CancelledError);
      expect((err as Error).name).toBe('AbortError');
      const c = err as CancelledErrorT;
      expect(c.id).toBe(aborted.id);
      expect(c.tokens).toEqual(ref[1].tokens.slice(0, c.tokens.length));
      expect(got).toEqual(c.tokens);
      expect(got.length).toBeLessThan(40);
      await expect(aborted.generation).rejects.toBeInstanceOf(CancelledError);
      const firstTwo: number[] = [];
      for await (const t of left) {
        firstTwo.push(t);
        if (firstTwo.length === 2) break; // return(): cancels the request
      }
      await expect(left.generation).rejects.toBeInstanceOf(CancelledError);
      expect(firstTwo).toEqual(ref[2].tokens.slice(0, 2));
      expect((await keep).tokens).toEqual(ref[0].tokens);
      expect(e.stats().freePages).toBe(total);
      expect(e.snapshot().live).toBe(0);
      expect(e.snapshot().stats.freePages).toBe(total);
      // Already aborted: refused before it reaches the engine.
      expect(() => e.generate(prompts[0], { signal: AbortSignal.abort() })).toThrow(/abort/i);
      expect(e.cancel(123456)).toBe(false);
    });
  });

  it('through the C API: md_engine_cancel ends the request at the next step and frees its pages', async () => {
    const pr = prompt(13, 14);
    const r = runProgram(rt.capi, ['cancel', p.modelDir, p.library, '30', ...pr.map(String)]);
    expect(r.stdout).not.toContain('FAIL');
    expect(r.status).toBe(0);
    const [want] = await alone([pr], 30);
    expect(r.stdout).toBe(`${want.tokens.join(' ')}\n`);
  });
});
