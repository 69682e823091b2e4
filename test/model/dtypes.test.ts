import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bf16BitsToF32Bits, bf16BitsToNumber, decodeToFloat64, f16BitsToF32Bits, f16BitsToNumber, f32ToBf16Bits, f32ToF16Bits } from '../../model/dtypes.ts';

/** Every finite value of a 16-bit format, ascending, with its bits (the brute-force oracle). */
function finiteTable(decode: (bits: number) => number): { v: number; bits: number }[] {
  const t: { v: number; bits: number }[] = [];
  for (let b = 0; b < 0x10000; b++) {
    const v = decode(b);
    if (Number.isFinite(v) && !Object.is(v, -0)) t.push({ v, bits: b });
  }
  return t.sort((a, b) => a.v - b.v);
}

/** Round to nearest, ties to the even bit pattern, overflow to infinity; found by search, not bit tricks. */
function nearest(table: { v: number; bits: number }[], maxFinite: number, ulpAtMax: number, x: number): number {
  if (Math.abs(x) >= maxFinite + ulpAtMax / 2) return x > 0 ? table.find((e) => e.v === maxFinite)!.bits + 1 : table.find((e) => e.v === -maxFinite)!.bits + 1;
  let lo = 0;
  let hi = table.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (table[mid].v <= x) lo = mid;
    else hi = mid;
  }
  const a = table[lo];
  const b = table[hi];
  const da = Math.abs(x - a.v);
  const db = Math.abs(x - b.v);
  const pick = da < db ? a : db < da ? b : (a.bits & 1) === 0 ? a : b;
  // Zero keeps the sign of the input, like the hardware conversion.
  return pick.v === 0 && (x < 0 || Object.is(x, -0)) ? 0x8000 : pick.bits;
}

const f16Table = finiteTable(f16BitsToNumber);
const bf16Table = finiteTable(bf16BitsToNumber);
const F16_MAX = 65504;
const BF16_MAX = bf16BitsToNumber(0x7f7f);

