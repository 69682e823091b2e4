// Constant literals through g++: every f32 class (normal, subnormal, ±0, ±inf, NaN) and the i32 extremes
// must compile to exactly the value the IR holds.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { renderConst, renderF32 } from '../../codegen/render.ts';
import { F32_EDGES, f32Arb, I32_EDGES } from '../arbitraries.ts';
import { bitsF32, f32Bits } from '../harness/expr/bits.ts';
import { compileProgram, runProgram } from '../harness/expr/compile.ts';

/** Every exponent (subnormal, normal, inf/NaN) with mantissas at both ends and the middle, both signs. */
function everyClass(): number[] {
  const out: number[] = [];
  for (let e = 0; e < 256; e++)
    for (const m of [0, 1, 0x2aaaaa, 0x400000, 0x7fffff])
      for (const s of [0, 1]) out.push(bitsF32(((s << 31) | (e << 23) | m) >>> 0));
  return out;
}

const F32S = [...F32_EDGES, ...everyClass(), ...fc.sample(f32Arb, { seed: 3, numRuns: 500 })];
const FINITE = F32S.filter(Number.isFinite);
const NON_FINITE = F32S.filter((x) => !Number.isFinite(x));
const ORDERED = [...FINITE, ...NON_FINITE];
const I32S = [...I32_EDGES, ...fc.sample(fc.integer({ min: -2147483648, max: 2147483647 }), { seed: 4, numRuns: 200 })];

describe('constant rendering', () => {
  it('every f32 literal compiles to its exact bit pattern (NaN to a NaN)', () => {
    const src = [
      '#include "md_expr.h"',
      '#include <cstdio>',
      'int main() {',
      // Finite literals in one constant array; non-finite ones (function calls) as statements, since a large
      // array with dynamic initialisers makes g++ -O2 very slow.
      `  const float f[] = {\n${FINITE.map((x) => `    ${renderF32(x)},`).join('\n')}\n  };`,
      `  const int32_t i[] = {\n${I32S.map((x) => `    ${renderConst(x, 'i32')},`).join('\n')}\n  };`,
      '  for (float x : f) std::printf("%x\\n", (unsigned)md_f32_bits(x));',
      ...NON_FINITE.map((x) => `  std::printf("%x\\n", (unsigned)md_f32_bits(${renderF32(x)}));`),
      '  for (int32_t x : i) std::printf("%d\\n", (int)x);',
      '  return 0;',
      '}',
    ].join('\n');
    const lines = runProgram(compileProgram('render-const', src), '').trim().split('\n');
    expect(lines).toHaveLength(F32S.length + I32S.length);
    const bad: string[] = [];
    ORDERED.forEach((x, k) => {
      const got = parseInt(lines[k], 16);
      const ok = Number.isNaN(x) ? Number.isNaN(bitsF32(got)) : got === f32Bits(x);
      if (!ok) bad.push(`${renderF32(x)}: want 0x${f32Bits(x).toString(16)}, got 0x${got.toString(16)}`);
    });
    I32S.forEach((x, k) => {
      if (Number(lines[F32S.length + k]) !== x) bad.push(`${renderConst(x, 'i32')}: got ${lines[F32S.length + k]}`);
    });
    expect(bad).toEqual([]);
  });

  it('hex literals are exact by construction: they parse back to the same value in JS', () => {
    for (const x of F32S.filter(Number.isFinite)) {
      const lit = renderF32(x);
      const m = /^(-?)0x([01])\.([0-9a-f]{6})p(-?\d+)f$/.exec(lit);
      if (Object.is(x, 0) || Object.is(x, -0)) {
        expect(lit).toBe(Object.is(x, -0) ? '-0.0f' : '0.0f');
        continue;
      }
      expect(m, lit).not.toBeNull();
      const [, sign, lead, frac, exp] = m!;
      const v = (Number(lead) + parseInt(frac, 16) / 2 ** 24) * 2 ** Number(exp) * (sign ? -1 : 1);
      expect(Object.is(v, x), lit).toBe(true);
    }
  });
});
