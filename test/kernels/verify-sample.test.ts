// md_verify_sample on the CPU backend: speculative (rejection) sampling with the module's accept/residual
// rule (the standard rule u * q < p, max(0, p - q) on modules of other verifiers, which is the rejection
// preset's), and with a deliberately degenerate rule (never accept, residual 0) that forces the fallback:
// - accepted and next are model/sampling.ts's verifySample exactly, over random logits, parameters, gammas,
//   seeds and positions, with the rule evaluated by the IR interpreter;
// - temperature 0 is greedy verification (md_verify_greedy on the argmaxes);
// - over 64K trials on small vocabularies with known p and q: each emitted token (the accepted draft or the
//   resample) is drawn as often as p says (6 sigma + 5), tokens with p = 0 never; the accepted-length
//   histogram matches [1 - a0, a0 (1 - a1), ...] with a_i = sum min(p_i, q_i); a drafted token with q = 0
//   is rejected when p = 0 too; an all-zero residual falls back to p and never gives an id >= vocab;
// - bad gamma, parameters or drafted tokens are MD_ERR_ARG with nothing written.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backendFor } from '../../codegen/backends/index.ts';
import { evaluate } from '../../codegen/interp.ts';
import { renderModule } from '../../codegen/module.ts';
import * as ir from '../../codegen/ir.ts';
import type { ModulePlan } from '../../codegen/plan.ts';
import { entropy, rowDistribution, sampleRow, verifySample, type VerifierRule } from '../../model/sampling.ts';
import { mulberry32 } from '../harness/kernels/attention-case.ts';
import { KERNEL_DEPLOYMENTS } from '../harness/kernels/deployments.ts';
import { i32 } from '../harness/kernels/driver.ts';
import { useModules, type ModuleUnderTest } from '../harness/kernels/module.ts';
import { logitsFor, T1, verifySampleArgs, type Seq } from '../harness/kernels/verify-sample-case.ts';
import { makeDeployment, modelConfig, verifiers } from '../support/deployments.ts';

const modules = useModules({
  /** gamma 3, vocab 512, the standard rule (its verifier is greedy). */
  mhaF32: KERNEL_DEPLOYMENTS.mhaF32,
  /** vocab 97 (not a multiple of a Philox block or a lane tile), gamma 3, the standard rule: the 64K-trial tests. */
  small: makeDeployment({ model: modelConfig({ numHeads: 1, numKvHeads: 1, headDim: 16, vocabSize: 97, name: 'small-vocab' }), batch: [1], gamma: 3, maxSeq: 64, pageSize: 8, dtype: 'fp32' }),
  /** A rule that never accepts and whose residual is 0: every rejection falls back to p. */
  degenerate: {
    ...makeDeployment({ model: modelConfig({ numHeads: 1, numKvHeads: 1, headDim: 16, vocabSize: 77, name: 'degenerate-rule' }), batch: [1], gamma: 2, maxSeq: 64, pageSize: 8, dtype: 'fp32' }),
    verify: { name: 'never', mode: 'sample' as const, accept: ir.constant(false), residual: ir.constant(0, 'f32') },
  },
  /** The typical preset (lossy), vocab 97: not a multiple of a Philox block or a lane tile. */
  typical: {
    ...makeDeployment({ model: modelConfig({ numHeads: 1, numKvHeads: 1, headDim: 16, vocabSize: 97, name: 'typical-rule' }), batch: [1], gamma: 3, maxSeq: 64, pageSize: 8, dtype: 'fp32' }),
    verify: verifiers.typical(),
  },
});

/**
 * Typical acceptance written directly in TypeScript (not through the IR): p > min(eps, delta * exp(-h)) in
 * f32, h the entropy the kernel is given. Math.exp and the kernel's expf may differ in the last ulps, which
 * matters only for a p within a few ulps of the threshold.
 */
function typicalRule(eps: number, delta: number): VerifierRule {
  const f = Math.fround;
  return { accept: (p, _q, _u, h) => f(p) > Math.min(f(eps), f(f(delta) * f(Math.exp(-f(h))))), residual: (p) => p };
}

