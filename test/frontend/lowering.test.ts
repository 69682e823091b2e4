// Good specs lower to the expected IR, and the IR interpreter agrees with running the DSL's own JS
// functions (the presets in dsl/, executed directly) on random small integer inputs.
import * as path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as presets from '../../dsl/presets.ts';
import { defaultDeployment } from '../../dsl/default.ts';
import { models } from '../../dsl/models.ts';
import type { Attention, KvPolicy, Verifier } from '../../dsl/core.ts';
import { formatDiagnostic, loadSpec, loadSpecText } from '../../codegen/frontend/index.ts';
import { evaluate } from '../../codegen/interp.ts';
import { show, type Node } from '../../codegen/ir.ts';
import type { DeploymentIR, ParamDecl } from '../../codegen/spec.ts';
import { DEFAULT_GAMMA_MAX } from '../../codegen/limits.ts';
import { verifiers } from '../support/deployments.ts';
import { planModule, STANDARD_REJECTION } from '../../codegen/plan.ts';

const FIXTURES = 'test/fixtures/specs';

function load(file?: string): DeploymentIR {
  const r = loadSpec(file);
  expect(r.diagnostics.map(formatDiagnostic)).toEqual([]);
  return r.deployment!;
}

/** A spec whose draft pass uses the given attention / policy / verifier expressions. */
function loadDraft(attention: string, kv: string, verify = 'md.greedy'): DeploymentIR {
  const text =
    `import * as md from 'magicdec';\n` +
    `export default md.deploy({ model: md.models.tiny, target: { attention: md.causal, kv: md.full }, draft: { attention: ${attention}, kv: ${kv} }, verify: ${verify}, gamma: 2, shapes: { batch: [1, 2], maxSeq: 1024, pageSize: 64 }, dtype: 'fp32', arch: 'cpu' });\n`;
  const r = loadSpecText(text, path.join(FIXTURES, '__presets__.ts'));
  expect(r.diagnostics.map(formatDiagnostic)).toEqual([]);
  return r.deployment!;
}

const paramValues = (ps: readonly ParamDecl[]) => Object.fromEntries(ps.map((p) => [p.name, p.value]));
const pos = fc.integer({ min: 0, max: 600 });

function closeF32(got: number, want: number): boolean {
  if (Number.isNaN(want)) return Number.isNaN(got);
  if (!Number.isFinite(want)) return got === want;
  return Math.abs(got - want) <= 1e-5 * Math.max(1, Math.abs(want));
}

/** Interpreter vs the JS mask of an attention descriptor, on random positions. */
function checkMask(node: Node, att: Attention<any>, params: readonly ParamDecl[]) {
  fc.assert(
    fc.property(pos, pos, (q, kv) => {
      expect(evaluate(node, { vars: { q, kv }, params: paramValues(params) })).toBe(att.mask!(q, kv, att.params));
    }),
  );
}

function checkScore(node: Node, att: Attention<any>, params: readonly ParamDecl[]) {
  fc.assert(
    fc.property(fc.integer({ min: -4000, max: 4000 }), pos, pos, fc.integer({ min: 0, max: 31 }), (s8, q, kv, head) => {
      const s = s8 / 8;
      const got = evaluate(node, { vars: { s, q, kv, head }, params: paramValues(params) }) as number;
      expect(closeF32(got, att.score!(s, q, kv, head, att.params)), `${got}`).toBe(true);
    }),
  );
}

function checkKeep(node: Node, pol: KvPolicy<any>, params: readonly ParamDecl[]) {
  fc.assert(
    fc.property(pos, pos, (kv, len) => {
      expect(evaluate(node, { vars: { kv, len }, params: paramValues(params) })).toBe(pol.keep(kv, len, pol.params));
    }),
  );
}

describe('the default deployment', () => {
  it('lowers dsl/default.ts and matches the JS value', () => {
    const d = load();
    expect(d.source).toBe('<default>');
    expect(d.model).toEqual(defaultDeployment.model);
    expect(d.gamma).toBe(defaultDeployment.gamma);
    expect(d.shapes).toEqual(defaultDeployment.shapes);
    expect([d.dtype, d.arch, d.verify]).toEqual(['bf16', 'sm_90', { name: 'greedy', mode: 'greedy' }]);
    expect(show(d.target.attention.mask!)).toBe('(le kv q)');
    expect(show(d.target.kv.keep)).toBe('true');
    expect(d.draft.kv).toMatchObject({ name: 'streaming', const: false, params: [{ name: 'sink', ty: 'i32', value: 4 }, { name: 'window', ty: 'i32', value: 508 }] });
    expect(show(d.draft.kv.keep)).toBe('(or (lt kv p.sink) (ge kv (sub len p.window)))');
    checkKeep(d.draft.kv.keep, defaultDeployment.draft.kv, d.draft.kv.params);
  });

  it('is cached: a second load of the same spec is fast', () => {
    load();
    const t0 = performance.now();
    load();
    expect(performance.now() - t0).toBeLessThan(500);
  });
});

