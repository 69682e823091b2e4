// A kernel failure fails exactly the requests with rows in that forward pass (docs/ARCHITECTURE.md, invariant 4): a
// request decoding next to a prompt whose prefill fails finishes bit for bit as if alone, a queued request
// is admitted afterwards and decodes normally, and the C API's md_engine_run keeps stepping the live
// requests before it reports the failure. The failure is staged with a module whose md_embed refuses one
// token (test/support/runtime-libraries.ts), a token that the healthy request never embeds.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine as EngineT, Generation } from '../../runtime/node/index.ts';
import { bitwiseMismatch, prepareCase, withEngine, type PreparedCase } from '../support/runtime-cases.ts';
import { manifestOnlyLibrary, poisonedModule } from '../support/runtime-libraries.ts';
import { Stepper } from '../support/runtime-stepper.ts';
import { buildRuntime, REPO, runProgram, type RuntimeBuild } from './build-runtime.ts';

const root = mkdtempSync(join(tmpdir(), 'md-isolation-'));
let rt: RuntimeBuild;
let Engine: typeof EngineT;
let p: PreparedCase;
let healthy: Generation;
let queuedAlone: Generation;
let poison: number;
let poisoned: string;

const prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5];
const queuedPrompt = [2, 7, 1, 8, 2, 8];
const MAX_TOKENS = 24;

beforeAll(async () => {
  rt = buildRuntime();
  ({ Engine } = await import('../../runtime/node/index.ts'));
  p = await prepareCase('tiedBf16', root);
  const alone = (pr: number[]) => withEngine(Engine, p, { mode: 'spec' }, (e) => e.generate(pr, { maxTokens: MAX_TOKENS, ignoreEos: true }));
  healthy = await alone(prompt);
  queuedAlone = await alone(queuedPrompt);
  // The poison must never reach md_embed for the healthy requests, drafted tokens included: take the first
  // token outside their prompts and outputs with which both still decode alone through the poisoned module.
  const used = new Set([...prompt, ...queuedPrompt, ...healthy.tokens, ...queuedAlone.tokens]);
  for (let t = 0; t < p.case.model.vocabSize && poison === undefined; t++) {
    if (used.has(t)) continue;
    const lib = poisonedModule(join(root, 'lib'), p.library, t);
    const ok = await withEngine(Engine, { ...p, library: lib }, { mode: 'spec' }, async (e) => {
      const runs = await Promise.allSettled([prompt, queuedPrompt].map((pr) => e.generate(pr, { maxTokens: MAX_TOKENS, ignoreEos: true })));
      return runs.every((r) => r.status === 'fulfilled');
    });
    if (ok) [poison, poisoned] = [t, lib];
  }
  if (poison === undefined) throw new Error('no token is free of the healthy requests: widen the vocabulary');
}, 600_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('a request whose forward pass fails', () => {
  it('fails alone: the decoding request finishes bitwise as if alone, the queued one is admitted and decodes', async () => {
    // Two slots: the healthy request decodes in one, the poisoned prompt arrives at step 3 into the other,
    // and the third request waits in the queue until the failure frees that slot.
    const s = await Stepper.create(p.modelDir, poisoned, p.case.model.vocabSize, { mode: 'spec', maxBatch: 2 });
    try {
      const opts = { maxTokens: MAX_TOKENS, ignoreEos: true };
      const run = await s.run([
        { prompt, opts, at: 0 },
        { prompt: [poison, ...prompt], opts, at: 3 },
        { prompt: queuedPrompt, opts, at: 3 },
      ]);
      const [a, bad, queued] = run.requests;
      expect(bad.reason).toBe('error');
      expect(bad.error).toBe('kernel md_embed failed: invalid argument');
      expect(bad.finishedAt).toBe(3);
      expect(a.finishedAt).toBeGreaterThan(3);
      expect(a.reason).toBe('length');
      expect(bitwiseMismatch(a, healthy)).toBeUndefined();
      expect(queued.reason).toBe('length');
      expect(bitwiseMismatch(queued, queuedAlone)).toBeUndefined();
      expect(run.stats.freePages).toBe(2 * p.plan.pagesPerSeq);
    } finally {
      s.close();
    }
  });

  it('through the C API: md_engine_step returns -1 for the failing step, md_engine_run finishes the rest', () => {
    const r = runProgram(rt.capi, ['isolate', p.modelDir, poisoned, String(poison), String(MAX_TOKENS), ...prompt.map(String)]);
    expect(r.stdout).toBe(`${healthy.tokens.join(' ')}\n`);
    expect(r.status).toBe(0);
  });
});

describe('a module built for a GPU', () => {
  it('is refused by a runtime without CUDA before any kernel is resolved, naming its arch', async () => {
    // The committed sm_90 module's real manifest, behind a library that exports nothing else.
    const dir = join(REPO, 'generated/llama-3.1-8b.sm_90.bf16.t_causal-full.d_causal-streaming.greedy.g3');
    const lib = manifestOnlyLibrary(join(root, 'lib'), 'sm90', readFileSync(join(dir, 'manifest.json'), 'utf8'));
    await expect(Engine.create(p.modelDir, lib)).rejects.toThrow(`${lib}: built for sm_90, but this runtime was built without CUDA (configure it with -DMAGICDEC_CUDA=ON`);
  });
});
