import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { modelRandomCommand } from '../../cli/model-random.ts';
import { memoryIo } from '../../lib/io.ts';
import { readHfConfig } from '../../codegen/model-config.ts';
import { Checkpoint } from '../../model/checkpoint.ts';
import { LOCAL_ATTENTION, RANDOM_PRESETS, resolveRandomConfig, writeRandomModel } from '../../model/random.ts';
import { ropeInvFreq } from '../../codegen/rope.ts';
import { loadTokenizer } from '../../model/tokenizer.ts';
import { tempDirs } from './tmp.ts';

const tmp = tempDirs('rand');
/** Byte-identical directories (Buffer.equals: element-wise deep equality is slow on megabytes). */
function sameFiles(a: string, b: string): boolean {
  const names = readdirSync(a).sort();
  return names.join() === readdirSync(b).sort().join() && names.every((f) => readFileSync(join(a, f)).equals(readFileSync(join(b, f))));
}
const sameValues = (x: Float64Array, y: Float64Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength));
const tiny = { preset: 'tiny', dtype: 'bf16' } as const;

describe('writeRandomModel', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    const a = tmp();
    const b = tmp();
    const c = tmp();
    writeRandomModel({ ...tiny, seed: 42, out: a });
    writeRandomModel({ ...tiny, seed: 42, out: b });
    writeRandomModel({ ...tiny, seed: 43, out: c });
    expect(sameFiles(a, b)).toBe(true);
    expect(sameFiles(a, c)).toBe(false);
    const ca = Checkpoint.open(a);
    const cc = Checkpoint.open(c);
    expect(ca.float64('model.layers.0.self_attn.q_proj.weight')).not.toEqual(cc.float64('model.layers.0.self_attn.q_proj.weight'));
    // The tokenizer depends on the vocabulary only.
    expect(readFileSync(join(a, 'tokenizer.json')).equals(readFileSync(join(c, 'tokenizer.json')))).toBe(true);
  });

  it('writes an HF Llama directory: config.json, named tensors of the right shapes, tokenizer', async () => {
    const dir = tmp();
    const info = writeRandomModel({ ...tiny, seed: 1, out: dir });
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const hf = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(hf).toMatchObject({ model_type: 'llama', torch_dtype: 'bfloat16', bos_token_id: 510, eos_token_id: 511, vocab_size: 512 });
    expect(readHfConfig(readFileSync(join(dir, 'config.json'), 'utf8'), 'config.json')).toEqual(info.config);
    const ck = Checkpoint.open(dir);
    const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim: D, vocabSize: V, numLayers } = info.config;
    expect(ck.info('model.embed_tokens.weight')).toMatchObject({ dtype: 'BF16', shape: [V, H] });
    expect(ck.info('lm_head.weight').shape).toEqual([V, H]);
    expect(ck.info('model.layers.1.self_attn.q_proj.weight').shape).toEqual([numHeads * D, H]);
    expect(ck.info('model.layers.1.self_attn.k_proj.weight').shape).toEqual([numKvHeads * D, H]);
    expect(ck.info('model.layers.1.self_attn.o_proj.weight').shape).toEqual([H, numHeads * D]);
    expect(ck.info('model.layers.1.mlp.down_proj.weight').shape).toEqual([H, I]);
    expect(ck.names()).toHaveLength(2 + 9 * numLayers + 1);
    expect(ck.names().some((n) => n.endsWith('.bias'))).toBe(false);
    expect(info.parameters).toBe(ck.names().reduce((s, n) => s + ck.info(n).shape.reduce((a, b) => a * b, 1), 0));
    const tok = await loadTokenizer(dir);
    expect(tok.vocabSize).toBe(V);
    expect([tok.bos, tok.eos]).toEqual([info.bosId, info.eosId]);
  });

  it('keeps weights at unit scale: norms near 1, projections ~ 1/sqrt(fan_in)', () => {
    const dir = tmp();
    writeRandomModel({ ...tiny, dtype: 'fp32', seed: 5, out: dir });
    const ck = Checkpoint.open(dir);
    const stats = (name: string) => {
      const x = ck.float64(name);
      const mean = x.reduce((a, b) => a + b, 0) / x.length;
      return { mean, std: Math.sqrt(x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length) };
    };
    const norm = stats('model.layers.0.input_layernorm.weight');
    expect(norm.mean).toBeCloseTo(1, 1);
    expect(norm.std).toBeGreaterThan(0.05);
    expect(norm.std).toBeLessThan(0.15);
    const q = stats('model.layers.0.self_attn.q_proj.weight');
    expect(q.std * Math.sqrt(128)).toBeCloseTo(1, 1);
    const down = stats('model.layers.0.mlp.down_proj.weight');
    expect(down.std * Math.sqrt(384)).toBeCloseTo(1, 1);
  });

  it('covers tied embeddings, Qwen2 biases, other dtypes and shards', () => {
    const tied = tmp();
    writeRandomModel({ preset: 'tiny', config: { tieWordEmbeddings: true, vocabSize: 64 }, dtype: 'fp16', seed: 2, out: tied });
    expect(Checkpoint.open(tied).has('lm_head.weight')).toBe(false);
    expect(Checkpoint.open(tied).info('model.norm.weight').dtype).toBe('F16');
    expect(JSON.parse(readFileSync(join(tied, 'config.json'), 'utf8')).tie_word_embeddings).toBe(true);

    const qwen = tmp();
    writeRandomModel({ preset: 'tiny', config: { architecture: 'qwen2' }, dtype: 'fp32', seed: 2, out: qwen });
    const ck = Checkpoint.open(qwen);
    expect(ck.info('model.layers.0.self_attn.k_proj.bias').shape).toEqual([2 * 32]);
    expect(ck.has('model.layers.1.self_attn.o_proj.bias')).toBe(false);
    expect(JSON.parse(readFileSync(join(qwen, 'config.json'), 'utf8')).architectures).toEqual(['Qwen2ForCausalLM']);

    const one = tmp();
    const three = tmp();
    writeRandomModel({ ...tiny, seed: 9, out: one });
    writeRandomModel({ ...tiny, seed: 9, out: three, shards: 3 });
    const a = Checkpoint.open(one);
    const b = Checkpoint.open(three);
    expect(b.names()).toEqual(a.names());
    for (const n of a.names()) expect(sameValues(b.float64(n), a.float64(n)), n).toBe(true);
    // Rewriting a directory with fewer shards leaves no stale files behind.
    writeRandomModel({ ...tiny, seed: 9, out: three });
    expect(readdirSync(three)).not.toContain('model.safetensors.index.json');
  });

  it('rejects inconsistent configurations with the field named', () => {
    const out = tmp();
    expect(() => writeRandomModel({ ...tiny, seed: 1, out, config: { numKvHeads: 3 } })).toThrow("field 'num_key_value_heads' (3) must divide num_attention_heads (4)");
    expect(() => writeRandomModel({ ...tiny, seed: 1, out, config: { qkvBias: true } })).toThrow('config.qkvBias: llama models have no q/k/v biases');
    expect(() => writeRandomModel({ ...tiny, seed: 1.5, out })).toThrow('seed must be an integer, got 1.5');
    expect(() => writeRandomModel({ ...tiny, seed: 1, out, dtype: 'int8' as never })).toThrow('dtype must be fp32, bf16 or fp16');
  });
});

