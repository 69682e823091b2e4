// Crafting broken model directories from a valid one: copy it, then edit config.json or a safetensors
// header (the data section is kept unless told otherwise).
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface SafetensorsHeader {
  [name: string]: { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>;
}

export type TensorEntry = { dtype: string; shape: number[]; data_offsets: [number, number] };

/** A copy of the model directory `from` at `to`. */
export function copyModel(from: string, to: string): string {
  cpSync(from, to, { recursive: true });
  return to;
}

export function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): void {
  const file = join(dir, 'config.json');
  const c = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(c);
  writeFileSync(file, JSON.stringify(c));
}

/** Rewrites a safetensors file's header; `data` may replace the data section. */
export function editSafetensors(file: string, edit: (h: SafetensorsHeader) => void, data?: (d: Buffer) => Buffer): void {
  const buf = readFileSync(file);
  const len = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + len).toString('utf8')) as SafetensorsHeader;
  edit(header);
  const hb = Buffer.from(JSON.stringify(header), 'utf8');
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(hb.length));
  const body = data ? data(buf.subarray(8 + len)) : buf.subarray(8 + len);
  writeFileSync(file, Buffer.concat([lenBuf, hb, body]));
}

/** The header entry of tensor `name` (throws if it is not a tensor). */
export function tensorEntry(h: SafetensorsHeader, name: string): TensorEntry {
  const t = h[name];
  if (!t || !('data_offsets' in t)) throw new Error(`no tensor '${name}' in the header`);
  return t as TensorEntry;
}
