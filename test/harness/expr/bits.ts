// Bit-level views of values, for comparing the interpreter with compiled code exactly: f32 by bit
// pattern (any NaN equals any NaN; -0 and +0 differ), i32 as integers, bools as 0/1.
import type { Ty } from '../../../codegen/ir.ts';
import type { Value } from '../../../codegen/ops.ts';

const dv = new DataView(new ArrayBuffer(4));

export function f32Bits(x: number): number {
  dv.setFloat32(0, x);
  return dv.getUint32(0);
}
export function bitsF32(u: number): number {
  dv.setUint32(0, u >>> 0);
  return dv.getFloat32(0);
}

/** The wire encoding the harness programs read and print: 8 hex digits for numbers, 0/1 for bools. */
export function encode(v: Value, ty: Ty): string {
  if (ty === 'bool') return v ? '1' : '0';
  if (ty === 'i32') return ((v as number) >>> 0).toString(16);
  return f32Bits(v as number).toString(16);
}
export function decode(s: string, ty: Ty): Value {
  if (ty === 'bool') return s === '1';
  const u = parseInt(s, 16);
  return ty === 'i32' ? u | 0 : bitsF32(u);
}

/**
 * Same value: bitwise, except that NaNs are equal whatever their payload and sign. Numbers compare with
 * Object.is, so an interpreter value off the f32 grid, or an i32 -0, is a mismatch rather than being
 * rounded into agreement.
 */
export function sameValue(a: Value, b: Value, ty: Ty): boolean {
  if (ty === 'f32' && Number.isNaN(a as number)) return Number.isNaN(b as number);
  return Object.is(a, b);
}

/**
 * Distance in f32 ulps: the number of f32 values strictly between plus one, counting -0 and +0 as two
 * values (so a wrong sign of zero costs one ulp). 0 for two NaNs; Infinity for NaN vs a number.
 */
export function ulpDistance(a: number, b: number): number {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b) ? 0 : Infinity;
  const ord = (x: number) => {
    const u = f32Bits(x);
    return u >>> 31 ? -1 - (u & 0x7fffffff) : u;
  };
  return Math.abs(ord(a) - ord(b));
}

export function showValue(v: Value, ty: Ty): string {
  if (ty !== 'f32') return Object.is(v, -0) ? '-0' : String(v);
  const x = v as number;
  return `${Object.is(x, -0) ? '-0' : String(x)} (0x${f32Bits(x).toString(16).padStart(8, '0')})`;
}
