// `magicdec check` end to end, in-process, on one random tiny model per spec and a few cases (fixed seed):
// a correct distribution-exact verifier (examples/custom-verifier.ts) and an exact one
// (examples/sample-and-match.ts) pass; the typical verifier is reported LOSSY, not failed; a deliberately
// broken verifier (test/fixtures/specs/broken-verifier.ts: p and q swapped in the acceptance test) is caught,
// exit 1, with a shrunk counterexample whose `magicdec run` line replays the offending token; bad flags
// exit 1 with one line.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.ts';
import { bitwiseDifference, familyModel, verifierContract } from '../../lib/check.ts';
import { models } from '../../dsl/models.ts';
import { verifiers } from '../support/deployments.ts';
import type { Generation } from '../../runtime/node/index.ts';
import { memoryIo } from '../../lib/io.ts';
import { buildRuntime, REPO } from '../runtime/build-runtime.ts';

let out: string;
beforeAll(() => {
  buildRuntime();
  out = mkdtempSync(join(tmpdir(), 'md-check-'));
});
afterAll(() => rmSync(out, { recursive: true, force: true }));

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = memoryIo();
  const code = await main(args, io);
  return { code, out: io.out(), err: io.err() };
}

const check = (spec: string, runs = 4) => cli(['check', join(REPO, spec), '--runs', String(runs), '--models', '1', '--seed', '7', '--out', out]);

describe('magicdec check', () => {
  it('passes a correct user-written sampling verifier: exact cases, then a statistical case', async () => {
    const r = await check('examples/custom-verifier.ts');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^checking .*custom-verifier\.ts \(verifier 'surplus_sampling', distribution\) with seed 7: 4 runs on 1 random llama model$/m);
    expect(r.out).toMatch(/1 statistical case distributed as the target's samples .*: lossless in distribution$/m);
    // Progress while compiling (when the build cache does not hold the module yet) and running.
    const built = /^module (tiny-check0\.cpu\.bf16\.t_causal-full\.d_causal-streaming\.surplus_sampling\.g3) \((compiled|cached)\)$/m.exec(r.err);
    expect(built, r.err).not.toBeNull();
    if (built![2] === 'compiled') expect(r.err).toMatch(/^compiling tiny-check0\.\S+ \[\d\/\d\] /m);
    expect(r.err).toMatch(/^exact cases 4\/4 passed$/m);
  }, 300_000);

  it('passes sampleAndMatch bitwise (exact)', async () => {
    const r = await check('examples/sample-and-match.ts', 3);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/speculative == autoregressive bit for bit \(tokens and logits\) in every case: lossless$/m);
  }, 300_000);

  it('reports typical as LOSSY without failing it', async () => {
    const r = await check('test/fixtures/specs/typical.ts', 3);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^verifier 'typical' \(sample\): LOSSY/m);
  }, 300_000);

  it('catches a broken verifier: exit 1, a shrunk counterexample, and a run line that replays it', async () => {
    const r = await check('test/fixtures/specs/broken-verifier.ts');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^magicdec: error: .*broken-verifier\.ts: verifier 'swapped_rejection' is not lossless \(counterexample above\)$/m);
    const failed = /^FAILED: the speculative tokens are not distributed as the target's samples: token (\d+) \(request (\d+), index (\d+)\) has probability 0 under the target$/m.exec(r.out);
    expect(failed, r.out).not.toBeNull();
    expect(r.out).toMatch(/^counterexample \(after \d+ shrinks?\): \{"model":0,/m);
    const replay = /^ {2}magicdec (run .*)$/m.exec(r.out);
    expect(replay, r.out).not.toBeNull();
    const run = await cli(replay![1].split(' '));
    expect(run.code, run.err).toBe(0);
    const [token, request, index] = failed!.slice(1).map(Number);
    const lines = [...run.out.matchAll(/^ {4}tokens: (.*)$/gm)].map((m) => m[1].split(' ').map(Number));
    expect(lines[request][index]).toBe(token);
  }, 300_000);

  it('refuses bad flags and a missing spec with one line, exit 1', async () => {
    for (const [args, msg] of [
      [['check', join(REPO, 'examples/custom-verifier.ts'), '--runs', '0'], /^magicdec: error: --runs: 0 is outside 1\.\.10000$/m],
      [['check', join(REPO, 'examples/custom-verifier.ts'), '--seed', 'x'], /^magicdec: error: --seed: expected a whole number, got 'x'$/m],
      [['check', join(REPO, 'nosuch.ts')], /^magicdec: error: spec file not found: .*nosuch\.ts$/m],
    ] as const) {
      const r = await cli([...args]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(msg);
    }
  });
});

describe('lib/check.ts', () => {
  const gen = (tokens: number[], rows: number[][]) => ({ tokens, logits: rows.map((r) => Float32Array.from(r)) }) as unknown as Generation;

  it('bitwiseDifference finds a token or a single logit bit that differs (0 vs -0 included)', () => {
    const a = gen([1, 2], [[0.5, 0], [1, 2]]);
    expect(bitwiseDifference([a], [gen([1, 2], [[0.5, 0], [1, 2]])])).toBeUndefined();
    expect(bitwiseDifference([a], [gen([1, 3], [[0.5, 0], [1, 2]])])).toMatch(/^request 0: speculative tokens \[1 2\] != autoregressive \[1 3\]$/);
    expect(bitwiseDifference([a], [gen([1], [[0.5, 0]])])).toMatch(/tokens/);
    expect(bitwiseDifference([a], [gen([1, 2], [[0.5, -0], [1, 2]])])).toMatch(/^request 0: logits of token 0 differ bitwise at vocab index 1/);
  });

  it("holds each verifier to its contract: greedy and match exact, sample in distribution, lossy: true lossy", () => {
    expect(verifierContract(verifiers.greedy())).toEqual({ contract: 'exact', samples: false });
    expect(verifierContract(verifiers.sampleAndMatch())).toEqual({ contract: 'exact', samples: true });
    expect(verifierContract(verifiers.rejection())).toEqual({ contract: 'distribution', samples: true });
    expect(verifierContract(verifiers.typical())).toEqual({ contract: 'lossy', samples: true });
  });

  it("draws tiny models of the spec's family: architecture, biases, tied embeddings, GQA, rope scaling and window kept", () => {
    const qwen = { ...models.tiny, name: 'q', architecture: 'qwen2' as const, qkvBias: true, tieWordEmbeddings: true, numHeads: 8, numKvHeads: 2, slidingWindow: 4096 };
    for (let i = 0; i < 8; i++) {
      const m = familyModel(qwen, 5, i, 256);
      expect([m.architecture, m.qkvBias, m.tieWordEmbeddings, m.maxPositionEmbeddings]).toEqual(['qwen2', true, true, 256]);
      expect(m.numHeads / m.numKvHeads).toBeGreaterThan(1);
      expect(m.slidingWindow).toBeLessThan(64);
      expect(m.hiddenSize * m.numLayers).toBeLessThanOrEqual(192);
    }
    const llama = familyModel(models.llama31_8b, 5, 0, 256);
    expect(llama.ropeScaling).toEqual({ ...models.llama31_8b.ropeScaling, originalMaxPositionEmbeddings: 256 });
    expect(familyModel({ ...models.tiny, numKvHeads: 4 }, 1, 0, 256).numHeads).toBe(familyModel({ ...models.tiny, numKvHeads: 4 }, 1, 0, 256).numKvHeads);
  });
});