describe('fp32 -> fp16 / bf16 conversion', () => {
  it('decodes known bit patterns', () => {
    expect(f16BitsToNumber(0x3c00)).toBe(1);
    expect(f16BitsToNumber(0xc000)).toBe(-2);
    expect(f16BitsToNumber(0x7bff)).toBe(65504);
    expect(f16BitsToNumber(0x0001)).toBe(2 ** -24);
    expect(f16BitsToNumber(0x7c00)).toBe(Infinity);
    expect(f16BitsToNumber(0x7e00)).toBeNaN();
    expect(bf16BitsToNumber(0x3f80)).toBe(1);
    expect(bf16BitsToNumber(0xc0a0)).toBe(-5);
    expect(bf16BitsToNumber(0xff80)).toBe(-Infinity);
  });

  it('rounds ties to even and handles specials', () => {
    // 1 + 2^-11 is exactly halfway between fp16 1 and 1 + 2^-10: ties to the even pattern (1).
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // halfway past the max rounds to infinity
    expect(f32ToF16Bits(65519)).toBe(0x7bff);
    expect(f32ToF16Bits(2 ** -25)).toBe(0); // half the smallest subnormal ties to zero
    expect(f32ToF16Bits(-(2 ** -25) * 1.5)).toBe(0x8001);
    expect(f32ToF16Bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(f32ToF16Bits(NaN) & 0x3ff).not.toBe(0);
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(f32ToBf16Bits(-Infinity)).toBe(0xff80);
    expect(Number.isNaN(bf16BitsToNumber(f32ToBf16Bits(NaN)))).toBe(true);
  });

  it('equals the nearest representable value for any fp32 input', () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true }), (x) => {
        expect(f32ToF16Bits(x)).toBe(nearest(f16Table, F16_MAX, 32, x));
        expect(f32ToBf16Bits(x)).toBe(nearest(bf16Table, BF16_MAX, 2 ** 120, x));
      }),
      { numRuns: 3000 },
    );
  });

  it('rounds every exact midpoint between neighbours to the even one', () => {
    const wrong: string[] = [];
    for (const [table, encode] of [[f16Table, f32ToF16Bits], [bf16Table, f32ToBf16Bits]] as const) {
      for (let i = 0; i + 1 < table.length; i++) {
        const mid = (table[i].v + table[i + 1].v) / 2; // exact in fp32: one more significand bit
        const even = (table[i].bits & 1) === 0 ? table[i] : table[i + 1];
        // A tie with zero gives a zero carrying the input's sign.
        if (encode(mid) !== (even.v === 0 ? (mid < 0 ? 0x8000 : 0) : even.bits)) wrong.push(`${encode.name}(${mid})`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('is exact on every fp16 value (encode . decode = id)', () => {
    const wrong: number[] = [];
    for (let b = 0; b < 0x10000; b++) {
      const v = f16BitsToNumber(b);
      if (!Number.isNaN(v) && f32ToF16Bits(v) !== b) wrong.push(b);
    }
    expect(wrong).toEqual([]);
  });

  it('decodes raw little-endian bytes of each dtype', () => {
    const bytes = new Uint8Array([0x00, 0x3c, 0x00, 0xc0]);
    expect([...decodeToFloat64('F16', bytes, 't')]).toEqual([1, -2]);
    expect([...decodeToFloat64('BF16', new Uint8Array([0x80, 0x3f, 0xa0, 0xc0]), 't')]).toEqual([1, -5]);
    expect([...decodeToFloat64('I16', new Uint8Array([0xff, 0xff, 0x02, 0x00]), 't')]).toEqual([-1, 2]);
    expect(() => decodeToFloat64('F8_E4M3', new Uint8Array([1]), 'file: tensor "x"')).toThrow('file: tensor "x": cannot decode dtype F8_E4M3');
  });
});

describe('NaN and the bit-level widening (the rule every copy follows)', () => {
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const fromBits = (b: number) => {
    u32[0] = b;
    return f32[0];
  };
  it('narrowing keeps the sign, sets the quiet bit and keeps the top payload bits', () => {
    expect(f32ToF16Bits(fromBits(0x7fc00000))).toBe(0x7e00); // the default quiet NaN
    expect(f32ToF16Bits(fromBits(0xffc00000))).toBe(0xfe00);
    expect(f32ToF16Bits(fromBits(0x7f802000))).toBe(0x7e01); // signalling, payload bit 13: quieted, kept
    expect(f32ToF16Bits(fromBits(0x7f800001))).toBe(0x7e00); // payload below fp16's bits: a quiet NaN still
    expect(f32ToF16Bits(fromBits(0x7fffe000))).toBe(0x7fff);
    expect(f32ToBf16Bits(fromBits(0x7f810000))).toBe(0x7fc1);
    expect(f32ToBf16Bits(fromBits(0xff800001))).toBe(0xffc0);
  });
  it('widening is exact, payloads moved to the top of the fp32 mantissa', () => {
    expect(f16BitsToF32Bits(0x7e01)).toBe(0x7fc02000);
    expect(f16BitsToF32Bits(0x7c01)).toBe(0x7f802000); // a signalling NaN stays one
    expect(f16BitsToF32Bits(0x0001)).toBe(0x33800000); // 2^-24
    expect(f16BitsToF32Bits(0x83ff)).toBe(0xb87fc000); // the largest negative subnormal
    expect(bf16BitsToF32Bits(0xffc1)).toBe(0xffc10000);
    // Every quiet NaN survives widen -> narrow.
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7e00) === 0x7e00) expect(f32ToF16Bits(fromBits(f16BitsToF32Bits(h)))).toBe(h);
      if ((h & 0x7fc0) === 0x7fc0) expect(f32ToBf16Bits(fromBits(bf16BitsToF32Bits(h)))).toBe(h);
    }
  });
});
