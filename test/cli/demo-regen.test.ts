// `magicdec demo` (what `npm start` runs) and `regen`'s rewrite of a generated/ directory.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatedTree, regenerate } from '../../cli/generated-modules.ts';
import { firstDifference, LONG_BATCH } from '../../cli/demo.ts';
import { memoryIo } from '../../lib/io.ts';
import { main } from '../../cli/main.ts';
import { readTree } from '../../codegen/module.ts';
import { writeRandomModel } from '../../model/random.ts';
import { buildRuntime } from '../runtime/build-runtime.ts';

let tmp: string;
beforeAll(() => {
  buildRuntime();
  tmp = mkdtempSync(join(tmpdir(), 'magicdec-demo-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('demo', () => {
  it('writes the default sm_90 module and builds the tiny CPU one, then reuses the cache', async () => {
    // --long-context shortens case 2's prompts; the module it compiles is the one `npm start` runs.
    const args = ['demo', '--out', join(tmp, 'out'), '--cache', join(tmp, 'cache'), '--long-context', '1024'];
    const io = memoryIo();
    expect(await main(args, io)).toBe(0);
    const sm90 = JSON.parse(readFileSync(join(tmp, 'out/default-sm_90/manifest.json'), 'utf8'));
    const cpu = JSON.parse(readFileSync(join(tmp, 'out/tiny-cpu/manifest.json'), 'utf8'));
    expect([sm90.arch, sm90.model.name, cpu.arch, cpu.model.name, cpu.dtype]).toEqual(['sm_90', 'llama-3.1-8b', 'cpu', 'tiny', 'fp32']);
    expect(io.out()).toContain(`${sm90.name}: ${sm90.kernels.length} kernels`);
    expect(io.out()).toMatch(/^library: .+libmodule\.so \(compiled\)$/m);
    expect(io.err()).toMatch(/^compiling tiny\.cpu\.fp32\S* \[\d+\/\d+\] /m);
    // The tiny model is written once, then a batch is decoded both ways with identical tokens.
    expect(io.err()).toMatch(/^writing the random tiny model \(seed 1\) to .*tiny-model$/m);
    expect(io.err()).toMatch(/^case 1: decoding 8 prompts \(12, 40, 110, 260, 500, 900, 1500, 2400 tokens\) autoregressively$/m);
    expect(io.out()).toMatch(/^case 1, short context: random tiny model, 8 prompts of .* tokens, 64 new tokens each: speculative tokens == autoregressive tokens$/m);
    const [short, long] = io.out().split(/^case 2, /m);
    expect(long, io.out()).toBeDefined();
    expect(short).toMatch(/^mode +decode tokens\/s +acceptance +tokens\/round +speedup$/m);
    expect(short).toMatch(/^autoregressive +\d[\d.]* +- +1 +1\.00x$/m);
    const spec = /^speculative +\d[\d.]* +([\d.]+) +([\d.]+) +\d+\.\d\dx$/m.exec(short);
    expect(spec, io.out()).not.toBeNull();
    // Prompts longer than the draft's 512-token budget make it miss sometimes; short ones never do.
    const [acceptance, perRound] = [Number(spec![1]), Number(spec![2])];
    expect(acceptance).toBeGreaterThan(0.3);
    expect(acceptance).toBeLessThan(1);
    expect(perRound).toBeGreaterThan(1);
    expect(perRound).toBeLessThanOrEqual(4);

    // Case 2: the SYNTHETIC local model, labelled so, at long context, with its own module; tokens identical.
    expect(io.err()).toMatch(/^writing the SYNTHETIC random local model \(seed 1, bf16; how it is built: docs\/BENCH\.md\) to .*local-model$/m);
    expect(io.out()).toMatch(new RegExp(`^local\\.cpu\\.bf16\\S*: the default passes on the local model for the cpu \\(bf16, batch buckets ${LONG_BATCH}, 64\\)$`, 'm'));
    expect(long).toMatch(new RegExp(`^long context: SYNTHETIC local model \\(.*not a trained model\\), ${LONG_BATCH} prompts of 1024 tokens, 64 new tokens each: speculative tokens == autoregressive tokens$`, 'm'));
    expect(long).toMatch(/^autoregressive +\d[\d.]* +- +1 +1\.00x$/m);
    const longSpec = /^speculative +\d[\d.]* +([\d.]+) +([\d.]+) +\d+\.\d\dx$/m.exec(long);
    expect(longSpec, io.out()).not.toBeNull();
    expect(Number(longSpec![1])).toBeGreaterThan(0.3);
    expect(Number(longSpec![1])).toBeLessThanOrEqual(1);
    expect(Number(longSpec![2])).toBeGreaterThan(1);
    expect(long).toMatch(/^Why: speculation pays where a decode step is bound by reading memory.*Case 1's AR step reads .*Case 2's AR step reads [\d.]+ MB, \d+% of it KV cache.*synthetic model/m);

    const again = memoryIo();
    expect(await main(args, again)).toBe(0);
    expect(again.out()).toMatch(/^library: .+libmodule\.so \(cached, not recompiled\)$/m);
    expect(again.err()).not.toMatch(/writing the random tiny model/);
    expect(again.err()).not.toMatch(/writing the SYNTHETIC random local model/);
    expect(again.out()).not.toMatch(/\(compiled\)$/m);
    expect(again.out().match(/speculative tokens == autoregressive tokens/g)).toHaveLength(2);
    // The demo runs twice: about 7 minutes alone on a 2-core machine without AVX-512, more beside the rest
    // of the suite, past the default 10-minute timeout.
  }, 25 * 60_000);

  it('refuses a bad --long-context before doing anything', async () => {
    const io = memoryIo();
    expect(await main(['demo', '--out', join(tmp, 'bad'), '--long-context', '5000'], io)).toBe(1);
    expect(io.err()).toBe("magicdec: error: --long-context: expected a whole number of tokens from 2 to 4096, got '5000'\n");
  });

  it('refuses to reuse a model directory that holds another model', async () => {
    const out = join(tmp, 'other');
    writeRandomModel({ preset: 'small', seed: 2, dtype: 'bf16', out: join(out, 'tiny-model') });
    const io = memoryIo();
    expect(await main(['demo', '--out', out, '--cache', join(tmp, 'cache')], io)).toBe(1);
    expect(io.err()).toMatch(/tiny-model holds a model that is not the tiny preset \('small'\)/);

    // The local model's directory likewise (after case 1, which now runs on a fresh tiny model).
    const out2 = join(tmp, 'other2');
    writeRandomModel({ preset: 'tiny', seed: 2, dtype: 'fp32', out: join(out2, 'local-model') });
    const io2 = memoryIo();
    expect(await main(['demo', '--out', out2, '--cache', join(tmp, 'cache'), '--long-context', '1024'], io2)).toBe(1);
    expect(io2.err()).toMatch(/local-model holds a model that is not the local preset \('tiny'\)/);
  });
});

describe('demo: token comparison', () => {
  it('names the first request and token that differ', () => {
    expect(firstDifference([[1, 2], [3, 4, 5]], [[1, 2], [3, 4, 5]])).toBeUndefined();
    expect(firstDifference([[1, 2], [3, 4, 5]], [[1, 2], [3, 9, 5]])).toBe('prompt 1, token 1: autoregressive 4, speculative 9');
    expect(firstDifference([[1, 2]], [[1, 2, 3]])).toBe('prompt 0, token 2: autoregressive (none), speculative 3');
    expect(firstDifference([[1]], [])).toBe('1 autoregressive outputs, 0 speculative');
  });
});

describe('regen', () => {
  it('rewrites a generated directory completely, dropping stale modules', async () => {
    const dir = join(tmp, 'generated');
    mkdirSync(join(dir, 'stale.module'), { recursive: true });
    writeFileSync(join(dir, 'stale.module/manifest.json'), '{}');
    await regenerate(dir);
    expect(readTree(dir)).toEqual(await generatedTree());
  });
});
