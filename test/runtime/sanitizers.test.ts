// The runtime under AddressSanitizer + UndefinedBehaviorSanitizer: a second build of the C API, the unit
// checks and the Node addon with -DMAGICDEC_SANITIZE=address,undefined (runtime/CMakeLists.txt), where any
// report aborts the program. It runs the unit checks (every config.json case of the shared fixture table,
// the JSON, dtype and allocator checks), the C API's error paths, md_model_check on a few hundred corrupt
// model directories (truncated files, lying header lengths, flipped header bytes), a short decode through
// the C API in both modes, and a short decode through the Node addon.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuBackend } from '../../codegen/backends/cpu.ts';
import { buildModule } from '../../codegen/build.ts';
import { loadSpecText } from '../../codegen/frontend/index.ts';
import { planModule } from '../../codegen/plan.ts';
import { writeRandomModel } from '../../model/random.ts';
import { REPO } from './build-runtime.ts';

const BUILD = join(REPO, 'runtime/build-sanitize');
const SANITIZERS = 'address,undefined';
const env = {
  ...process.env,
  ASAN_OPTIONS: 'detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86',
  UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1:exitcode=87',
};

/**
 * Builds the sanitizer build of the runtime, its test programs and its Node addon in one cmake-js build
 * directory (incremental after the first time).
 */
function buildSanitized(): { capi: string; unit: string; addon: string } {
  execFileSync('npx', ['cmake-js', 'compile', '-d', 'runtime', '-O', BUILD, '--log-level', 'error', '--config', 'RelWithDebInfo', `--CDMAGICDEC_SANITIZE=${SANITIZERS}`], { cwd: REPO, stdio: 'pipe' });
  return { capi: join(BUILD, 'capi_test'), unit: join(BUILD, 'unit_tests'), addon: join(BUILD, 'magicdec_node.node') };
}

