// The TypeScript storage codecs the kernel tests rely on (the C++ ones are checked against these
// bitwise through rope_append's cache stores): every 16-bit pattern round-trips, and values between two
// neighbours round to the nearer one, ties to even.
import { describe, expect, it } from 'vitest';
import { bf16FromF32, f16FromF32, f32FromBf16, f32FromF16 } from '../harness/kernels/storage.ts';

const codecs = [
  { name: 'bf16', enc: bf16FromF32, dec: f32FromBf16 },
  { name: 'fp16', enc: f16FromF32, dec: f32FromF16 },
];

describe.each(codecs)('$name codec', ({ enc, dec }) => {
  it('round-trips every non-NaN pattern and keeps NaN a NaN', () => {
    for (let h = 0; h < 0x10000; h++) {
      const x = dec(h);
      if (Number.isNaN(x)) expect(Number.isNaN(dec(enc(x)))).toBe(true);
      else expect(enc(x)).toBe(h);
    }
  });

  it('rounds to nearest, ties to even', () => {
    for (let h = 0; h < 0x7fff; h++) {
      const [a, b] = [dec(h), dec(h + 1)];
      if (!Number.isFinite(a) || !Number.isFinite(b)) continue;
      const mid = Math.fround((a + b) / 2);
      if (mid === (a + b) / 2) expect(enc(mid)).toBe(h % 2 === 0 ? h : h + 1);
      const below = Math.fround(a + (b - a) * 0.25);
      if (below !== a) expect(enc(below)).toBe(h);
      expect(enc(-a)).toBe(h | 0x8000);
    }
  });
});

it('fp16 overflows to infinity from 65520 (the tie above the largest half, 65504) up', () => {
  expect(f16FromF32(65519.99609375)).toBe(0x7bff);
  expect(f16FromF32(65520)).toBe(0x7c00);
  expect(f16FromF32(-1e30)).toBe(0xfc00);
  expect(bf16FromF32(Infinity)).toBe(0x7f80);
});