describe('benchmark presets', () => {
  it('mha and gqa are the miniature LLaMA-2-7B-32K of issue 8, local is mha with q/k/v biases', () => {
    expect(RANDOM_PRESETS).toEqual(['tiny', 'small', 'mha', 'gqa', 'local']);
    const shape = { numLayers: 4, hiddenSize: 512, numHeads: 8, headDim: 64, intermediateSize: 1536, vocabSize: 4096, tieWordEmbeddings: false };
    expect(resolveRandomConfig('mha')).toMatchObject({ ...shape, name: 'mha', architecture: 'llama', numKvHeads: 8, qkvBias: false });
    expect(resolveRandomConfig('gqa')).toMatchObject({ ...shape, name: 'gqa', architecture: 'llama', numKvHeads: 2, qkvBias: false });
    expect(resolveRandomConfig('local')).toMatchObject({ ...shape, name: 'local', architecture: 'qwen2', numKvHeads: 8, qkvBias: true });
    // 32K prompts plus decode tokens fit the positions.
    for (const p of ['mha', 'gqa', 'local'] as const) expect(resolveRandomConfig(p).maxPositionEmbeddings).toBeGreaterThan(32768 + 1024);
  });

  it('writes each preset deterministically per seed, with the shapes its config names', () => {
    // Fewer layers and a smaller vocabulary keep the files small; the construction is per layer.
    const config = { numLayers: 1, vocabSize: 256 };
    for (const preset of ['mha', 'gqa', 'local'] as const) {
      const [a, b, c] = [tmp(), tmp(), tmp()];
      writeRandomModel({ preset, config, dtype: 'bf16', seed: 7, out: a });
      writeRandomModel({ preset, config, dtype: 'bf16', seed: 7, out: b });
      const info = writeRandomModel({ preset, config, dtype: 'bf16', seed: 8, out: c });
      expect(sameFiles(a, b), preset).toBe(true);
      expect(sameFiles(a, c), preset).toBe(false);
      const ck = Checkpoint.open(a);
      const { numHeads, numKvHeads, headDim: D, hiddenSize: H } = info.config;
      expect(ck.info('model.layers.0.self_attn.q_proj.weight').shape).toEqual([numHeads * D, H]);
      expect(ck.info('model.layers.0.self_attn.k_proj.weight').shape).toEqual([numKvHeads * D, H]);
      expect(ck.has('model.layers.0.self_attn.k_proj.bias')).toBe(preset === 'local');
      expect(ck.has('lm_head.weight')).toBe(true);
    }
    expect(() => writeRandomModel({ preset: 'mha', seed: 1, dtype: 'bf16', out: tmp(), local: { locality: 1 } })).toThrow('options.local applies to the local preset only');
  });

  it('local: positional and sink logits make sink + recent positions take the attention (docs/BENCH.md)', () => {
    const dir = tmp();
    const info = writeRandomModel({ preset: 'local', config: { numLayers: 2, vocabSize: 256 }, dtype: 'fp32', seed: 3, out: dir });
    const c = info.config;
    const ck = Checkpoint.open(dir);
    const H = c.hiddenSize;
    const D = c.headDim;
    const P = D / 2;
    const inv = ropeInvFreq(c);
    const p = LOCAL_ATTENTION;
    const nPos = P - p.sinkPairs - p.contentPairs;
    const embed = ck.float64('model.embed_tokens.weight');
    // Dimension 0 marks BOS alone, and nothing writes it.
    for (let v = 0; v < c.vocabSize; v++) expect(embed[v * H] !== 0, `token ${v}`).toBe(v === info.bosId);
    for (let l = 0; l < c.numLayers; l++) {
      for (const w of ['self_attn.o_proj', 'mlp.down_proj']) expect(ck.float64(`model.layers.${l}.${w}.weight`).slice(0, w.startsWith('mlp') ? c.intermediateSize : H).every((x) => x === 0)).toBe(true);
      const qb = ck.float64(`model.layers.${l}.self_attn.q_proj.bias`);
      const kb = ck.float64(`model.layers.${l}.self_attn.k_proj.bias`);
      const kw = ck.float64(`model.layers.${l}.self_attn.k_proj.weight`);
      const bosNorm = ck.float64(`model.layers.${l}.input_layernorm.weight`)[0];
      // BOS's dimension 0 after the norm (its content about unit scale): what the sink key weights read.
      const bosRead = (bosNorm * embed[info.bosId * H]) / Math.sqrt(p.bos * p.bos + 1);
      for (let h = 0; h < c.numHeads; h++) {
        const g = Math.floor(h / (c.numHeads / c.numKvHeads));
        const positional = (d: number) => Array.from({ length: nPos }, (_, j) => qb[h * D + j] * kb[g * D + j] * Math.cos(inv[j] * d)).reduce((a, b) => a + b) / Math.sqrt(D);
        let sinkLogit = 0;
        for (let j = P - p.sinkPairs; j < P; j++) sinkLogit += (qb[h * D + j] * kw[(g * D + j) * H] * bosRead) / Math.sqrt(D);
        expect(sinkLogit).toBeCloseTo(positional(0) + p.sink, 4);
        // BOS's key carries no positional part, so its logit does not fall with distance.
        for (let j = 0; j < nPos; j++) expect(Math.abs(kb[g * D + j] + kw[(g * D + j) * H] * bosRead)).toBeLessThan(1e-5 * kb[g * D + j]);
        // A query at 16K, content aside: BOS, and the last 508 positions, take nearly all the weight.
        const m = 16384;
        const top = positional(0) + Math.abs(p.sink) + 1;
        const w = Array.from({ length: m + 1 }, (_, n) => Math.exp((n === 0 ? sinkLogit : positional(m - n)) - top));
        const total = w.reduce((a, b) => a + b);
        const kept = w.slice(0, 4).reduce((a, b) => a + b) + w.slice(m + 1 - 508).reduce((a, b) => a + b);
        expect(kept / total, `layer ${l} head ${h}`).toBeGreaterThan(0.9);
        expect(kept / total, `layer ${l} head ${h}`).toBeLessThan(0.9999);
        expect(w[0] / total).toBeGreaterThan(0.05);
      }
    }
    // BOS is never generated.
    expect(ck.float64('lm_head.weight').slice(info.bosId * H, (info.bosId + 1) * H).every((x) => x === 0)).toBe(true);
  });
});

