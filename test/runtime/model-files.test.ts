// Model loading: config.json + safetensors (single or sharded) checked tensor by tensor, with errors that
// name the file, the tensor and what is wrong. Bad files are crafted from a valid random model.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FloatDtype } from '../../model/dtypes.ts';
import { writeRandomModel } from '../../model/random.ts';
import { readSafetensors, writeSafetensors } from '../../model/safetensors.ts';
import { buildRuntime, runProgram, type RuntimeBuild } from './build-runtime.ts';

let b: RuntimeBuild;
let checkModel: (dir: string, dtype: 'bf16' | 'fp16' | 'fp32') => Promise<string>;
const root = mkdtempSync(join(tmpdir(), 'md-model-files-'));
let n = 0;

beforeAll(async () => {
  b = buildRuntime();
  ({ checkModel } = await import('../../runtime/node/index.ts'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function model(opts: Partial<Parameters<typeof writeRandomModel>[0]> = {}): string {
  const out = join(root, `m${n++}`);
  writeRandomModel({ seed: 7, dtype: 'bf16', out, ...opts, config: { numLayers: 2, ...opts.config } });
  return out;
}

interface Header {
  [name: string]: { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>;
}

/** Rewrites a safetensors file's header (data section unchanged unless `data` says otherwise). */
function editSafetensors(file: string, edit: (h: Header) => void, data?: (d: Buffer) => Buffer): void {
  const buf = readFileSync(file);
  const len = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + len).toString('utf8')) as Header;
  edit(header);
  const hb = Buffer.from(JSON.stringify(header), 'utf8');
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(hb.length));
  const body = data ? data(buf.subarray(8 + len)) : buf.subarray(8 + len);
  writeFileSync(file, Buffer.concat([lenBuf, hb, body]));
}

/** Rewrites a safetensors file without one tensor (header entry and bytes). */
function dropTensor(file: string, name: string): void {
  const f = readSafetensors(file);
  const keep = f.names().filter((n) => n !== name);
  const data = (n: string) => ({ name: n, dtype: f.info(n).dtype as FloatDtype, shape: f.info(n).shape, data: Float32Array.from(f.toFloat64(n)) });
  writeSafetensors(file, keep.map(data), f.metadata);
}

function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): void {
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  edit(c);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(c));
}

const st = (dir: string) => join(dir, 'model.safetensors');
const T = (name: string) => `model.layers.1.${name}`;

