// `magicdec demo` (what `npm start` runs) and `regen`'s rewrite of a generated/ directory.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatedTree, regenerate } from '../../cli/generated-modules.ts';
import { memoryIo } from '../../cli/io.ts';
import { main } from '../../cli/main.ts';
import { readTree } from '../../codegen/module.ts';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'magicdec-demo-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('demo', () => {
  it('writes the default sm_90 module and builds the tiny CPU one, then reuses the cache', async () => {
    const args = ['demo', '--out', join(tmp, 'out'), '--cache', join(tmp, 'cache')];
    const io = memoryIo();
    expect(await main(args, io)).toBe(0);
    const sm90 = JSON.parse(readFileSync(join(tmp, 'out/default-sm_90/manifest.json'), 'utf8'));
    const cpu = JSON.parse(readFileSync(join(tmp, 'out/tiny-cpu/manifest.json'), 'utf8'));
    expect([sm90.arch, sm90.model.name, cpu.arch, cpu.model.name, cpu.dtype]).toEqual(['sm_90', 'llama-3.1-8b', 'cpu', 'tiny', 'fp32']);
    expect(io.out()).toContain(`${sm90.name}: ${sm90.kernels.length} kernels`);
    expect(io.out()).toMatch(/^library: .+libmodule\.so \(compiled\)$/m);
    expect(io.err()).toMatch(/^compiling tiny\.cpu\.fp32\S* \[\d+\/\d+\] /m);

    const again = memoryIo();
    expect(await main(args, again)).toBe(0);
    expect(again.out()).toMatch(/^library: .+libmodule\.so \(cached, not recompiled\)$/m);
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