/** The module's rule through the IR interpreter, in f32 as the kernel computes it. */
function ruleOf(plan: ModulePlan): VerifierRule {
  return {
    accept: (p, q, u, h) => evaluate(plan.verifierRule.accept, { vars: { p, q, u, h } }) as boolean,
    residual: (p, q) => evaluate(plan.verifierRule.residual, { vars: { p, q } }) as number,
  };
}

async function verify(m: ModuleUnderTest, seqs: readonly Seq[], gamma: number, threads = 2): Promise<{ accepted: number[]; next: number[] }> {
  const res = await m.driver.call('md_verify_sample', verifySampleArgs(m.plan.dims.vocab, seqs, gamma), threads);
  expect(res.status).toBe(0);
  return { accepted: Array.from(i32(res.out.accepted)), next: Array.from(i32(res.out.next)) };
}

/**
 * The kernel's accepted counts and next tokens are model/sampling.ts's verifySample under `rule`, over
 * random logits, parameters, gammas, seeds and positions, with both outcomes drawn; `alone`: the last
 * sequence computed alone on one thread gives the same result (row invariance).
 */
async function expectReference(m: ModuleUnderTest, rule: VerifierRule, alone: boolean): Promise<void> {
  const V = m.plan.dims.vocab;
  let accepted = 0;
  let rejected = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: m.plan.gamma }).chain((g) => fc.tuple(fc.constant(g), fc.array(seqArb(V, g), { minLength: 1, maxLength: 12 }))),
      async ([gamma, seqs]) => {
        const got = await verify(m, seqs, gamma);
        seqs.forEach((s, b) => {
          const want = verifySample(s.target, s.draft, s.tokens, s.params, s.seed, s.pos, rule);
          expect([got.accepted[b], got.next[b]], `sequence ${b}: ${JSON.stringify(s.params)}`).toEqual([want.accepted, want.next]);
          expect(want.next >= 0 && want.next < V).toBe(true);
          accepted += want.accepted;
          rejected += want.accepted < gamma ? 1 : 0;
        });
        if (!alone) return;
        const single = await verify(m, [seqs[seqs.length - 1]], gamma, 1);
        expect([single.accepted[0], single.next[0]]).toEqual([got.accepted[seqs.length - 1], got.next[seqs.length - 1]]);
      },
    ),
    { numRuns: 40 },
  );
  expect(accepted).toBeGreaterThan(0);
  expect(rejected).toBeGreaterThan(0);
}

/** A row: random logits; the draft's rows are the target's plus noise of scale `gap` (how far q is from p). */
function row(V: number, rnd: () => number, scale: number): Float32Array {
  return Float32Array.from({ length: V }, () => (rnd() * 2 - 1) * scale);
}

const seqArb = (V: number, gamma: number): fc.Arbitrary<Seq> =>
  fc
    .record({
      s: fc.integer({ min: 1, max: 0x7fffffff }),
      params: fc.record({
        temperature: fc.oneof(fc.constantFrom(0, 1e-6, 0.3, 0.7, 1, 2), fc.float({ min: Math.fround(0.05), max: 3, noNaN: true })),
        topK: fc.oneof(fc.constant(0), fc.constant(1), fc.integer({ min: 2, max: V + 2 })),
        topP: fc.oneof(fc.constant(1), fc.float({ min: Math.fround(0.05), max: 1, noNaN: true })),
        minP: fc.oneof(fc.constant(0), fc.float({ min: 0, max: Math.fround(0.3), noNaN: true })),
      }),
      seed: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      pos: fc.integer({ min: 0, max: 1 << 20 }),
      gap: fc.constantFrom(0, 0.3, 1, 4),
      scale: fc.constantFrom(1, 3, 8),
    })
    .map(({ s, params, seed, pos, gap, scale }) => {
      const rnd = mulberry32(s);
      const target = Array.from({ length: gamma + 1 }, () => row(V, rnd, scale));
      const draft = target.slice(0, gamma).map((t) => Float32Array.from(t, (x) => x + (rnd() * 2 - 1) * gap));
      // Drafted tokens are the draft's own samples, as the engine's are (md_sample of each draft row).
      const tokens = draft.map((d, j) => sampleRow(d, params, seed, pos + j));
      return { target, draft, tokens, params, seed, pos };
    });

