// `magicdec gen` end to end, in-process through main() (plus a spawned run of bin/magicdec.js): output
// files, flag overrides, exit codes and messages, and the out dir left untouched by every failure.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.ts';
import { memoryIo } from '../../lib/io.ts';
import { readTree } from '../../codegen/module.ts';
import type { Manifest } from '../../codegen/manifest.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const EXAMPLE_CPU = join(ROOT, 'examples/streaming-draft.ts');
const EXAMPLE_SM90 = join(ROOT, 'examples/softcap-long-context.ts');
const BAD_SPEC = join(ROOT, 'test/cli/fixtures/bad-spec.ts');

let tmp: string;
/** Specs written by tests live inside the package (under the git-ignored .cache/) so `'magicdec'` resolves. */
let specDir: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'magicdec-cli-'));
  mkdirSync(join(ROOT, '.cache'), { recursive: true });
  specDir = mkdtempSync(join(ROOT, '.cache/test-cli-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
  rmSync(specDir, { recursive: true, force: true });
});

async function cli(...args: string[]) {
  const io = memoryIo();
  const code = await main(args, io);
  return { code, out: io.out(), err: io.err() };
}

const manifestOf = (dir: string): Manifest => JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
const noStack = (text: string) => expect(text).not.toMatch(/^\s+at /m);

describe('gen writes a module', () => {
  it('compiles the built-in default deployment (sm_90) when no spec is given', async () => {
    const out = join(tmp, 'default');
    const r = await cli('gen', '--out', out);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const m = manifestOf(out);
    expect(m.source).toBe('<default>');
    expect(m.arch).toBe('sm_90');
    expect(m.model.name).toBe('llama-3.1-8b');
    expect(r.out).toContain(`${m.name}: ${m.kernels.length} kernels`);
    expect(readTree(out).some((f) => f.path.endsWith('.cu'))).toBe(true);
  });

  it('compiles a spec file with its own values', async () => {
    const out = join(tmp, 'example');
    const r = await cli('gen', EXAMPLE_CPU, '--out', out);
    expect(r.code).toBe(0);
    const m = manifestOf(out);
    expect(m).toMatchObject({ arch: 'cpu', dtype: 'fp32', gamma: 4, buckets: [1, 4], maxSeq: 2048, pageSize: 32 });
    expect(m.passes.draft).toMatchObject({ attention: 'causal', kv: 'sink_window' });
    expect(m.passes.draft.params.map((p) => [p.key, p.value])).toEqual([['kv_sink', 4], ['kv_window', 252]]);
    expect(readTree(out).some((f) => f.path.endsWith('.cpp'))).toBe(true);
  });

  it('applies every override flag', async () => {
    const out = join(tmp, 'overridden');
    const r = await cli('gen', EXAMPLE_CPU, '--out', out, '--target', 'sm_80', '--batch', '2,16', '--max-seq', '1024', '--gamma', '2', '--dtype', 'bf16');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const m = manifestOf(out);
    expect(m).toMatchObject({ arch: 'sm_80', dtype: 'bf16', gamma: 2, buckets: [2, 16], maxSeq: 1024, pageSize: 32 });
    expect(m.kernels.filter((k) => k.bucket !== undefined).every((k) => k.maxRows === k.bucket! * 3)).toBe(true);
  });

  it('defaults --out to out/<module name> under the working directory', async () => {
    const cwd = process.cwd();
    process.chdir(tmp);
    try {
      const r = await cli('gen', EXAMPLE_SM90);
      expect(r.code).toBe(0);
      const name = 'llama-3.1-8b.sm_90.bf16.t_softcapped-full.d_softcapped-streaming.greedy.g3';
      expect(readdirSync(join(tmp, 'out'))).toEqual([name]);
      expect(manifestOf(join(tmp, 'out', name)).name).toBe(name);
    } finally {
      process.chdir(cwd);
    }
  });
});

