// Safetensors element types, and the reference bf16/fp16 <-> fp32 conversions: the one definition every
// other copy is tested against bit for bit over all 65,536 16-bit patterns and millions of fp32 patterns
// (test/runtime/dtype-copies.test.ts: runtime/src/dtype.*, the CPU kernels' md_cpu.h).
//
// Narrowing (fp32 -> bf16/fp16) rounds to nearest, ties to even, as torch's .to(bfloat16/float16) and the
// hardware conversions (F16C vcvtps2ph, AVX512-BF16, CUDA __float2half_rn) do: values past the largest
// finite one round to infinity, fp16 subnormals round at their own precision, zeros keep their sign.
// A NaN stays a NaN with its sign; it becomes quiet (the top mantissa bit set) and keeps the top bits of
// its payload that fit (9 for fp16, 6 for bf16), like those hardware conversions: fp32 NaN bits
// s|ff|m -> fp16 s|1f|(0x200 | m >> 13), bf16 (bits >> 16) | 0x40.
// Widening (bf16/fp16 -> fp32) is exact and puts the bits where they belong: a NaN's payload moves to the
// top of the fp32 mantissa unchanged (quiet or not), so widening then narrowing gives back every quiet NaN.

/** Every dtype the safetensors format defines, with its size in bytes (the reader must know them all). */
export const DTYPE_BYTES = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
} as const;

export type Dtype = keyof typeof DTYPE_BYTES;

/** The dtypes the writer produces from Float32Array data. */
export type FloatDtype = 'F32' | 'BF16' | 'F16';

export function isDtype(s: string): s is Dtype {
  return Object.prototype.hasOwnProperty.call(DTYPE_BYTES, s);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** fp32 -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN with its sign. */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) return ((bits >>> 16) | 0x0040) & 0xffff;
  // Adding 0x7fff plus the lowest kept bit rounds ties to even; a carry into the exponent is correct
  // (it rounds up to the next binade or to infinity).
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** fp32 -> fp16 bits, round to nearest even, with subnormals, overflow to infinity and NaN. */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15; // fp16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // fp16 subnormal: value = m * 2^-24, m = M >> (14 - e) with M the 24-bit significand.
    if (e < -10) return sign; // below half the smallest subnormal
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (h & 1) !== 0)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // a carry into the exponent is correct
  return sign | h;
}

/** bf16 bits -> the fp32 bits of the same value (exact; NaN payloads kept). */
export function bf16BitsToF32Bits(h: number): number {
  return ((h & 0xffff) << 16) >>> 0;
}

/** fp16 bits -> the fp32 bits of the same value (exact; subnormals normalised, NaN payloads kept). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal: mant * 2^-24; shift the leading 1 up to the implicit bit, one exponent step per shift.
  let e = 113;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

function f32FromBits(u: number): number {
  u32[0] = u;
  return f32[0];
}

export function bf16BitsToNumber(h: number): number {
  return f32FromBits(bf16BitsToF32Bits(h));
}

export function f16BitsToNumber(h: number): number {
  return f32FromBits(f16BitsToF32Bits(h));
}

/** Decode raw little-endian tensor bytes of a float or integer dtype to float64 (exact for all but 64-bit ints). */
export function decodeToFloat64(dtype: Dtype, bytes: Uint8Array, where: string): Float64Array {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float64Array(n);
  switch (dtype) {
    case 'F64': for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true); break;
    case 'F32': for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true); break;
    case 'BF16': for (let i = 0; i < n; i++) out[i] = bf16BitsToNumber(dv.getUint16(i * 2, true)); break;
    case 'F16': for (let i = 0; i < n; i++) out[i] = f16BitsToNumber(dv.getUint16(i * 2, true)); break;
    case 'I8': for (let i = 0; i < n; i++) out[i] = dv.getInt8(i); break;
    case 'U8': case 'BOOL': for (let i = 0; i < n; i++) out[i] = dv.getUint8(i); break;
    case 'I16': for (let i = 0; i < n; i++) out[i] = dv.getInt16(i * 2, true); break;
    case 'U16': for (let i = 0; i < n; i++) out[i] = dv.getUint16(i * 2, true); break;
    case 'I32': for (let i = 0; i < n; i++) out[i] = dv.getInt32(i * 4, true); break;
    case 'U32': for (let i = 0; i < n; i++) out[i] = dv.getUint32(i * 4, true); break;
    case 'I64': for (let i = 0; i < n; i++) out[i] = Number(dv.getBigInt64(i * 8, true)); break;
    case 'U64': for (let i = 0; i < n; i++) out[i] = Number(dv.getBigUint64(i * 8, true)); break;
    default: throw new Error(`${where}: cannot decode dtype ${dtype} to numbers`);
  }
  return out;
}

/** Encode fp32 values into little-endian bytes of `dtype`. */
export function encodeFloats(dtype: FloatDtype, data: Float32Array): Uint8Array {
  const out = new Uint8Array(data.length * DTYPE_BYTES[dtype]);
  const dv = new DataView(out.buffer);
  if (dtype === 'F32') for (let i = 0; i < data.length; i++) dv.setFloat32(i * 4, data[i], true);
  else if (dtype === 'BF16') for (let i = 0; i < data.length; i++) dv.setUint16(i * 2, f32ToBf16Bits(data[i]), true);
  else for (let i = 0; i < data.length; i++) dv.setUint16(i * 2, f32ToF16Bits(data[i]), true);
  return out;
}