function run(exe: string, args: string[], extraEnv: Record<string, string> = {}): { status: number | null; out: string } {
  const r = spawnSync(exe, args, { env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const noReport = (out: string) => expect(out).not.toMatch(/ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer/);

const SPEC = `
import { attention, deploy, greedy, kvPolicy, models } from 'magicdec';
export const causal = attention({ name: 'causal', mask: (q, kv) => kv <= q });
export const everything = kvPolicy({ name: 'everything', keep: () => true });
export const sinkWindow = kvPolicy({ name: 'sink_window', params: { sink: 4, window: 24 }, keep: (kv, len, p) => kv < p.sink || kv >= len - p.window });
export default deploy({
  model: models.tiny, target: { attention: causal, kv: everything }, draft: { attention: causal, kv: sinkWindow },
  verify: greedy, gamma: 3, shapes: { batch: [1, 4], maxSeq: 512, pageSize: 16 }, dtype: 'bf16', arch: 'cpu',
});
`;

let root: string;
let programs: { capi: string; unit: string; addon: string };
let model: string;
let library: string;

beforeAll(async () => {
  programs = buildSanitized();
  root = mkdtempSync(join(tmpdir(), 'md-sanitize-'));
  model = join(root, 'tiny');
  writeRandomModel({ preset: 'tiny', seed: 3, dtype: 'bf16', out: model });
  const loaded = loadSpecText(SPEC, join(REPO, 'test/runtime/sanitize-spec.ts'));
  const plan = planModule(loaded.deployment!);
  library = (await buildModule({ name: plan.name, files: cpuBackend.emit(plan), target: 'cpu' })).library;
}, 900_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A copy of the model directory with model.safetensors replaced by `bytes`. */
function withWeights(name: string, bytes: Buffer): string {
  const dir = join(root, name);
  mkdirSync(dir);
  for (const f of readdirSync(model)) if (f !== 'model.safetensors') copyFileSync(join(model, f), join(dir, f));
  writeFileSync(join(dir, 'model.safetensors'), bytes);
  return dir;
}

describe('the runtime under ASan + UBSan', () => {
  it('passes the unit checks and the C API error paths with no report', () => {
    const unit = run(programs.unit, []);
    noReport(unit.out);
    expect(unit.out).toContain('all runtime unit checks passed');
    expect(unit.status).toBe(0);
    const errors = run(programs.capi, ['errors', join(BUILD, 'libmagicdec.so')]);
    noReport(errors.out);
    expect(errors.status, errors.out).toBe(0);
  });

  it('refuses corrupt weights (truncated, lying header length, flipped header bytes) with an error, never a report', () => {
    const good = readFileSync(join(model, 'model.safetensors'));
    expect(run(programs.capi, ['check', model, 'bf16']).out).toBe('ok\n');
    const headerLen = Number(good.readBigUInt64LE(0));
    const cases: [string, Buffer][] = [
      ['empty', Buffer.alloc(0)],
      ['7 bytes', good.subarray(0, 7)],
      ['header cut', good.subarray(0, 8 + Math.floor(headerLen / 2))],
      ['data cut', good.subarray(0, good.length - 1)],
    ];
    for (const len of [0n, 1n, BigInt(headerLen - 1), BigInt(headerLen + 1), BigInt(good.length), 2n ** 40n, 2n ** 63n, 2n ** 64n - 1n]) {
      const b = Buffer.from(good);
      b.writeBigUInt64LE(len, 0);
      cases.push([`header length ${len}`, b]);
    }
    // Deterministic byte flips inside the JSON header (xorshift; the seed is fixed so failures replay).
    let s = 0x9e3779b9;
    const next = () => ((s ^= s << 13), (s ^= s >>> 17), (s ^= s << 5), s >>> 0);
    for (let i = 0; i < 150; i++) {
      const b = Buffer.from(good);
      for (let k = 1 + (next() % 3); k > 0; k--) b[8 + (next() % headerLen)] = next() & 0xff;
      cases.push([`flips ${i}`, b]);
    }
    let refused = 0;
    for (const [i, [what, bytes]] of cases.entries()) {
      const dir = withWeights(`bad-${i}`, bytes);
      const r = run(programs.capi, ['check', dir, 'bf16']);
      noReport(r.out);
      expect([0, 1], `${what}: ${r.out}`).toContain(r.status);
      if (r.status === 1) {
        refused++;
        expect(r.out.trim().split('\n'), what).toHaveLength(1);
      }
      rmSync(dir, { recursive: true, force: true });
    }
    expect(refused).toBeGreaterThan(cases.length / 2);
  });

  it('decodes through the C API, speculative tokens == autoregressive tokens, with no report', () => {
    const prompt = Array.from({ length: 40 }, (_, i) => String((i * 37 + 11) % 500));
    const out = ['ar', 'spec'].map((mode) => {
      const r = run(programs.capi, ['generate', model, library, mode, '3', '24', ...prompt]);
      noReport(r.out);
      expect(r.status, r.out).toBe(0);
      return r.out.trim().split('\n')[0];
    });
    expect(out[1]).toBe(out[0]);
    expect(out[0].split(' ')).toHaveLength(24);
  });

  it('decodes a short batch through the Node addon built with the sanitizers', () => {
    const libasan = execFileSync('g++', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).trim();
    const script = join(root, 'decode.mts');
    writeFileSync(
      script,
      `import { Engine } from ${JSON.stringify(join(REPO, 'runtime/node/index.ts'))};
const e = await Engine.create(${JSON.stringify(model)}, ${JSON.stringify(library)}, { mode: 'spec', maxBatch: 4 });
const prompts = [[1, 2, 3, 4, 5], Array.from({ length: 70 }, (_, i) => (i * 13) % 500), [7]];
const out = await Promise.all(prompts.map((p) => e.generate(p, { maxTokens: 12 })));
e.close();
console.log(JSON.stringify(out.map((g) => g.tokens.length)));
`,
    );
    // Node itself is not built with ASan (the runtime is preloaded for it): leaks at its exit are its own.
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], {
      cwd: REPO,
      env: { ...env, MAGICDEC_ADDON: programs.addon, LD_PRELOAD: libasan, ASAN_OPTIONS: 'detect_leaks=0:halt_on_error=1:exitcode=86' },
      encoding: 'utf8',
      timeout: 300_000,
    });
    noReport(`${r.stdout}${r.stderr}`);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual([12, 12, 12]);
  });
});