describe('magicdec model random', () => {
  it('writes the model and prints a summary', async () => {
    const out = tmp();
    const io = memoryIo();
    const info = await modelRandomCommand({ preset: 'tiny', seed: '3', out, dtype: 'fp16', shards: '2' }, io);
    expect(info.files).toHaveLength(2);
    expect(io.out()).toContain(`${out}: random llama model 'tiny' (seed 3, fp16)`);
    expect(io.out()).toContain('vocab 512 (byte-level BPE, bos 510, eos 511), 2 safetensors files');
  });

  it('rejects bad flags with a user error', async () => {
    const out = tmp();
    await expect(modelRandomCommand({ preset: 'huge', seed: 1, out })).rejects.toThrow("--preset must be one of tiny, small, mha, gqa, local, got 'huge'");
    await expect(modelRandomCommand({ seed: 'x', out })).rejects.toThrow("--seed must be a whole number, got 'x'");
    await expect(modelRandomCommand({ seed: 1, out, dtype: 'fp8' })).rejects.toThrow('--dtype must be one of fp32, bf16, fp16');
    await expect(modelRandomCommand({ seed: 1, out, shards: '0' })).rejects.toThrow('--shards 0 is out of range 1..64');
    await expect(modelRandomCommand({ seed: 1 })).rejects.toThrow('--out <dir> is required');
    const file = join(out, 'file');
    writeFileSync(file, '');
    await expect(modelRandomCommand({ seed: 1, out: file })).rejects.toThrow(`cannot write a random model to ${file}`);
  });
});
