// The safetensors format: an 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}, then the data;
// offsets are relative to the start of the data. The reader is as strict as the Rust reference
// implementation (tensors must tile the data exactly) and names the file and tensor in every error.
// The writer emits the canonical layout: header padded with spaces to a multiple of 8 bytes, tensors
// ordered by element size (largest first, so every tensor is naturally aligned) and then by name.

import { writeFileSync } from 'node:fs';
import { parseStrictJson, readRegularBytes } from '../codegen/strict-json.ts';
import { DTYPE_BYTES, decodeToFloat64, encodeFloats, isDtype, type Dtype, type FloatDtype } from './dtypes.ts';

/** Same bound as the Rust implementation: a header this large is corruption, not a model. */
const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

export interface TensorEntry {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  /** Byte range [begin, end) relative to the start of the data section. */
  readonly begin: number;
  readonly end: number;
}

export class SafetensorsFile {
  constructor(
    /** The path (or label) used in error messages. */
    readonly file: string,
    private readonly buf: Uint8Array,
    private readonly dataStart: number,
    readonly tensors: ReadonlyMap<string, TensorEntry>,
    readonly metadata: Readonly<Record<string, string>> | undefined,
  ) {}

  names(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): TensorEntry {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(`${this.file}: no tensor named "${name}"`);
    return t;
  }

  /** The tensor's raw little-endian bytes (a view into the file buffer, not a copy). */
  bytes(name: string): Uint8Array {
    const t = this.info(name);
    return this.buf.subarray(this.dataStart + t.begin, this.dataStart + t.end);
  }

  /** The tensor's values as float64 (exact for F64/F32/BF16/F16). */
  toFloat64(name: string): Float64Array {
    const t = this.info(name);
    // Copy so the DataView is aligned-agnostic and independent of the file buffer.
    return decodeToFloat64(t.dtype, this.bytes(name).slice(), `${this.file}: tensor "${name}"`);
  }
}

function fail(file: string, msg: string): never {
  throw new SafetensorsError(`${file}: ${msg}`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Parse and validate a whole safetensors file held in memory. `file` names it in errors. */
export function parseSafetensors(buf: Uint8Array, file: string): SafetensorsFile {
  if (buf.byteLength < 8) fail(file, `file is ${buf.byteLength} bytes, too short for the 8-byte header length`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n64 = dv.getBigUint64(0, true);
  if (n64 > BigInt(buf.byteLength - 8)) {
    fail(file, `header length ${n64} runs past the end of the file (${buf.byteLength} bytes)`);
  }
  const n = Number(n64);
  if (n > MAX_HEADER_BYTES) fail(file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  let header: unknown;
  try {
    // Strict like the runtime's reader (codegen/strict-json.ts): a tensor named twice is refused.
    const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buf.subarray(8, 8 + n));
    parseStrictJson(text, `${file} (header)`);
    header = JSON.parse(text);
  } catch (e) {
    const m = (e as Error).message;
    throw new SafetensorsError(m.startsWith(`${file} (header): `) ? m : `${file} (header): not valid JSON: the text is not valid UTF-8`);
  }
  if (!isPlainObject(header)) fail(file, 'header JSON must be an object of tensors');

  const dataStart = 8 + n;
  const dataLen = buf.byteLength - dataStart;
  let metadata: Record<string, string> | undefined;
  const tensors = new Map<string, TensorEntry>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isPlainObject(raw) || !Object.values(raw).every((v) => typeof v === 'string')) {
        fail(file, '"__metadata__" must be an object of string values');
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    const where = `tensor "${name}"`;
    if (!isPlainObject(raw)) fail(file, `${where}: entry must be an object with dtype, shape, data_offsets`);
    const { dtype, shape, data_offsets: offsets } = raw;
    if (typeof dtype !== 'string') fail(file, `${where}: missing or non-string dtype`);
    if (!isDtype(dtype)) fail(file, `${where}: unknown dtype "${dtype}"`);
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      fail(file, `${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
      fail(file, `${where}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLen) {
      fail(file, `${where}: data_offsets [${begin}, ${end}] run past the end of the data (${dataLen} bytes)`);
    }
    const need = (shape as number[]).reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    if (end - begin !== need) {
      fail(file, `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but shape [${shape.join(', ')}] of ${dtype} needs ${need}`);
    }
    tensors.set(name, { name, dtype, shape: shape as number[], begin, end });
  }

  // The tensors must tile the data exactly: no overlap, no hole, no trailing bytes.
  const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: TensorEntry | undefined;
  for (const t of sorted) {
    if (t.begin < cursor) {
      fail(file, `tensors "${prev!.name}" [${prev!.begin}, ${prev!.end}] and "${t.name}" [${t.begin}, ${t.end}] overlap`);
    }
    if (t.begin > cursor) fail(file, `data bytes [${cursor}, ${t.begin}) before tensor "${t.name}" belong to no tensor`);
    cursor = t.end;
    prev = t;
  }
  if (cursor !== dataLen) fail(file, `data bytes [${cursor}, ${dataLen}) at the end belong to no tensor`);
  return new SafetensorsFile(file, buf, dataStart, tensors, metadata);
}

export function readSafetensors(path: string): SafetensorsFile {
  let buf: Buffer;
  try {
    buf = readRegularBytes(path); // a FIFO is refused, not waited on
  } catch (e) {
    const m = (e as Error).message;
    throw new SafetensorsError(m.startsWith(`${path}: `) ? m : `${path}: cannot read: ${m}`);
  }
  return parseSafetensors(buf, path);
}

/** A tensor to write: fp32 values, stored as `dtype`. */
export interface TensorData {
  readonly name: string;
  readonly dtype: FloatDtype;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

function checkTensorData(tensors: readonly TensorData[]): void {
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === '' || t.name === '__metadata__') throw new SafetensorsError(`invalid tensor name "${t.name}"`);
    if (seen.has(t.name)) throw new SafetensorsError(`tensor "${t.name}" given twice`);
    seen.add(t.name);
    if (!t.shape.every((d) => isCount(d))) throw new SafetensorsError(`tensor "${t.name}": bad shape ${JSON.stringify(t.shape)}`);
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) {
      throw new SafetensorsError(`tensor "${t.name}": shape [${t.shape.join(', ')}] has ${count} elements but data has ${t.data.length}`);
    }
  }
}