describe('md_verify_sample, the standard rule', () => {
  const mod = () => modules.get('mhaF32')!;

  it("gives the reference's accepted counts and next tokens on random logits, parameters, gammas, seeds and positions", async () => {
    // Row invariance too: alone, or at another thread count, a sequence's result is the same.
    await expectReference(mod(), ruleOf(mod().plan), true);
  });

  it('at temperature 0 is greedy verification: accept while the draft is the target argmax, then the argmax', async () => {
    const m = mod();
    const V = m.plan.dims.vocab;
    const G = m.plan.gamma;
    await fc.assert(
      fc.asyncProperty(fc.array(seqArb(V, G), { minLength: 1, maxLength: 8 }), async (raw) => {
        const seqs = raw.map((s) => {
          const params = { ...s.params, temperature: 0 };
          // Drafted tokens: the target's argmax or, now and then, another token.
          const tokens = s.target.slice(0, G).map((t, j) => (s.seed % 3n === BigInt(j % 3) ? (sampleRow(t, params, s.seed, 0) + 1) % V : sampleRow(t, params, s.seed, 0)));
          return { ...s, params, tokens };
        });
        const got = await verify(m, seqs, G);
        const targetTokens = Int32Array.from(seqs.flatMap((s) => s.target.map((t) => sampleRow(t, s.params, 0n, 0))));
        const greedy = await m.driver.call('md_verify_greedy', {
          target_tokens: targetTokens,
          draft_tokens: Int32Array.from(seqs.flatMap((s) => s.tokens)),
          accepted: { out: seqs.length * 4 },
          next: { out: seqs.length * 4 },
          batch: seqs.length,
        });
        expect(got.accepted).toEqual(Array.from(i32(greedy.out.accepted)));
        expect(got.next).toEqual(Array.from(i32(greedy.out.next)));
      }),
      { numRuns: 15 },
    );
  });

  it('refuses gamma past the module, bad parameters and drafted tokens outside the vocabulary, writing nothing', async () => {
    const m = mod();
    const V = m.plan.dims.vocab;
    const [s] = fc.sample(seqArb(V, m.plan.gamma), { numRuns: 1, seed: 3 });
    const call = (seqs: Seq[], gamma: number) => m.driver.call('md_verify_sample', verifySampleArgs(m.plan.dims.vocab, seqs, gamma));
    const tooLong = { ...s, target: [...s.target, s.target[0]], draft: [...s.draft, s.draft[0]], tokens: [...s.tokens, 0] };
    const cases: [string, Seq[], number][] = [
      ['gamma past the module', [tooLong], m.plan.gamma + 1],
      ['gamma 0', [s], 0],
      ['a negative temperature', [s, { ...s, params: { ...s.params, temperature: -1 } }], m.plan.gamma],
      ['top_p 0', [{ ...s, params: { ...s.params, topP: 0 } }], m.plan.gamma],
      ['a drafted token = vocab', [s, { ...s, tokens: [...s.tokens.slice(1), V] }], m.plan.gamma],
      ['a negative drafted token', [{ ...s, tokens: [-1, ...s.tokens.slice(1)] }], m.plan.gamma],
    ];
    for (const [what, seqs, gamma] of cases) {
      const res = await call(seqs, gamma);
      expect(res.status, what).toBe(1);
      expect([...i32(res.out.accepted), ...i32(res.out.next)].every((x) => x === -1), what).toBe(true);
    }
  });
});

const TRIALS = 1 << 16;
const BATCH = 2048;