describe('model loading', () => {
  it('accepts valid models in every storage dtype, single-file and sharded', async () => {
    const single = model();
    for (const d of ['bf16', 'fp16', 'fp32'] as const) await expect(checkModel(single, d)).resolves.toBe('llama 2x128');
    const sharded = model({ shards: 3, dtype: 'fp32' });
    await expect(checkModel(sharded, 'bf16')).resolves.toBe('llama 2x128');
    const tied = model({ config: { tieWordEmbeddings: true } });
    await expect(checkModel(tied, 'bf16')).resolves.toBe('llama 2x128');
    const qwen = model({ config: { architecture: 'qwen2', qkvBias: true } });
    await expect(checkModel(qwen, 'fp32')).resolves.toBe('qwen2 2x128');
    const llama31 = model({ config: { ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } } });
    await expect(checkModel(llama31, 'bf16')).resolves.toBe('llama 2x128');
  });

  it('names the config field that is wrong', async () => {
    const dir = model();
    editConfig(dir, (c) => delete c.hidden_size);
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(`${dir}/config.json: field 'hidden_size' is missing`);
    editConfig(dir, (c) => (c.hidden_size = 128.5));
    await expect(checkModel(dir, 'bf16')).rejects.toThrow("field 'hidden_size' must be an integer");
    rmSync(join(dir, 'config.json'));
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(`${dir}/config.json: cannot open`);
  });

  it('refuses hostile JSON in config.json, the index and a safetensors header, naming the file', async () => {
    const dir = model();
    const cfgFile = join(dir, 'config.json');
    const cfg = readFileSync(cfgFile, 'utf8');
    const cases: [string, string][] = [
      [cfg.replace('{', '{"vocab_size": 1,'), `${cfgFile}: duplicate key 'vocab_size' in the top-level object`],
      [cfg.replace(/"rope_theta": ?[^,]+/, '"rope_theta": 1e400'), `${cfgFile}: not valid JSON: a number is malformed or out of range`],
      [cfg.replace(/"vocab_size": ?\d+/, '"vocab_size": 4294967808'), `${cfgFile}: field 'vocab_size' must be an integer from 1 to`],
      [cfg.replace(/"hidden_size": ?\d+/, '"hidden_size": 128.0'), `${cfgFile}: field 'hidden_size' must be an integer, got 128.0`],
      [cfg.replace('{', `{"deep": ${'['.repeat(5000)}${']'.repeat(5000)},`), `${cfgFile}: not valid JSON: nesting deeper than 64`],
      [`${cfg} x`, `${cfgFile}: not valid JSON: bad structure`],
    ];
    for (const [text, message] of cases) {
      writeFileSync(cfgFile, text);
      await expect(checkModel(dir, 'bf16'), message).rejects.toThrow(message);
    }
    writeFileSync(cfgFile, cfg);
    // A tensor listed twice in one header is a duplicate key, not a silent choice of one entry.
    const f = st(dir);
    const buf = readFileSync(f);
    const len = Number(buf.readBigUInt64LE(0));
    const header = buf.subarray(8, 8 + len).toString('utf8');
    const first = header.match(/^\{("[^"]+":\{[^}]*\})/)![1];
    const doubled = Buffer.from(`{${first},${header.slice(1)}`, 'utf8');
    const lenBuf = Buffer.alloc(8);
    lenBuf.writeBigUInt64LE(BigInt(doubled.length));
    writeFileSync(f, Buffer.concat([lenBuf, doubled, buf.subarray(8 + len)]));
    const name = Object.keys(JSON.parse(`{${first}}`))[0];
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(`${f} (header): duplicate key '${name}' in the top-level object`);
  });

  it('reports a missing file, a truncated file and a bad header', async () => {
    const dir = model();
    const f = st(dir);
    const good = readFileSync(f);
    rmSync(f);
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(`${f}: cannot open`);
    writeFileSync(f, good.subarray(0, 5));
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(`${f}: too short for a safetensors file (5 bytes)`);
    writeFileSync(f, good.subarray(0, 100));
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(/header length \d+ runs past the end of the file \(100 bytes\)/);
    const notJson = Buffer.from(good);
    notJson.write('#', 8);
    writeFileSync(f, notJson);
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(`${f} (header): not valid JSON`);
  });

  it('names the tensor and the problem: missing, shape, dtype, offsets', async () => {
    const dir = model();
    const f = st(dir);
    const good = readFileSync(f);
    const cases: [(h: Header) => void, string][] = [
      [
        (h) => {
          const t = h[T('self_attn.k_proj.weight')] as { shape: number[] };
          t.shape = [32, 256];
        },
        `${f}: tensor '${T('self_attn.k_proj.weight')}' has shape [32, 256], config.json implies [64, 128]`,
      ],
      [
        (h) => {
          const t = h['model.norm.weight'] as { dtype: string };
          t.dtype = 'I16';
        },
        `${f}: tensor 'model.norm.weight' has dtype I16; supported: F32, BF16, F16`,
      ],
      [
        (h) => {
          const t = h['model.norm.weight'] as { dtype: string };
          t.dtype = 'Q4';
        },
        `${f}: tensor 'model.norm.weight': unknown dtype 'Q4'`,
      ],
      [
        (h) => {
          const t = h['model.norm.weight'] as { data_offsets: number[] };
          t.data_offsets = [t.data_offsets[0], t.data_offsets[0] + 2];
        },
        `${f}: tensor 'model.norm.weight': data_offsets span 2 bytes but shape [128] of BF16 needs 256`,
      ],
      [
        (h) => {
          const t = h['lm_head.weight'] as { data_offsets: number[] };
          t.data_offsets = [good.length, good.length + 131072];
        },
        `${f}: tensor 'lm_head.weight': data_offsets [${good.length}, ${good.length + 131072}] fall outside the data section`,
      ],
    ];
    for (const [edit, message] of cases) {
      writeFileSync(f, good);
      editSafetensors(f, edit);
      await expect(checkModel(dir, 'bf16')).rejects.toThrow(message);
    }
    // The C API reports the same through md_last_error.
    const r = runProgram(b.capi, ['check', dir, 'bf16']);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain("tensor 'lm_head.weight': data_offsets");
    writeFileSync(f, good);
    expect(runProgram(b.capi, ['check', dir, 'bf16'])).toEqual({ status: 0, stdout: 'ok\n' });
    // A tensor the model needs, absent (its bytes too, so that the file is otherwise valid).
    dropTensor(f, T('mlp.down_proj.weight'));
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(`${dir}: tensor '${T('mlp.down_proj.weight')}' is missing (expected shape [128, 384])`);
  });

  it('refuses a FIFO as config.json, the index or a safetensors file, at once (nothing blocks on it)', async () => {
    for (const name of ['config.json', 'model.safetensors', 'model.safetensors.index.json']) {
      const dir = model();
      rmSync(join(dir, name), { force: true });
      execFileSync('mkfifo', [join(dir, name)]);
      const t0 = Date.now();
      await expect(checkModel(dir, 'bf16'), name).rejects.toThrow(`${dir}/${name}: not a regular file`);
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(() => readSafetensors(join(dir, name)), name).toThrow(`${dir}/${name}: not a regular file`);
    }
  });

  it('refuses tensors that overlap, bytes that belong to no tensor, and a name given twice (the format requires a tiling)', async () => {
    const dir = model();
    const f = st(dir);
    const good = readFileSync(f);
    const [a, b] = ['model.layers.0.input_layernorm.weight', 'model.layers.1.input_layernorm.weight'];
    const offsetsOf = (h: Header, n: string) => (h[n] as { data_offsets: [number, number] }).data_offsets;
    // b read from a's bytes: same size, so every per-tensor check passes; two tensors would share memory.
    editSafetensors(f, (h) => ((h[b] as { data_offsets: number[] }).data_offsets = [...offsetsOf(h, a)]));
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(new RegExp(`^${f}: tensors '(${a}|${b})' \\[\\d+, \\d+\\] and '(${a}|${b})' \\[\\d+, \\d+\\] overlap$`));
    writeFileSync(f, good);
    editSafetensors(f, (h) => delete h[T('mlp.down_proj.weight')]);
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(/model\.safetensors: data bytes \[\d+, \d+\) before tensor '[^']+' belong to no tensor$/);
    writeFileSync(f, good);
    editSafetensors(f, () => {}, (d) => Buffer.concat([d, Buffer.alloc(16)]));
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(new RegExp(`^${f}: data bytes \\[\\d+, \\d+\\) at the end belong to no tensor$`));
  });

  it('refuses a tensor whose byte size overflows 64 bits, even one the model does not use', async () => {
    const dir = model();
    const f = st(dir);
    // 2^31 x 2^31 F64 elements are 2^65 bytes: 0 after a 64-bit wrap, which empty offsets would match.
    editSafetensors(f, (h) => (h.extra = { dtype: 'F64', shape: [2 ** 31, 2 ** 31], data_offsets: [0, 0] }));
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(`${f}: tensor 'extra': shape [2147483648,2147483648] of F64 needs more than 2^64 bytes`);
  });

  it('caps the header at the TypeScript reader\'s 100 MB', async () => {
    const dir = model();
    const f = st(dir);
    // A sparse file: the length field says 100 MB + 1 and the file is long enough to hold it.
    const len = 100_000_001;
    const head = Buffer.alloc(8);
    head.writeBigUInt64LE(BigInt(len));
    writeFileSync(f, head);
    truncateSync(f, 8 + len);
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(`${f}: header length ${len} exceeds the 100000000-byte limit`);
  });

  it('requires the Qwen2 q/k/v biases', async () => {
    const dir = model({ config: { architecture: 'qwen2', qkvBias: true } });
    dropTensor(st(dir), T('self_attn.v_proj.bias'));
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(`tensor '${T('self_attn.v_proj.bias')}' is missing (expected shape [64])`);
  });

  it('checks the shard index against the shards', async () => {
    const dir = model({ shards: 2 });
    const indexFile = join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(readFileSync(indexFile, 'utf8'));
    const [first, second] = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
    const moved = Object.keys(index.weight_map).find((k) => index.weight_map[k] === first)!;
    writeFileSync(indexFile, JSON.stringify({ ...index, weight_map: { ...index.weight_map, [moved]: second } }));
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(`maps tensor '${moved}' to ${dir}/${second}, which does not contain it`);
    writeFileSync(indexFile, JSON.stringify({ weight_map: {} }));
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(`${indexFile}: needs a non-empty object 'weight_map'`);
    writeFileSync(indexFile, JSON.stringify({ ...index, weight_map: { ...index.weight_map, [moved]: 'missing.safetensors' } }));
    await expect(checkModel(dir, 'bf16')).rejects.toThrow(`${dir}/missing.safetensors: cannot open`);
  });

  it('rejects a bad dtype argument', async () => {
    await expect(checkModel(model(), 'int8' as 'bf16')).rejects.toThrow("dtype 'int8' is not bf16, fp16 or fp32");
  });
});