describe('gen rejects bad input with exit 1, a clear message and no stack', () => {
  it.each([
    [['--batch', '8,1'], /strictly ascending, got 8,1/],
    [['--batch', '1,x'], /whole number, got 'x'/],
    [['--gamma', '0'], /gamma must be in 1\.\.16 or 'auto', got 0/],
    [['--max-seq', 'lots'], /max-seq must be a whole number/],
    [['--target', 'sm_70'], /Allowed choices are cpu, sm_80, sm_90/],
    [['--dtype', 'fp8'], /Allowed choices are bf16, fp16, fp32/],
    [['--frobnicate'], /unknown option '--frobnicate'/],
    [['--max-seq', '100000000'], /max-seq must be in 1\.\.4194304/],
  ])('gen %j', async (args, msg) => {
    const r = await cli('gen', '--out', join(tmp, 'never'), ...args);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(msg);
    noStack(r.err);
    expect(existsSync(join(tmp, 'never'))).toBe(false);
  });

  it('a --max-seq past the model', async () => {
    const r = await cli('gen', EXAMPLE_CPU, '--out', join(tmp, 'never'), '--max-seq', '65536');
    expect(r.code).toBe(1);
    expect(r.err).toBe("magicdec: error: --max-seq 65536 exceeds max_position_embeddings 16384 of model 'tiny'\n");
  });

  it('a missing spec file', async () => {
    const r = await cli('gen', join(tmp, 'nope.ts'), '--out', join(tmp, 'never'));
    expect(r.code).toBe(1);
    expect(r.err).toBe(`magicdec: error: spec file not found: ${join(tmp, 'nope.ts')}\n`);
  });

  it('a shape the CUDA backend cannot launch', async () => {
    const r = await cli('gen', '--out', join(tmp, 'never'), '--batch', '4096', '--gamma', '16');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^magicdec: error: .*bucket 4096 allows 69632 rows; a CUDA grid dimension holds at most 65535\n$/);
  });

  it('a spec path that is a directory', async () => {
    const r = await cli('gen', tmp, '--out', join(tmp, 'never'));
    expect(r.code).toBe(1);
    expect(r.err).toBe(`magicdec: error: spec path is not a file: ${tmp}\n`);
  });

  it('a malformed spec: every diagnostic, with its source line and caret', async () => {
    const r = await cli('gen', BAD_SPEC, '--out', join(tmp, 'never'));
    expect(r.code).toBe(1);
    noStack(r.err);
    const heads = r.err.match(/^\S*bad-spec\.ts:\d+:\d+: error MD\d{4}: .+$/gm) ?? [];
    expect(heads.length).toBeGreaterThanOrEqual(3);
    expect(r.err).toMatch(/Math\.hypot/);
    expect(r.err).toMatch(/^\s+\^+$/m);
    expect(r.err).toMatch(new RegExp(`^${heads.length} errors in .*bad-spec\\.ts$`, 'm'));
    expect(existsSync(join(tmp, 'never'))).toBe(false);
  });

  it('a spec with a TypeScript syntax error', async () => {
    const spec = join(specDir, 'syntax.ts');
    writeFileSync(spec, "import { deploy } from 'magicdec';\nexport default deploy({ gamma: 3,, });\n");
    const r = await cli('gen', spec, '--out', join(tmp, 'never'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/syntax\.ts:2:\d+: error MD1000: /);
    noStack(r.err);
  });

  it('an --out that is a non-module directory is refused and left alone', async () => {
    const out = join(tmp, 'precious');
    mkdirSync(out);
    writeFileSync(join(out, 'notes.txt'), 'mine');
    const r = await cli('gen', EXAMPLE_CPU, '--out', out);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/holds no manifest\.json; refusing to replace it/);
    expect(readTree(out)).toEqual([{ path: 'notes.txt', contents: 'mine' }]);
  });
});

