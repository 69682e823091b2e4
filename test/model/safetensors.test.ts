import fc from 'fast-check';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Checkpoint } from '../../model/checkpoint.ts';
import { bf16BitsToNumber, f16BitsToNumber, f32ToBf16Bits, f32ToF16Bits, type FloatDtype } from '../../model/dtypes.ts';
import {
  INDEX_FILE,
  encodeSafetensors,
  parseSafetensors,
  planShards,
  readSafetensors,
  writeSafetensorsModel,
  type TensorData,
} from '../../model/safetensors.ts';
import { tempDirs } from './tmp.ts';

const tmp = tempDirs('st');

function tensor(name: string, dtype: FloatDtype, shape: number[], seed = 1): TensorData {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = Math.sin(seed * 1000 + i * 0.37) * (1 + i);
  return { name, dtype, shape, data };
}

/** What a value reads back as after storage in `dtype`. */
function stored(dtype: FloatDtype, x: number): number {
  if (dtype === 'F32') return x;
  return dtype === 'BF16' ? bf16BitsToNumber(f32ToBf16Bits(x)) : f16BitsToNumber(f32ToF16Bits(x));
}

/** A file built by hand: header JSON (unpadded) + data bytes. */
function raw(header: unknown, data: Uint8Array | number = 0, headerLen?: number): Uint8Array {
  const h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen ?? h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

describe('safetensors round trip', () => {
  for (const dtype of ['F32', 'BF16', 'F16'] as const) {
    it(`writes and reads ${dtype} tensors of any shape`, () => {
      fc.assert(
        fc.property(fc.array(fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 }), { minLength: 1, maxLength: 4 }), (shapes) => {
          const ts = shapes.map((s, i) => tensor(`t${i}`, dtype, s, i));
          const f = parseSafetensors(encodeSafetensors(ts, { format: 'pt' }), 'mem');
          expect(f.metadata).toEqual({ format: 'pt' });
          for (const t of ts) {
            expect(f.info(t.name).dtype).toBe(dtype);
            expect(f.info(t.name).shape).toEqual(t.shape);
            expect([...f.toFloat64(t.name)]).toEqual([...t.data].map((x) => stored(dtype, x)));
          }
        }),
        { numRuns: 40 },
      );
    });
  }

  it('writes the canonical layout: padded header, aligned tensors, order independent of input', () => {
    const ts = [tensor('b.weight', 'BF16', [3]), tensor('a.weight', 'F32', [2, 2]), tensor('c', 'F16', [1]), tensor('a.bias', 'F32', [3])];
    const bytes = encodeSafetensors(ts);
    expect(bytes).toEqual(encodeSafetensors([...ts].reverse()));
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const header = Buffer.from(bytes.subarray(8, 8 + n)).toString();
    expect(header.trimEnd().endsWith('}')).toBe(true);
    expect(header.slice(header.trimEnd().length)).toMatch(/^ *$/);
    // F32 first (by name), then the 2-byte dtypes by name: every tensor starts at a multiple of its size.
    expect(Object.keys(JSON.parse(header))).toEqual(['a.bias', 'a.weight', 'b.weight', 'c']);
    const f = parseSafetensors(bytes, 'mem');
    for (const name of f.names()) {
      const t = f.info(name);
      expect((8 + n + t.begin) % (t.dtype === 'F32' ? 4 : 2)).toBe(0);
    }
  });

  it('rejects bad tensors on write', () => {
    expect(() => encodeSafetensors([tensor('x', 'F32', [2]), tensor('x', 'F32', [1])])).toThrow('tensor "x" given twice');
    expect(() => encodeSafetensors([{ name: 'y', dtype: 'F32', shape: [2, 2], data: new Float32Array(3) }])).toThrow(
      'tensor "y": shape [2, 2] has 4 elements but data has 3',
    );
    expect(() => encodeSafetensors([tensor('__metadata__', 'F32', [1])])).toThrow('invalid tensor name');
  });
});

