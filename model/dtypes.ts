// Safetensors element types and the float conversions the writer and the reference need.
// Encoding from fp32 rounds to nearest, ties to even (what torch's .to(bfloat16/float16) does), so a
// model written here holds the same bits a PyTorch export of the same fp32 weights would.

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
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
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

export function bf16BitsToNumber(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}

export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
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