/** A token drawn from `dist` (dense probabilities) by `rnd`, independently of the kernel's noise. */
function draw(dist: Float64Array, rnd: () => number): number {
  let u = rnd();
  let last = -1;
  for (let i = 0; i < dist.length; i++) {
    if (!(dist[i] > 0)) continue;
    last = i;
    if ((u -= dist[i]) < 0) return i;
  }
  return last;
}

/** Runs `make(trial)` sequences through md_verify_sample TRIALS times; the results. */
async function trials(m: ModuleUnderTest, gamma: number, make: (trial: number) => Seq): Promise<{ accepted: number[]; next: number[]; first: number[] }> {
  const out = { accepted: [] as number[], next: [] as number[], first: [] as number[] };
  for (let start = 0; start < TRIALS; start += BATCH) {
    const seqs = Array.from({ length: BATCH }, (_, i) => make(start + i));
    const r = await verify(m, seqs, gamma);
    seqs.forEach((s, b) => {
      out.accepted.push(r.accepted[b]);
      out.next.push(r.next[b]);
      out.first.push(r.accepted[b] > 0 ? s.tokens[0] : r.next[b]);
    });
  }
  return out;
}

/** Every count within 6 sigma + 5 of TRIALS * p, and nothing drawn outside p's support. */
function expectCounts(drawn: readonly number[], p: ReadonlyMap<number, number>, what: string): void {
  const counts = new Map<number, number>();
  for (const t of drawn) counts.set(t, (counts.get(t) ?? 0) + 1);
  for (const [t, n] of counts) expect((p.get(t) ?? 0) > 0, `${what}: token ${t} (probability 0) drawn ${n} times`).toBe(true);
  for (const [t, pt] of p) {
    const sigma = Math.sqrt(drawn.length * pt * (1 - pt));
    expect(Math.abs((counts.get(t) ?? 0) - drawn.length * pt), `${what}: token ${t}, p ${pt}`).toBeLessThanOrEqual(6 * sigma + 5);
  }
}

const sparse = (d: Float64Array) => new Map([...d.entries()].filter(([, x]) => x > 0));