describe('every preset', () => {
  const cases: [string, string, (d: DeploymentIR) => void][] = [
    ['causal', 'md.causal', (d) => {
      expect(show(d.draft.attention.mask!)).toBe('(le kv q)');
      checkMask(d.draft.attention.mask!, presets.causal, d.draft.attention.params);
    }],
    ['slidingWindow(256)', 'md.slidingWindow(256)', (d) => {
      expect(d.draft.attention.params).toEqual([{ name: 'window', ty: 'i32', value: 256 }]);
      expect(show(d.draft.attention.mask!)).toBe('(and (le kv q) (lt (sub q kv) p.window))');
      checkMask(d.draft.attention.mask!, presets.slidingWindow(256), d.draft.attention.params);
    }],
    ['softcap(30)', 'md.softcap(30)', (d) => {
      expect(show(d.draft.attention.score!)).toBe('(mul (tof32 p.cap) (tanh (div s (tof32 p.cap))))');
      checkMask(d.draft.attention.mask!, presets.softcap(30), d.draft.attention.params);
      checkScore(d.draft.attention.score!, presets.softcap(30), d.draft.attention.params);
    }],
    ['softcap(12.5)', 'md.softcap(12.5)', (d) => {
      expect(d.draft.attention.params).toEqual([{ name: 'cap', ty: 'f32', value: 12.5 }]);
      checkScore(d.draft.attention.score!, presets.softcap(12.5), d.draft.attention.params);
    }],
    ['alibi(32) (const params)', 'md.alibi(32)', (d) => {
      expect(d.draft.attention.const).toBe(true);
      expect(show(d.draft.attention.score!)).toBe('(sub s (mul (pow 2f (div (tof32 (mul -8 (add head 1))) 32f)) (tof32 (sub q kv))))');
      checkScore(d.draft.attention.score!, presets.alibi(32), d.draft.attention.params);
    }],
    ['prefixLM(16)', 'md.prefixLM(16)', (d) => {
      expect(show(d.draft.attention.mask!)).toBe('(or (lt kv p.prefix) (le kv q))');
      checkMask(d.draft.attention.mask!, presets.prefixLM(16), d.draft.attention.params);
    }],
  ];
  it.each(cases)('attention %s', (_name, expr, check) => check(loadDraft(expr, 'md.full')));

  it.each([
    ['full', 'md.full', presets.full, 'true'],
    ['streaming', 'md.streaming({ sink: 4, window: 60 })', presets.streaming({ sink: 4, window: 60 }), '(or (lt kv p.sink) (ge kv (sub len p.window)))'],
    ['window', 'md.window(100)', presets.window(100), '(ge kv (sub len p.window))'],
  ] as const)('kvPolicy %s', (_name, expr, pol, ir) => {
    const d = loadDraft('md.causal', expr);
    expect(show(d.draft.kv.keep)).toBe(ir);
    checkKeep(d.draft.kv.keep, pol, d.draft.kv.params);
  });

  it.each([
    ['greedy', 'md.greedy', presets.greedy],
    ['sampleAndMatch', 'md.sampleAndMatch', presets.sampleAndMatch],
  ] as const)('verifier %s', (_name, expr, v: Verifier) => {
    const d = loadDraft('md.causal', 'md.full', expr);
    expect(d.verify).toEqual({ name: v.name, mode: v.mode });
  });

  it('verifier rejection: accept and residual lower to what the JS computes, and to planModule\'s md_verify_sample rule', () => {
    const v = presets.rejection;
    const d = loadDraft('md.causal', 'md.full', 'md.rejection');
    expect(d.verify.mode).toBe('sample');
    expect(show(d.verify.accept!)).toBe('(lt (mul u q) p)');
    expect(show(d.verify.residual!)).toBe('(max 0f (sub p q))');
    // The preset is the standard rule, which modules of other verifiers carry for md_verify_sample.
    expect(d.verify.accept).toBe(STANDARD_REJECTION.accept);
    expect(d.verify.residual).toBe(STANDARD_REJECTION.residual);
    expect(planModule(d).verifierRule.from).toBe("verifier 'rejection'");
    // Multiples of 1/16 below 4: products are exact in f32, so JS and the interpreter agree exactly.
    const prob = fc.integer({ min: 0, max: 63 }).map((x) => x / 16);
    fc.assert(
      fc.property(prob, prob, prob, (p, q, u) => {
        expect(evaluate(d.verify.accept!, { vars: { p, q, u, h: 0 } })).toBe(v.accept!(p, q, u, 0));
        expect(evaluate(d.verify.residual!, { vars: { p, q } })).toBe(v.residual!(p, q));
      }),
    );
  });
});

