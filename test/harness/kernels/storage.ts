// Storage dtypes on the TypeScript side: encode float values the way the kernels store them (round to
// nearest even; bf16/fp16 as raw 16-bit patterns) and decode them to the exact values the kernels read.
import type { DType } from '../../../dsl/deploy.ts';

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

function f32Bits(x: number): number {
  f32buf[0] = x;
  return u32buf[0];
}
function bitsF32(u: number): number {
  u32buf[0] = u >>> 0;
  return f32buf[0];
}

export function bf16FromF32(x: number): number {
  const u = f32Bits(x);
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
export const f32FromBf16 = (h: number): number => bitsF32(h << 16);

export function f16FromF32(x: number): number {
  const u = f32Bits(x);
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00 | ((a >>> 13) & 0x3ff);
  if (a >= 0x477ff000) return sign | 0x7c00;
  if (a >= 0x38800000) {
    const r = a - 0x38000000;
    return sign | ((r + 0xfff + ((r >>> 13) & 1)) >>> 13);
  }
  // Subnormal half: round |x| / 2^-24 to the nearest integer, ties to even (exact in float64).
  const q = Math.abs(bitsF32(a)) * 2 ** 24;
  let n = Math.floor(q);
  const rem = q - n;
  if (rem > 0.5 || (rem === 0.5 && n % 2 === 1)) n++;
  return sign | n;
}
export function f32FromF16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  if (e === 0) return sign * m * 2 ** -24;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

export interface Stored {
  /** Raw bytes as the kernel reads them. */
  readonly bytes: Uint8Array;
  /** The values those bytes mean (what a float64 reference computes with). */
  readonly values: Float64Array;
}

/** Round `xs` to the storage dtype. */
export function store(dtype: DType, xs: ArrayLike<number>): Stored {
  const values = new Float64Array(xs.length);
  if (dtype === 'fp32') {
    const a = Float32Array.from(xs);
    values.set(a);
    return { bytes: new Uint8Array(a.buffer), values };
  }
  const enc = dtype === 'bf16' ? bf16FromF32 : f16FromF32;
  const dec = dtype === 'bf16' ? f32FromBf16 : f32FromF16;
  const h = new Uint16Array(xs.length);
  for (let i = 0; i < xs.length; i++) {
    h[i] = enc(Math.fround(xs[i]));
    values[i] = dec(h[i]);
  }
  return { bytes: new Uint8Array(h.buffer), values };
}

/** Values of raw storage bytes. */
export function load(dtype: DType, bytes: Uint8Array): Float64Array {
  const copy = bytes.slice();
  if (dtype === 'fp32') return Float64Array.from(new Float32Array(copy.buffer));
  const dec = dtype === 'bf16' ? f32FromBf16 : f32FromF16;
  return Float64Array.from(new Uint16Array(copy.buffer), dec);
}

export const storageBytes = (dtype: DType): number => (dtype === 'fp32' ? 4 : 2);