describe('md_verify_sample draws from the target distribution', () => {
  // Tokens 3, 10, 11, 40, 41, 90 carry probability; p and q differ in shape and support (q puts mass on 90,
  // where p has none; p on 3, where q has none).
  const AT = [3, 10, 11, 40, 41, 90];
  const P = [0.3, 0.25, 0.2, 0.15, 0.1, 0];
  const Q = [0, 0.1, 0.4, 0.2, 0.05, 0.25];

  it('gamma 1: the emitted token follows p over 64K trials; acceptance is sum min(p, q)', async () => {
    const m = modules.get('small')!;
    const V = m.plan.dims.vocab;
    const target = [logitsFor(V, AT, P), logitsFor(V, AT, P)];
    const draft = [logitsFor(V, AT, Q)];
    const q = rowDistribution(draft[0], T1);
    const rnd = mulberry32(41);
    const res = await trials(m, 1, (t) => ({ target, draft, tokens: [draw(q, rnd)], params: T1, seed: 77n, pos: t }));
    const pd = rowDistribution(target[0], T1);
    const p = sparse(pd);
    expectCounts(res.first, p, 'emitted token');
    const a = pd.reduce((s, x, i) => s + Math.min(x, q[i]), 0);
    const acc = res.accepted.filter((x) => x === 1).length;
    expect(Math.abs(acc - TRIALS * a)).toBeLessThanOrEqual(6 * Math.sqrt(TRIALS * a * (1 - a)) + 5);
    // Every next token is a vocabulary id (the drafted token 90, with p = 0, is rejected whenever drafted).
    expect(res.next.every((x) => x >= 0 && x < V)).toBe(true);
  }, 120_000);

  it('gamma 3, a different p and q per row: accepted-length histogram [1 - a0, a0 (1 - a1), a0 a1 (1 - a2), a0 a1 a2]', async () => {
    const m = modules.get('small')!;
    const V = m.plan.dims.vocab;
    const rowsP = [P, [0.1, 0.1, 0.5, 0.1, 0.1, 0.1], [0, 0.5, 0, 0.5, 0, 0], P];
    const rowsQ = [Q, [0.2, 0.2, 0.2, 0.2, 0.1, 0.1], [0.5, 0, 0, 0.5, 0, 0]];
    const target = rowsP.map((p) => logitsFor(V, AT, p));
    const draft = rowsQ.map((q) => logitsFor(V, AT, q));
    const qs = draft.map((d) => rowDistribution(d, T1));
    const rnd = mulberry32(42);
    const res = await trials(m, 3, (t) => ({ target, draft, tokens: qs.map((q) => draw(q, rnd)), params: T1, seed: 5n, pos: 4 * t }));
    const a = rowsP.slice(0, 3).map((_, j) => {
      const p = rowDistribution(target[j], T1);
      const q = rowDistribution(draft[j], T1);
      return p.reduce((s, x, i) => s + Math.min(x, q[i]), 0);
    });
    const want = [1 - a[0], a[0] * (1 - a[1]), a[0] * a[1] * (1 - a[2]), a[0] * a[1] * a[2]];
    want.forEach((pk, k) => {
      const n = res.accepted.filter((x) => x === k).length;
      expect(Math.abs(n - TRIALS * pk), `accepted ${k}: want p ${pk}`).toBeLessThanOrEqual(6 * Math.sqrt(TRIALS * pk * (1 - pk)) + 5);
    });
    // The first emitted token follows row 0's p whatever happens after it.
    expectCounts(res.first, sparse(rowDistribution(target[0], T1)), 'first emitted token');
  }, 120_000);

  it('a drafted token with q = 0: rejected when p = 0, accepted when p > 0', async () => {
    const m = modules.get('small')!;
    const V = m.plan.dims.vocab;
    const target = [logitsFor(V, AT, P), logitsFor(V, AT, P)];
    const draft = [logitsFor(V, AT, Q)];
    const zeroBoth = await verify(m, Array.from({ length: 64 }, (_, t) => ({ target, draft, tokens: [60], params: T1, seed: 9n, pos: t })), 1);
    expect(zeroBoth.accepted.every((a) => a === 0)).toBe(true);
    expect(zeroBoth.next.every((x) => AT.slice(0, 5).includes(x))).toBe(true);
    const zeroQ = await verify(m, Array.from({ length: 64 }, (_, t) => ({ target, draft, tokens: [3], params: T1, seed: 9n, pos: t })), 1);
    expect(zeroQ.accepted.every((a) => a === 1)).toBe(true);
  });

  it('an all-zero residual (the degenerate rule) falls back to p: the right distribution, never an id >= vocab', async () => {
    const m = modules.get('degenerate')!;
    const V = m.plan.dims.vocab;
    expect(m.plan.verifierRule.from).toBe("verifier 'never'");
    const at = [0, 7, 30, 76];
    const p = [0.4, 0.3, 0.2, 0.1];
    const target = [logitsFor(V, at, p), logitsFor(V, at, p), logitsFor(V, at, p)];
    const draft = [logitsFor(V, at, [0.25, 0.25, 0.25, 0.25]), logitsFor(V, at, p)];
    const res = await trials(m, 2, (t) => ({ target, draft, tokens: [at[t % 4], at[(t >> 2) % 4]], params: T1, seed: 123n, pos: 3 * t }));
    expect(res.accepted.every((a) => a === 0)).toBe(true);
    expect(res.next.every((x) => x >= 0 && x < V)).toBe(true);
    expectCounts(res.next, sparse(rowDistribution(target[0], T1)), 'fallback draw');
  }, 120_000);
});