function byteSize(t: TensorData): number {
  return t.data.length * DTYPE_BYTES[t.dtype];
}

/** Serialise tensors to the canonical safetensors layout (independent of the order they are given in). */
export function encodeSafetensors(tensors: readonly TensorData[], metadata?: Readonly<Record<string, string>>): Uint8Array {
  checkTensorData(tensors);
  const ordered = [...tensors].sort(
    (a, b) => DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of ordered) {
    const size = byteSize(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  const rawLen = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (rawLen % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.byteLength;
  for (const t of ordered) {
    out.set(encodeFloats(t.dtype, t.data), at);
    at += byteSize(t);
  }
  return out;
}

export function writeSafetensors(path: string, tensors: readonly TensorData[], metadata?: Readonly<Record<string, string>>): void {
  writeFileSync(path, encodeSafetensors(tensors, metadata));
}

export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';

export function shardFileName(i: number, shards: number): string {
  const pad = (k: number) => String(k).padStart(5, '0');
  return `model-${pad(i + 1)}-of-${pad(shards)}.safetensors`;
}

/**
 * Split tensors, in the given order, into `shards` contiguous non-empty groups of about equal byte size.
 * Returns the shard index of each tensor.
 */
export function planShards(tensors: readonly TensorData[], shards: number): number[] {
  if (!Number.isInteger(shards) || shards < 1) throw new SafetensorsError(`shards must be a positive integer, got ${shards}`);
  if (shards > tensors.length) throw new SafetensorsError(`cannot split ${tensors.length} tensors into ${shards} non-empty shards`);
  const total = tensors.reduce((s, t) => s + byteSize(t), 0);
  const plan: number[] = [];
  let k = 0;
  let inShard = 0;
  let cum = 0;
  tensors.forEach((t, i) => {
    const size = byteSize(t);
    const mustMove = tensors.length - i <= shards - 1 - k; // every remaining tensor needs a shard of its own
    const full = cum + size > (total * (k + 1)) / shards;
    if (inShard > 0 && k < shards - 1 && (mustMove || full)) {
      k++;
      inShard = 0;
    }
    plan.push(k);
    inShard++;
    cum += size;
  });
  return plan;
}

export interface WrittenModelFiles {
  /** Safetensors file names (relative to the directory), in shard order. */
  readonly files: string[];
  /** The index file name when sharded. */
  readonly index?: string;
}

/**
 * Write a model's tensors into `dir`: one `model.safetensors` when shards is 1, else
 * `model-0000k-of-0000n.safetensors` plus `model.safetensors.index.json` (Hugging Face layout).
 */
export function writeSafetensorsModel(
  dir: string,
  tensors: readonly TensorData[],
  opts: { shards?: number; metadata?: Readonly<Record<string, string>> } = {},
): WrittenModelFiles {
  const shards = opts.shards ?? 1;
  checkTensorData(tensors);
  const plan = planShards(tensors, shards);
  if (shards === 1) {
    writeSafetensors(`${dir}/${SINGLE_FILE}`, tensors, opts.metadata);
    return { files: [SINGLE_FILE] };
  }
  const files = Array.from({ length: shards }, (_, i) => shardFileName(i, shards));
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const group = tensors.filter((_, i) => plan[i] === s);
    writeSafetensors(`${dir}/${files[s]}`, group, opts.metadata);
  }
  const names = tensors.map((t, i) => [t.name, files[plan[i]]] as const).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [name, f] of names) weightMap[name] = f;
  const index = { metadata: { total_size: tensors.reduce((s, t) => s + byteSize(t), 0) }, weight_map: weightMap };
  writeFileSync(`${dir}/${INDEX_FILE}`, JSON.stringify(index, null, 2) + '\n');
  return { files, index: INDEX_FILE };
}