describe('a failed gen leaves the previous output exactly as it was', () => {
  it.each([
    ['malformed spec', [BAD_SPEC]],
    ['bad override', [EXAMPLE_CPU, '--max-seq', '65536']],
    ['missing spec', ['/nonexistent/spec.ts']],
  ])('%s', async (_what, args) => {
    const out = join(tmp, `kept-${_what.replace(/ /g, '-')}`);
    expect((await cli('gen', EXAMPLE_CPU, '--out', out)).code).toBe(0);
    const before = readTree(out);
    const r = await cli('gen', ...args, '--out', out);
    expect(r.code).toBe(1);
    expect(readTree(out)).toEqual(before);
  });

  it('a build failure (no compiler on PATH)', async () => {
    const out = join(tmp, 'kept-build');
    expect((await cli('gen', EXAMPLE_CPU, '--out', out)).code).toBe(0);
    const before = readTree(out);
    const path = process.env.PATH;
    process.env.PATH = join(tmp, 'empty-bin');
    try {
      const r = await cli('gen', EXAMPLE_CPU, '--out', out, '--gamma', '2', '--build', '--cache', join(tmp, 'cache-nocc'));
      expect(r.code).toBe(1);
      expect(r.err).toBe("magicdec: error: compiler 'g++' was not found on PATH\n");
    } finally {
      process.env.PATH = path;
    }
    expect(readTree(out)).toEqual(before);
  });
});

describe('gen --build', () => {
  it('compiles once, then hits the cache', async () => {
    const cache = join(tmp, 'cache');
    const out = join(tmp, 'built');
    const t0 = performance.now();
    const first = await cli('gen', EXAMPLE_CPU, '--out', out, '--build', '--cache', cache);
    const t1 = performance.now();
    expect(first.err).toMatch(/^compiling \S+ \[1\/\d+\] /m);
    expect(first.code).toBe(0);
    const lib = /^library: (.+) \(compiled\)$/m.exec(first.out)?.[1];
    expect(lib && existsSync(resolve(lib))).toBe(true);

    const second = await cli('gen', EXAMPLE_CPU, '--out', out, '--build', '--cache', cache);
    const t2 = performance.now();
    expect(second.code).toBe(0);
    expect(second.out).toContain(`library: ${lib} (cached, not recompiled)`);
    expect(second.err).toBe('');
    expect(t2 - t1).toBeLessThan((t1 - t0) / 2);
  });
});

describe('gen --build for CUDA', () => {
  it('compiles a tiny sm_90 module with nvcc', async () => {
    const r = await cli('gen', EXAMPLE_CPU, '--target', 'sm_90', '--dtype', 'bf16', '--out', join(tmp, 'tiny-sm90'), '--build', '--cache', join(tmp, 'cache'));
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/^compiling tiny\.sm_90\.bf16\S* \[1\/\d+\] \S+\.cu$/m);
    const lib = /^library: (.+) \(compiled\)$/m.exec(r.out)?.[1];
    expect(lib && existsSync(resolve(lib))).toBe(true);
    expect(manifestOf(join(tmp, 'tiny-sm90')).arch).toBe('sm_90');
  });
});

describe('bin/magicdec.js', () => {
  const run = promisify(execFile);
  const bin = join(ROOT, 'bin/magicdec.js');

  it('exits 1 with a one-line message for a user error', async () => {
    const e = await run(process.execPath, [bin, 'gen', 'missing-spec.ts'], { cwd: tmp }).catch((x) => x);
    expect(e.code).toBe(1);
    expect(e.stderr).toBe('magicdec: error: spec file not found: missing-spec.ts\n');
  });

  it('prints help and exits 0', async () => {
    const { stdout } = await run(process.execPath, [bin, 'gen', '--help'], { cwd: tmp });
    for (const flag of ['--target', '--out', '--build', '--batch', '--max-seq', '--gamma', '--dtype', '--cache']) expect(stdout).toContain(flag);
  });
});
