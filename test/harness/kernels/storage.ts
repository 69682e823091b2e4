// Storage dtypes on the TypeScript side: encode float values the way the kernels store them (round to
// nearest even; bf16/fp16 as raw 16-bit patterns) and decode them to the exact values the kernels read.
import type { DType } from '../../../dsl/deploy.ts';
// The conversions are model/dtypes.ts's (the reference every copy is tested against), under the names the
// kernel tests use.
import { bf16BitsToNumber as f32FromBf16, f16BitsToNumber as f32FromF16, f32ToBf16Bits as bf16FromF32, f32ToF16Bits as f16FromF32 } from '../../../model/dtypes.ts';

export { bf16FromF32, f16FromF32, f32FromBf16, f32FromF16 };

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
