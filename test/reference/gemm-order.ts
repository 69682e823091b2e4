// The CPU GEMM's reduction order (templates/cpu/gemm.cpp.hbs), emulated bit for bit in float32: for each
// output, 16 lane accumulators start at +0, lane j takes acc = fma(x[k], w[k], acc) for k = j mod 16 in
// ascending k, and the lanes reduce by the fixed tree (j + 8, j + 4, j + 2, j + 1); the bias is added last.
// With bf16 weights x is rounded to bf16 and each lane takes, per 32-element block of k (the last padded
// with zeros), the pair (2j, 2j + 1) as VDPBF16PS does: the odd element's product first, then the even
// one's, each a fused multiply-add, with subnormal inputs, accumulators and results counting as zeros of
// their sign. Finite inputs only (NaN payloads are not part of the order).
import { bf16FromF32, f32FromBf16 } from '../harness/kernels/storage.ts';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float32 next to x (a float32, finite, nonzero direction) toward +inf (up) or -inf. */
function nextF32(x: number, up: boolean): number {
  if (x === 0) return up ? 2 ** -149 : -(2 ** -149);
  f32[0] = x;
  u32[0] += x > 0 === up ? 1 : -1;
  return f32[0];
}

/**
 * fmaf(a, b, c) for float32 a, b, c: a * b is exact in float64 and TwoSum gives p + c = s + e exactly, so
 * rounding s to float32 is right except when s lies exactly halfway between two float32s, where the sign
 * of e decides (a float64 add of floats has no such double-rounding case, but p + c does).
 */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const bv = s - p;
  const e = p - (s - bv) + (c - bv);
  const r = Math.fround(s);
  if (e === 0 || r === s) return r;
  const other = nextF32(r, s > r);
  if ((r + other) / 2 !== s) return r;
  return e > 0 === other > r ? other : r;
}

const add = (a: number, b: number) => Math.fround(a + b);

/** A subnormal as the zero of its sign, as VDPBF16PS reads and writes it. */
const flush = (x: number) => (x !== 0 && Math.abs(x) < 2 ** -126 ? (x < 0 ? -0 : 0) : x);

/** VDPBF16PS on one lane: acc + a1 * b1 + a0 * b0, as two fused steps (odd element first), flushing. */
export function dotBf16Pair(acc: number, a0: number, a1: number, b0: number, b1: number): number {
  const once = flush(fmaf(flush(a1), flush(b1), flush(acc)));
  return flush(fmaf(flush(a0), flush(b0), once));
}

/**
 * y [rows, n] = x [rows, k] W^T [n, k] (+ bias) in the kernel's order; inputs are float32 values (w the
 * decoded weights). `weights`: the storage dtype, whose bf16 case takes the VDPBF16PS order above.
 */
export function gemmOrderRef(x: ArrayLike<number>, w: ArrayLike<number>, bias: ArrayLike<number> | undefined, rows: number, n: number, k: number, weights: 'bf16' | 'fp16' | 'fp32' = 'fp32'): Float32Array {
  const y = new Float32Array(rows * n);
  const acc = new Float64Array(16);
  const bf16 = weights === 'bf16';
  const xs = bf16 ? Float64Array.from(x, (v) => f32FromBf16(bf16FromF32(v))) : x;
  const blocks = Math.ceil(k / 32);
  const at = (i: number, m: ArrayLike<number>, row: number) => (i < k ? m[row * k + i] : 0);  // zero padding past k
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < n; o++) {
      acc.fill(0);
      if (bf16) {
        for (let b = 0; b < blocks; b++)
          for (let j = 0; j < 16; j++) {
            const i = 32 * b + 2 * j;
            acc[j] = dotBf16Pair(acc[j], at(i, xs, r), at(i + 1, xs, r), at(i, w, o), at(i + 1, w, o));
          }
      } else {
        for (let i = 0; i < k; i++) acc[i % 16] = fmaf(x[r * k + i], w[o * k + i], acc[i % 16]);
      }
      for (let half = 8; half > 0; half >>= 1) for (let j = 0; j < half; j++) acc[j] = add(acc[j], acc[j + half]);
      y[r * n + o] = bias ? add(acc[0], bias[o]) : acc[0];
    }
  return y;
}