describe('sharded checkpoints', () => {
  const model = () => [
    tensor('model.embed_tokens.weight', 'BF16', [16, 8]),
    ...[0, 1, 2].flatMap((l) => [tensor(`model.layers.${l}.a.weight`, 'BF16', [8, 8], l), tensor(`model.layers.${l}.norm.weight`, 'BF16', [8], l)]),
    tensor('model.norm.weight', 'BF16', [8]),
    tensor('lm_head.weight', 'BF16', [16, 8], 9),
  ];

  it('splits into contiguous, non-empty, balanced shards', () => {
    const ts = model();
    for (let shards = 1; shards <= ts.length; shards++) {
      const plan = planShards(ts, shards);
      expect(plan[0]).toBe(0);
      expect(plan[plan.length - 1]).toBe(shards - 1);
      for (let i = 1; i < plan.length; i++) expect(plan[i] - plan[i - 1]).toBeGreaterThanOrEqual(0);
      expect(new Set(plan).size).toBe(shards);
    }
    expect(() => planShards(ts, ts.length + 1)).toThrow(`cannot split ${ts.length} tensors into ${ts.length + 1} non-empty shards`);
  });

  it('writes shards + index that read back as the same checkpoint', () => {
    const ts = model();
    const single = tmp();
    const sharded = tmp();
    expect(writeSafetensorsModel(single, ts).files).toEqual(['model.safetensors']);
    const w = writeSafetensorsModel(sharded, ts, { shards: 3 });
    expect(w.files).toEqual(['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']);
    expect(readdirSync(sharded).sort()).toEqual([...w.files, INDEX_FILE].sort());
    const index = JSON.parse(readFileSync(join(sharded, INDEX_FILE), 'utf8'));
    expect(index.metadata.total_size).toBe(ts.reduce((s, t) => s + t.data.length * 2, 0));
    expect(Object.keys(index.weight_map)).toEqual(ts.map((t) => t.name).sort());
    const a = Checkpoint.open(single);
    const b = Checkpoint.open(sharded);
    expect(b.names()).toEqual(a.names());
    for (const name of a.names()) expect(b.float64(name)).toEqual(a.float64(name));
    expect(b.info('lm_head.weight').file).toBe(join(sharded, 'model-00003-of-00003.safetensors'));
  });

  it('reports an index that disagrees with its shards', () => {
    const dir = tmp();
    writeSafetensorsModel(dir, model(), { shards: 2 });
    const indexPath = join(dir, INDEX_FILE);
    const index = JSON.parse(readFileSync(indexPath, 'utf8'));
    const edit = (f: (m: Record<string, string>) => void) => {
      const copy = structuredClone(index);
      f(copy.weight_map);
      writeFileSync(indexPath, JSON.stringify(copy));
    };
    edit((m) => (m['model.norm.weight'] = 'model-00001-of-00002.safetensors'));
    expect(() => Checkpoint.open(dir)).toThrow(`tensor "model.norm.weight" is listed in model-00001-of-00002.safetensors but that file has no such tensor`);
    edit((m) => (m['lm_head.weight'] = 'missing.safetensors'));
    expect(() => Checkpoint.open(dir)).toThrow('tensor "lm_head.weight" is in missing.safetensors, which does not exist');
    edit((m) => delete m['model.norm.weight']);
    expect(() => Checkpoint.open(dir)).toThrow(`model-00002-of-00002.safetensors: tensor "model.norm.weight" is not listed for this file`);
    writeFileSync(indexPath, '{"weight_map": [');
    expect(() => Checkpoint.open(dir)).toThrow(`${indexPath}: not valid JSON`);
    expect(() => Checkpoint.open(tmp())).toThrow('no model.safetensors or model.safetensors.index.json');
    expect(() => Checkpoint.open(dir).float64('nope')).toThrow();
  });
});

describe('safetensors corruption', () => {
  const ok = { t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const cases: [string, Uint8Array, string][] = [
    ['too short', new Uint8Array(5), 'bad.st: file is 5 bytes, too short for the 8-byte header length'],
    ['header past EOF', raw(ok, 8, 1000), 'bad.st: header length 1000 runs past the end of the file'],
    ['bad JSON', raw('{"t": {', 8), 'bad.st (header): not valid JSON'],
    ['a name given twice', raw('{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', 8), "bad.st (header): duplicate key 't' in the top-level object"],
    ['not an object', raw('[1, 2]', 0), 'bad.st: header JSON must be an object of tensors'],
    ['unknown dtype', raw({ t: { dtype: 'F7', shape: [2], data_offsets: [0, 8] } }, 8), 'bad.st: tensor "t": unknown dtype "F7"'],
    ['missing dtype', raw({ t: { shape: [2], data_offsets: [0, 8] } }, 8), 'bad.st: tensor "t": missing or non-string dtype'],
    ['bad shape', raw({ t: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, 8), 'bad.st: tensor "t": shape must be an array of non-negative integers'],
    ['bad offsets', raw({ t: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, 8), 'bad.st: tensor "t": data_offsets must be [begin, end]'],
    ['offsets past the end', raw({ t: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8), 'bad.st: tensor "t": data_offsets [0, 16] run past the end of the data (8 bytes)'],
    ['size mismatch', raw({ t: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8), 'bad.st: tensor "t": data_offsets [0, 8] hold 8 bytes but shape [3] of F32 needs 12'],
    [
      'overlap',
      raw({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12),
      'bad.st: tensors "a" [0, 8] and "b" [4, 12] overlap',
    ],
    ['hole', raw({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), 'bad.st: data bytes [0, 4) before tensor "a" belong to no tensor'],
    ['trailing bytes', raw(ok, 12), 'bad.st: data bytes [8, 12) at the end belong to no tensor'],
    ['bad metadata', raw({ __metadata__: { format: 1 }, ...ok }, 8), 'bad.st: "__metadata__" must be an object of string values'],
  ];
  for (const [what, bytes, message] of cases) {
    it(`${what}: ${message}`, () => {
      expect(() => parseSafetensors(bytes, 'bad.st')).toThrow(message);
    });
  }

  it('names the file when reading from disk', () => {
    const path = join(tmp(), 'x.safetensors');
    writeFileSync(path, raw(ok, 4));
    expect(() => readSafetensors(path)).toThrow(`${path}: tensor "t": data_offsets [0, 8] run past the end of the data (4 bytes)`);
    expect(() => readSafetensors(path + '.missing')).toThrow(`${path}.missing: cannot read`);
  });

  it('never throws anything but a clear error on random corruption', () => {
    const good = encodeSafetensors([tensor('a', 'F32', [3]), tensor('b', 'BF16', [2, 2])]);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: good.length - 1 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: good.length }), (at, byte, len) => {
        const bad = good.slice(0, len);
        if (at < len) bad[at] = byte;
        try {
          const f = parseSafetensors(bad, 'fuzz.st');
          for (const n of f.names()) f.toFloat64(n);
        } catch (e) {
          expect((e as Error).message).toMatch(/^fuzz\.st( \(header\))?: /);
        }
      }),
      { numRuns: 500 },
    );
  });
});