describe('md_verify_sample, typical acceptance (lossy): accept while p > min(eps, delta * exp(-H(p)))', () => {
  const mod = () => modules.get('typical')!;
  const rule = typicalRule(0.09, 0.3);

  it('renders the rule with the entropy reduction (the standard rule has none)', () => {
    const sample = (m: ModuleUnderTest) => renderModule(m.plan, backendFor('cpu')).find((f) => f.path === 'sample.cpp')!.contents;
    expect(sample(mod())).toContain('constexpr bool MD_VERIFY_ENTROPY = true;');
    expect(sample(modules.get('small')!)).toContain('constexpr bool MD_VERIFY_ENTROPY = false;');
  });

  it("gives the TypeScript reference's accepted counts and next tokens on random logits, parameters, gammas, seeds and positions", async () => {
    await expectReference(mod(), rule, false);
  });

  it('known p: a flat target accepts what a peaked one rejects; q = 0 does not matter; top-k 1 has entropy 0', async () => {
    const m = mod();
    const V = m.plan.dims.vocab;
    const flat = new Float32Array(V).fill(0);  // p = 1/97 > 0.3/97 = delta exp(-ln 97)
    const peaked = logitsFor(V, [5, 6, 70], [0.9, 0.08, 0.02]);  // H = 0.38: threshold min(0.09, 0.21) = 0.09
    const h = entropy(rowDistribution(peaked, T1));
    expect(h).toBeGreaterThan(0.3);
    expect(Math.min(0.09, 0.3 * Math.exp(-h))).toBe(0.09);
    const noQ = logitsFor(V, [5], [1]);  // the draft gives every other token q = 0
    const seqs: Seq[] = [
      { target: [flat, flat], draft: [noQ], tokens: [96], params: T1, seed: 1n, pos: 0 },  // p 1/97, q 0: accepted
      { target: [peaked, flat], draft: [noQ], tokens: [5], params: T1, seed: 1n, pos: 0 },  // p 0.9: accepted
      { target: [peaked, flat], draft: [flat], tokens: [6], params: T1, seed: 1n, pos: 0 },  // p 0.08 < 0.09: rejected
      { target: [peaked, flat], draft: [noQ], tokens: [70], params: T1, seed: 1n, pos: 0 },  // p 0.02, q 0: rejected
      { target: [peaked, flat], draft: [flat], tokens: [40], params: T1, seed: 1n, pos: 0 },  // p 0: rejected
      // top-k 1: p one-hot, H = 0, threshold 0.09: only the argmax passes.
      { target: [flat, flat], draft: [flat], tokens: [0], params: { ...T1, topK: 1 }, seed: 1n, pos: 0 },
      { target: [flat, flat], draft: [flat], tokens: [1], params: { ...T1, topK: 1 }, seed: 1n, pos: 0 },
    ];
    const got = await verify(m, seqs, 1);
    expect(got.accepted).toEqual([1, 1, 0, 0, 0, 1, 0]);
    seqs.forEach((s, b) => expect([got.accepted[b], got.next[b]]).toEqual(Object.values(verifySample(s.target, s.draft, s.tokens, s.params, s.seed, s.pos, rule))));
    // After a rejection the next token is the target's own sample: a token p allows, and a vocabulary id.
    expect([got.next[2], got.next[3], got.next[4]].every((x) => [5, 6, 70].includes(x))).toBe(true);
    expect(got.next[6]).toBe(0);
  });

  it('after a rejection the next token follows p over 64K trials, never an id >= vocab (vocab 97, last tile partial)', async () => {
    const m = mod();
    const V = m.plan.dims.vocab;
    const at = [0, 33, 64, 96];
    const p = [0.55, 0.3, 0.1, 0.05];  // H = 1.07: threshold 0.09
    const target = [logitsFor(V, at, p), logitsFor(V, at, p)];
    const draft = [logitsFor(V, [1, 2], [0.5, 0.5])];
    const res = await trials(m, 1, (t) => ({ target, draft, tokens: [1 + (t % 2)], params: T1, seed: 31n, pos: t }));
    expect(res.accepted.every((a) => a === 0)).toBe(true);
    expect(res.next.every((x) => x >= 0 && x < V)).toBe(true);
    expectCounts(res.next, sparse(rowDistribution(target[0], T1)), 'draw after rejection');
  }, 120_000);
});
