// Philox4x32-10 and the noise drawn from it: the TypeScript reference (model/philox.ts) and the header every
// module carries (templates/common/md_philox.h, compiled by g++ here; nvcc in test/cuda/philox.test.ts) give
// the Random123 known-answer vectors and the same bits as each other on random counters, keys, seeds and
// positions; the uniform conversions are exact, in range and the same in both. The double exp and log of
// md_sampling.h (fdlibm) and their TypeScript ports (model/sampling.ts) agree bit for bit, and so does the
// Gumbel noise built on them.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NOISE_STREAM, philox4x32_10, philoxBlock, philoxDraw, uniform01, uniformOpen01 } from '../../model/philox.ts';
import { expF64, gumbel, logF64 } from '../../model/sampling.ts';
import { compileProgram, runProgram } from '../harness/expr/compile.ts';

/** Philox4x32-10 known-answer vectors of the Random123 distribution (kat_vectors): counter, key, output. */
export const PHILOX_KAT: readonly { counter: number[]; key: number[]; out: number[] }[] = [
  { counter: [0, 0, 0, 0], key: [0, 0], out: [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8] },
  { counter: [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], key: [0xffffffff, 0xffffffff], out: [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd] },
  { counter: [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], key: [0xa4093822, 0x299f31d0], out: [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1] },
];

const exe = () => compileProgram('philox-check', readFileSync(new URL('../harness/kernels/philox-check.cpp', import.meta.url), 'utf8'));

/** Runs the C++ side on query lines; one answer line each. */
function cpp(lines: readonly string[]): string[] {
  const out = runProgram(exe(), `${lines.join('\n')}\n`).trim().split('\n');
  expect(out).toHaveLength(lines.length);
  return out;
}

const hex = (words: readonly number[]) => words.map((w) => (w >>> 0).toString(16).padStart(8, '0')).join(' ');
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const f32bits = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0];
const f64hex = (x: number) => new BigUint64Array(new Float64Array([x]).buffer)[0].toString(16).padStart(16, '0');
const fromHex = (h: string) => new Float64Array(new BigUint64Array([BigInt(`0x${h}`)]).buffer)[0];

/** Doubles over the whole range: random bit patterns (subnormals, NaNs, infinities among them) and special values. */
const anyDouble = fc.oneof(
  fc.double(),
  fc.double({ min: -800, max: 800 }),
  fc.double({ min: 0, max: 30 }),
  fc.constantFrom(0, -0, 1, -1, Infinity, -Infinity, NaN, 5e-324, 2.2250738585072014e-308, 709.782712893384, -745.1332191019411, 0.5 * Math.LN2, 1.5 * Math.LN2, 2 ** -28, 1 + 2 ** -20),
);

describe('Philox4x32-10', () => {
  it('the TypeScript reference gives the known answers', () => {
    for (const k of PHILOX_KAT) expect(hex(philox4x32_10(k.counter, k.key))).toBe(hex(k.out));
  });

  it('md_philox.h gives the known answers', () => {
    const got = cpp(PHILOX_KAT.map((k) => `B ${[...k.counter, ...k.key].join(' ')}`));
    expect(got).toEqual(PHILOX_KAT.map((k) => hex(k.out)));
  });

  it('md_philox.h equals the reference on random counters and keys', () => {
    const cases = fc.sample(fc.tuple(fc.array(u32, { minLength: 4, maxLength: 4 }), fc.array(u32, { minLength: 2, maxLength: 2 })), { numRuns: 2000, seed: 91 });
    const got = cpp(cases.map(([c, k]) => `B ${[...c, ...k].join(' ')}`));
    expect(got).toEqual(cases.map(([c, k]) => hex(philox4x32_10(c, k))));
  });

  it('draws: md_philox_draw equals philoxDraw over 64-bit seeds, int32 positions (negative too), streams and draw indices', () => {
    const seed = fc.oneof(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.constantFrom(0n, 1n, (1n << 64n) - 1n, 1n << 32n), fc.bigInt({ min: 0n, max: (1n << 53n) - 1n }));
    const pos = fc.oneof(fc.integer({ min: 0, max: 1 << 22 }), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }));
    const stream = fc.constantFrom(...Object.values(NOISE_STREAM), 0xffffffff);
    const draw = fc.oneof(fc.integer({ min: 0, max: 300_000 }), u32);
    const cases = fc.sample(fc.tuple(seed, pos, stream, draw), { numRuns: 2000, seed: 92 });
    const got = cpp(cases.map(([s, p, st, d]) => `D ${s} ${p} ${st} ${d}`));
    expect(got).toEqual(cases.map(([s, p, st, d]) => hex([philoxDraw(s, p, st, d)])));
  });

  it('a draw is word d % 4 of block d / 4 at counter (d / 4, position, stream, 0) under key (seed low, seed high)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.integer({ min: 0, max: 1 << 22 }), fc.integer({ min: 0, max: 1 << 20 }), (s, p, d) => {
        const key = [Number(s & 0xffffffffn), Number(s >> 32n)];
        const block = philox4x32_10([Math.floor(d / 4), p, NOISE_STREAM.gumbel, 0], key);
        expect(philoxDraw(s, p, NOISE_STREAM.gumbel, d)).toBe(block[d % 4]);
        expect(philoxBlock(s, p, NOISE_STREAM.gumbel, Math.floor(d / 4))).toEqual(block);
      }),
      { numRuns: 200 },
    );
  });

  it('distinct positions, streams and seeds give distinct words (no aliasing of counter fields)', () => {
    const words = new Set<number>();
    for (const s of [0n, 1n, 1n << 32n]) for (const p of [0, 1, 2]) for (const st of [0, 1, 2]) for (let d = 0; d < 8; d++) words.add(philoxDraw(s, p, st, d));
    expect(words.size).toBe(3 * 3 * 3 * 8);
  });
});