describe('verifier typical (lossy)', () => {
  it('lowers to p > min(eps, delta * exp(-h)) with residual p, declared lossy, with its own eps and delta too', () => {
    const d = loadDraft('md.causal', 'md.full', 'md.typical()');
    expect(d.verify).toEqual(verifiers.typical());
    expect(d.verify.accept).toBe(verifiers.typical().accept);
    expect(show(d.verify.accept!)).toBe('(gt p (min 0.09000000357627869f (mul 0.30000001192092896f (exp (neg h)))))');
    expect(loadDraft('md.causal', 'md.full', 'md.typical({ eps: 0.2, delta: 0.5 })').verify).toEqual(verifiers.typical(0.2, 0.5));
    // The JS preset and the IR agree away from the threshold (exp may differ in the last f32 ulps).
    const v = presets.typical();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 800 }), (pi, hi) => {
        const p = pi / 1000;
        const h = hi / 100;
        const threshold = Math.min(0.09, 0.3 * Math.exp(-h));
        fc.pre(Math.abs(p - threshold) > 1e-5);
        expect(evaluate(d.verify.accept!, { vars: { p, q: 0.5, u: 0.5, h } })).toBe(v.accept!(p, 0.5, 0.5, h));
      }),
    );
  });

  it("a 'sample' verifier reads the entropy only through accept's fourth parameter", () => {
    const d = loadDraft('md.causal', 'md.full', "md.verifier({ name: 'flat', mode: 'sample', accept: (p, q, u, entropy) => entropy > 1 || u * q < p, residual: (p, q) => Math.max(0, p - q) })");
    expect(show(d.verify.accept!)).toBe('(or (gt h 1f) (lt (mul u q) p))');
    expect(d.verify.lossy).toBeUndefined();
  });
});

describe('good fixture specs', () => {
  it('good-streaming.ts', () => {
    const d = load(`${FIXTURES}/good-streaming.ts`);
    expect(d.source).toBe(`${FIXTURES}/good-streaming.ts`);
    expect(d.model).toEqual(models.tiny);
    expect(d.shapes).toEqual({ batch: [1, 2, 4], maxSeq: 1024, pageSize: 16 });
    expect(d.draft.kv.params.map((p) => p.value)).toEqual([4, 60]);
  });

  it('good-closure.ts: closure constants, const params, block bodies, helpers, spreads, template names', () => {
    const d = load(`${FIXTURES}/good-closure.ts`);
    const a = d.target.attention;
    expect(a.params).toEqual([{ name: 'band', ty: 'i32', value: 512 }, { name: 'scale', ty: 'f32', value: 0.5 }]);
    expect(show(a.mask!)).toBe('(and (le kv q) (lt (sub q kv) p.band))');
    // WINDOW = 2 * 64 - SINK is a closure constant: 124.
    expect(show(a.score!)).toBe('(select (eq (mod head 2) 0) (mul s p.scale) (sub s (log (add 1f (div (tof32 (sub q kv)) 124f)))))');
    expect(d.target.kv.name).toBe('sink_window_v2');
    expect(show(d.target.kv.keep)).toBe('(select (lt kv p.sink) true (ge kv (sub len p.window)))');
    // The same helper with const: true bakes the params in.
    expect(d.draft.kv.const).toBe(true);
    expect(show(d.draft.kv.keep)).toBe('(select (lt kv 4) true (ge kv (sub len 124)))');
    // Parameter names are the user's; variables bind by position.
    expect(show(d.draft.attention.mask!)).toBe('(le kv q)');
    expect(d.verify).toEqual({ name: 'sample_and_match', mode: 'match' });
    expect(d.model).toEqual(models.tiny);
    expect(d.shapes).toEqual({ batch: [1, 4, 16], maxSeq: 2048, pageSize: 32 });
    expect([d.dtype, d.arch, d.gamma]).toEqual(['bf16', 'sm_80', 2]);
    // The if/return chain means what the JS means.
    fc.assert(
      fc.property(pos, pos, (kv, len) => {
        const js = kv < 4 ? true : kv >= len - 124;
        expect(evaluate(d.target.kv.keep, { vars: { kv, len }, params: { sink: 4, window: 124 } })).toBe(js);
        expect(evaluate(d.draft.kv.keep, { vars: { kv, len } })).toBe(js);
      }),
    );
  });

  it("gamma 'auto' lowers to the compiled maximum (gammaMax, default DEFAULT_GAMMA_MAX) and adaptiveGamma", () => {
    const gammaOf = (fields: string) => {
      const text = `import * as md from 'magicdec';\nexport default md.deploy({ model: md.models.tiny, target: { attention: md.causal, kv: md.full }, draft: { attention: md.causal, kv: md.full }, verify: md.greedy, ${fields}, shapes: { batch: [1, 2], maxSeq: 1024, pageSize: 64 }, dtype: 'fp32', arch: 'cpu' });\n`;
      const r = loadSpecText(text, path.join(FIXTURES, '__gamma__.ts'));
      expect(r.diagnostics.map(formatDiagnostic)).toEqual([]);
      return { gamma: r.deployment!.gamma, adaptive: r.deployment!.adaptiveGamma, key: 'adaptiveGamma' in r.deployment! };
    };
    expect(gammaOf("gamma: 'auto'")).toEqual({ gamma: DEFAULT_GAMMA_MAX, adaptive: true, key: true });
    expect(gammaOf("gamma: 'auto', gammaMax: 5")).toEqual({ gamma: 5, adaptive: true, key: true });
    // A fixed gamma carries no adaptiveGamma at all, so its module hash and manifest are what they were.
    expect(gammaOf('gamma: 5')).toEqual({ gamma: 5, adaptive: undefined, key: false });
  });

  it('good-config-json.ts: the model from a Hugging Face config.json next to the spec', () => {
    const d = load(`${FIXTURES}/good-config-json.ts`);
    expect(d.model).toMatchObject({ name: 'tiny-hf', architecture: 'qwen2', qkvBias: true, hiddenSize: 256, numHeads: 8, numKvHeads: 2, headDim: 32, tieWordEmbeddings: true, ropeTheta: 1e6 });
    expect(show(d.draft.kv.keep)).toBe('(ge kv (sub len p.window))');
    expect([d.dtype, d.arch]).toEqual(['fp16', 'sm_90']);
  });

  it('accepts renamed imports, destructured consts, defaults and a preset name', () => {
    const text = `import { attention as att, kvPolicy, deploy as dep, greedy, models } from 'magicdec';
const { tiny } = models;
const mk = ({ lo = 2, hi }: { lo?: number; hi: number }) => kvPolicy({ name: 'band', params: { lo, hi }, keep: (kv, len, p) => kv >= p.lo && kv < len - p.hi });
const a = att({ name: 'neg', mask: (a, b) => !(b > a), score: (x) => -x * Math.PI + Infinity });
export default dep({ model: tiny, target: { attention: a, kv: mk({ hi: 3 }) }, draft: { attention: a, kv: mk({ lo: 5, hi: 1 }) }, verify: greedy, gamma: 1, shapes: { batch: [4], maxSeq: 256, pageSize: 256 }, dtype: 'fp32', arch: 'cpu' });
`;
    const r = loadSpecText(text, `${FIXTURES}/__renamed__.ts`);
    expect(r.diagnostics.map(formatDiagnostic)).toEqual([]);
    const d = r.deployment!;
    expect(show(d.target.attention.mask!)).toBe('(not (gt kv q))');
    expect(show(d.target.attention.score!)).toBe(`(add (mul (neg s) ${Math.fround(Math.PI)}f) Infinityf)`);
    expect(d.target.kv.params.map((p) => p.value)).toEqual([2, 3]);
    expect(d.draft.kv.params.map((p) => p.value)).toEqual([5, 1]);
  });
});

describe('module resolution', () => {
  it("resolves 'magicdec' from a user project's node_modules", async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'magicdec-user-'));
    try {
      const pkg = path.join(dir, 'node_modules', 'magicdec');
      fs.mkdirSync(pkg, { recursive: true });
      fs.copyFileSync('package.json', path.join(pkg, 'package.json'));
      fs.cpSync('dsl', path.join(pkg, 'dsl'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'user-app', type: 'module' }));
      const spec = path.join(dir, 'spec.ts');
      fs.writeFileSync(
        spec,
        `import { deploy, causal, full, greedy, window, models, attention as att } from 'magicdec';\n` +
          `const banded = att({ name: 'banded', mask: (q, kv) => kv <= q && q - kv < 100 });\n` +
          `export default deploy({ model: models.small, target: { attention: causal, kv: full }, draft: { attention: banded, kv: window(64) }, verify: greedy, gamma: 5, shapes: { batch: [1, 2], maxSeq: 4096, pageSize: 128 }, dtype: 'bf16', arch: 'cpu' });\n`,
      );
      const d = load(spec);
      expect(d.model).toEqual(models.small);
      expect(show(d.draft.attention.mask!)).toBe('(and (le kv q) (lt (sub q kv) 100))');
      expect(show(d.draft.kv.keep)).toBe('(ge kv (sub len p.window))');
      // Errors inside the copied package are still shown at the user's call.
      fs.writeFileSync(spec, fs.readFileSync(spec, 'utf8').replace('window(64)', 'window(0.5 * Infinity)'));
      const bad = loadSpec(spec);
      expect(bad.diagnostics.map((x) => [x.code, x.file, x.line])).toEqual([['MD1204', spec, 3]]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