describe('uniform conversions', () => {
  it('[0, 1): (x >> 8) * 2^-24, exact in float32, 0 at x = 0 and 1 - 2^-24 at x = 2^32 - 1', () => {
    expect(uniform01(0)).toBe(0);
    expect(uniform01(0xffffffff)).toBe(1 - 2 ** -24);
    expect(uniform01(0x100)).toBe(2 ** -24);
    fc.assert(
      fc.property(u32, (x) => {
        const u = uniform01(x);
        expect(Math.fround(u)).toBe(u);
        expect(u >= 0 && u < 1).toBe(true);
        expect(u * 2 ** 24).toBe(Math.floor(x / 256));
      }),
      { numRuns: 2000 },
    );
  });

  it('(0, 1): (2 (x >> 9) + 1) * 2^-24, exact in float32, from 2^-24 to 1 - 2^-24, symmetric', () => {
    expect(uniformOpen01(0)).toBe(2 ** -24);
    expect(uniformOpen01(0xffffffff)).toBe(1 - 2 ** -24);
    fc.assert(
      fc.property(u32, (x) => {
        const u = uniformOpen01(x);
        expect(Math.fround(u)).toBe(u);
        expect(u > 0 && u < 1).toBe(true);
        expect(u * 2 ** 24).toBe(2 * Math.floor(x / 512) + 1);
        // x and its complement land symmetrically about 1/2: no bias toward either end.
        expect(uniformOpen01(~x >>> 0)).toBe(1 - u);
        expect(Number.isFinite(gumbel(x))).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('md_uniform01 / md_uniform_open01 / md_gumbel are the reference bits', () => {
    const xs = [0, 1, 0xff, 0x100, 0x1ff, 0x200, 0x7fffffff, 0x80000000, 0xfffffeff, 0xffffff00, 0xffffffff, ...fc.sample(u32, { numRuns: 3000, seed: 93 })];
    const got = cpp(xs.map((x) => `U ${x}`)).map((l) => l.split(' '));
    xs.forEach((x, i) => {
      const [a, b, g] = got[i];
      expect(a, `uniform01(${x})`).toBe(f32bits(uniform01(x)).toString(16).padStart(8, '0'));
      expect(b, `uniformOpen01(${x})`).toBe(f32bits(uniformOpen01(x)).toString(16).padStart(8, '0'));
      expect(g, `gumbel(${x})`).toBe(f64hex(gumbel(x)));
    });
  });
});

describe('double exp and log (fdlibm) and Gumbel noise', () => {
  it('md_exp_f64 and md_log_f64 equal the TypeScript ports bit for bit', () => {
    const xs = fc.sample(anyDouble, { numRuns: 6000, seed: 94 });
    const got = cpp(xs.flatMap((x) => [`E ${f64hex(x)}`, `L ${f64hex(x)}`]));
    xs.forEach((x, i) => {
      const [e, l] = [fromHex(got[2 * i]), fromHex(got[2 * i + 1])];
      expect(Object.is(e, expF64(x)) || (Number.isNaN(e) && Number.isNaN(expF64(x))), `exp(${x}): ${e} vs ${expF64(x)}`).toBe(true);
      expect(Object.is(l, logF64(x)) || (Number.isNaN(l) && Number.isNaN(logF64(x))), `log(${x}): ${l} vs ${logF64(x)}`).toBe(true);
    });
  });

  it('the ports are within an ulp of Math.exp and Math.log, special values right', () => {
    const ulp = (y: number) => (y === 0 ? 5e-324 : 2 ** (Math.floor(Math.log2(Math.abs(y))) - 52));
    fc.assert(
      fc.property(anyDouble, (x) => {
        for (const [f, g] of [[expF64, Math.exp], [logF64, Math.log]] as const) {
          const a = f(x);
          const b = g(x);
          if (Number.isNaN(b)) expect(Number.isNaN(a)).toBe(true);
          else if (!Number.isFinite(b)) expect(a).toBe(b);
          else expect(Math.abs(a - b), `${f.name}(${x})`).toBeLessThanOrEqual(ulp(b));
        }
      }),
      { numRuns: 20000 },
    );
    expect([expF64(0), expF64(-Infinity), expF64(Infinity), expF64(800), expF64(-800)]).toEqual([1, 0, Infinity, Infinity, 0]);
    expect([logF64(1), logF64(0), logF64(-0), logF64(Infinity)]).toEqual([0, -Infinity, -Infinity, Infinity]);
    expect(Number.isNaN(logF64(-1))).toBe(true);
  });

  it('Gumbel noise is finite and has the standard Gumbel mean (Euler-Mascheroni) and variance (pi^2 / 6)', () => {
    let sum = 0;
    let sq = 0;
    const n = 200_000;
    for (let d = 0; d < n; d++) {
      const g = gumbel(philoxDraw(5n, 17, NOISE_STREAM.gumbel, d));
      sum += g;
      sq += g * g;
    }
    const mean = sum / n;
    const variance = sq / n - mean * mean;
    // Standard errors: sqrt(pi^2/6 / n) ~ 0.0029 for the mean, ~0.012 for the variance; 6 sigma each.
    expect(Math.abs(mean - 0.5772156649)).toBeLessThan(0.018);
    expect(Math.abs(variance - Math.PI ** 2 / 6)).toBeLessThan(0.07);
  });
});
