// The GPU suite without a GPU: `npm run gpu:pack` into a temporary folder, then the pack's own
// `gpu-suite.sh --dry-run` (the drivers of one module built for the SIMT emulator through the pack's
// CMakeLists.txt, run short; the runtime and e2e.c on the tiny model's emulated sm_90 module, spec == AR
// through the C API with the draft's steps replayed as emulated graphs; and the reporting). The table and suite.json must say what ran and passed,
// list GPU-only steps as skipped (never passed), and a wrong tolerance (MD_KIT_TOL) must fail the suite
// loudly, and so must a spent time budget. report.py must also keep "not available" (the runtime has no
// CUDA engine) apart from passed.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { PACK_LIMIT_BYTES } from '../../scripts/gpu/pack.ts';

const exec = promisify(execFile);
const tmp = mkdtempSync(join(tmpdir(), 'md-gpu-suite-'));
const pack = join(tmp, 'pack');
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
async function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  try {
    const r = await exec(cmd, args, { env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : -1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

interface Step {
  name: string;
  status: string;
  detail: string;
  result?: { checks?: number; failed?: number; seed?: number; groups?: { name: string; checks: number; failed: number }[] };
}
const suiteJson = (out: string) => JSON.parse(readFileSync(join(out, 'suite.json'), 'utf8')) as { verdict: string; failed: string[]; steps: Step[] };
/** The rows of the summary table (after its header line), up to the RESULT line. */
function table(stdout: string): { rows: string[]; result: string } {
  const lines = stdout.trimEnd().split('\n');
  const head = lines.findIndex((l) => l.startsWith('== magicdec GPU suite'));
  return { rows: lines.slice(head + 2, -1), result: lines[lines.length - 1] };
}

describe('GPU suite (gpu:pack + dry run)', () => {
  it('npm run gpu:pack writes the whole suite, under 40 MiB, with the Llama-3.1-8B module', async () => {
    const r = await run('npm', ['run', '--silent', 'gpu:pack', '--', pack]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/gpu:pack \[\d+\/\d+\] module m5_bf16_llama_3_1_8b/);
    const mib = Number(/: ([\d.]+) MiB/.exec(r.stdout)?.[1]);
    expect(mib * 2 ** 20).toBeLessThan(PACK_LIMIT_BYTES);
    for (const f of ['gpu-suite.sh', 'CMakeLists.txt', 'driver.cu', 'bench.cu', 'e2e.c', 'torch_bench.py', 'report.py', 'suite.env', 'pack.json',
      'runtime/CMakeLists.txt', 'runtime/src/engine.cpp', 'generated/contract/md_abi.h', 'third_party/simdjson/simdjson.cpp', 'e2e/model/config.json',
      'e2e/module/md_module.cu', 'modules/m5_bf16_llama_3_1_8b/ref/sample.cpp']) {
      expect(existsSync(join(pack, f)), f).toBe(true);
    }
    const cfg = readFileSync(join(pack, 'modules/m5_bf16_llama_3_1_8b/kit_config.h'), 'utf8');
    expect(cfg).toMatch(/KIT_HEADS = 32, KIT_KV_HEADS = 8/);
    expect(cfg).toMatch(/KIT_HEAD_DIM = 128/);
    expect(cfg).toMatch(/KIT_BUCKETS\[\] = \{1, 8, 32, 64, 128, 256\}/);
    expect(cfg).toMatch(/typedef __nv_bfloat16 kit_store_t/);
    expect(readFileSync(join(pack, 'CMakeLists.txt'), 'utf8')).toMatch(/set\(MD_ARCH_m5_bf16_llama_3_1_8b 90a\)/);
  }, 120_000);

  const work = join(tmp, 'work');
  it('the dry run builds under the emulator, runs the checks and reports GPU steps as skipped', async () => {
    const out = join(tmp, 'out');
    const r = await run('bash', [join(pack, 'gpu-suite.sh'), '--dry-run', out], { MD_SUITE_WORK: work, MD_SUITE_SEED: '7' });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const { rows, result } = table(r.stdout);
    expect(result).toMatch(/^RESULT: PASS \(4 passed, 0 failed, 0 not available, 4 skipped\)$/);
    expect(rows.find((l) => l.startsWith('check: m0_fp32_tiny'))).toMatch(/ pass .* \d+ checks, 0 failed, seed 7/);
    // The tiny model's sm_90 module, built for the emulator, through the runtime's C API: spec == AR bitwise.
    expect(rows.find((l) => l.startsWith('e2e: spec == AR (C API)'))).toMatch(/ pass .* PASS: 2 requests, 20 tokens, draft window 16; acceptance /);
    for (const s of ['sanitizer: memcheck', 'sanitizer: racecheck', 'bandwidth: kernels', 'bandwidth: pytorch']) {
      expect(rows.find((l) => l.startsWith(s))).toMatch(/ skipped .*dry run: needs a GPU/);
    }
    const j = suiteJson(out);
    expect(j.verdict).toBe('PASS');
    const e2e = j.steps.find((s) => s.name === 'e2e: spec == AR (C API)')?.result as Record<string, unknown> | undefined;
    expect(e2e).toMatchObject({ available: true, emulated: true, draft_window_16: true, token_diffs: 0, logit_diffs: 0, tokens: 20 });
    // The draft's steps ran as (emulated) graphs, and drafted what an eager engine drafts.
    expect(e2e).toMatchObject({ accept_diffs: 0, draft_graphs_captured: true, graph_captures: expect.any(Number) });
    expect(e2e?.graph_replays).toBeGreaterThan(0);
    const check = j.steps.find((s) => s.name === 'check: m0_fp32_tiny');
    expect(check?.status).toBe('pass');
    expect(check?.result?.seed).toBe(7);
    expect(check?.result?.checks).toBeGreaterThan(300);
    const groups = check?.result?.groups?.map((g) => g.name) ?? [];
    for (const g of ['gemm_lm_head', 'lm_head_argmax', 'attn_target', 'attn_draft', 'sample (vs the CPU kernel)', 'verify_sample gamma 3 (vs the CPU kernel)']) {
      expect(groups).toContain(g);
    }
    // Without --emulated, e2e asks md_cuda_available(): this runtime has no CUDA, so 'not available' (exit 3).
    const na = await run(join(work, 'build-emu/e2e'), [join(pack, 'e2e/model'), join(work, 'build-emu/libe2e_module.so'), '512', join(tmp, 'na.json')]);
    expect(na.code).toBe(3);
    expect(na.stdout).toMatch(/^not available: runtime has no CUDA engine here: this runtime was built without CUDA/);
    expect(JSON.parse(readFileSync(join(tmp, 'na.json'), 'utf8')).available).toBe(false);
    expect(readFileSync(join(out, 'summary.txt'), 'utf8')).toBe(r.stdout.slice(r.stdout.indexOf('targets')));
    expect(readFileSync(join(out, 'suite.log'), 'utf8')).toMatch(/PASS: \d+ checks, 0 failed/);
  }, 300_000);

  it('a wrong tolerance fails the suite loudly, naming the step', async () => {
    const out = join(tmp, 'out-bad');
    const r = await run('bash', [join(pack, 'gpu-suite.sh'), '--dry-run', out], { MD_SUITE_WORK: work, MD_KIT_TOL: '1e-12' });
    expect(r.code).toBe(1);
    const { rows, result } = table(r.stdout);
    expect(result).toMatch(/^RESULT: FAIL \(3 passed, 1 failed, .*\): check: m0_fp32_tiny$/);
    expect(rows.find((l) => l.startsWith('check: m0_fp32_tiny'))).toMatch(/ FAIL .* \d+ checks, [1-9]\d* failed.*first: .*relative error/);
    expect(r.stderr).toMatch(/gpu-suite: FAILED/);
    expect(suiteJson(out).failed).toEqual(['check: m0_fp32_tiny']);
  }, 300_000);

  it('report.py keeps not-available and timed-out steps apart from passed ones', async () => {
    const w = join(tmp, 'fake');
    mkdirSync(w, { recursive: true });
    writeFileSync(join(w, 'meta.json'), '{"seed": 1, "device": "test", "seconds": 1}');
    const e2e = join(w, 'e2e.json');
    writeFileSync(e2e, '{"available": false, "error": "md_engine_create: built for sm_90; this runtime runs cpu modules only"}');
    writeFileSync(join(w, 'steps.tsv'), `build\tpass\t1\t\tok\ne2e: spec == AR (C API)\tna\t0.5\t${e2e}\tnot available: runtime has no CUDA engine\n`);
    const ok = await run('python3', [join(pack, 'report.py'), w, join(tmp, 'fake-out')]);
    expect(ok.code).toBe(0);
    expect(table(ok.stdout).rows[1]).toMatch(/^e2e: spec == AR \(C API\)\s+n\/a .*not available: runtime has no CUDA engine/);
    expect(table(ok.stdout).result).toBe('RESULT: PASS (1 passed, 0 failed, 1 not available, 0 skipped)');
    writeFileSync(join(w, 'steps.tsv'), 'bandwidth: kernels\ttimeout\t180\t\ttimed out after 180s\n', { flag: 'a' });
    const bad = await run('python3', [join(pack, 'report.py'), w, join(tmp, 'fake-out')]);
    expect(bad.code).toBe(1);
    expect(table(bad.stdout).result).toBe('RESULT: FAIL (1 passed, 1 failed, 1 not available, 0 skipped): bandwidth: kernels');
    // A sanitizer's failure: every check passed, so its own error line must lead the detail.
    const clean = join(w, 'clean.json');
    writeFileSync(clean, '{"checks": 10, "failed": 0, "seed": 3, "groups": [], "failures": []}');
    writeFileSync(join(w, 'steps.tsv'), `sanitizer: memcheck m0\tfail\t9\t${clean}\texit 99: ========= Invalid __global__ write of size 4\n`, { flag: 'a' });
    const san = await run('python3', [join(pack, 'report.py'), w, join(tmp, 'fake-out')]);
    expect(san.code).toBe(1);
    expect(table(san.stdout).rows.find((l) => l.startsWith('sanitizer'))).toMatch(/FAIL +9s +exit 99: =+ Invalid __global__ write of size 4 \|\| 10 checks, 0 failed/);
    // Nothing passed (only not-available steps) is no pass either.
    writeFileSync(join(w, 'steps.tsv'), `e2e: spec == AR (C API)\tna\t0.5\t${e2e}\tnot available\n`);
    expect((await run('python3', [join(pack, 'report.py'), w, join(tmp, 'fake-out')])).code).toBe(1);
  }, 60_000);

  it('report.py renders the bandwidth tables and the targets from bench.cu / torch_bench.py output', async () => {
    const w = join(tmp, 'fake-bw');
    mkdirSync(w, { recursive: true });
    const fx = join(import.meta.dirname, 'fixtures');
    writeFileSync(join(w, 'meta.json'), '{"seed": 1, "device": "test", "seconds": 1, "pack": {"benchModel": {"layers": 32, "gamma": 3}}}');
    writeFileSync(join(w, 'steps.tsv'), `bandwidth: kernels\tpass\t50\t${join(fx, 'bench.json')}\tx\nbandwidth: pytorch\tpass\t90\t${join(fx, 'torch.json')}\ty\n`);
    const r = await run('python3', [join(pack, 'report.py'), w, join(tmp, 'fake-bw-out')]);
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toMatch(/^decode +64 +32768 +4\.000 +2150 +50% \| +3\.000 +3\.500 +-$/m);
    expect(r.stdout).toMatch(/^decode +256 +32768 does not fit in device memory$/m);
    expect(r.stdout).toMatch(/^q +64 +0\.0200 +39% \| +0\.012 +1\.67$/m);
    expect(r.stdout).toMatch(/^kv +1 kernel returned an error$/m);
    expect(r.stdout).toMatch(/missed +decode attention B64 L32K >= 85% of copy \(0\.5\)/);
    expect(r.stdout).toMatch(/missed +gemm_q M64 within 1\.3x of cuBLAS \(1\.67\)/);
    // The projection at B64 L32K from the fixture's kernel times (32 layers of attention + five GEMMs, + LM head).
    expect(r.stdout).toMatch(/missed +projection B64 L32K .*T_verify\(gamma 3\)\/T_ar <= 1\.15 \(1\.97\)/);
    expect(r.stdout).toMatch(/met +projection B64 L32K .*T_draft\/T_ar <= 0\.2 \(0\.0718\)/);
    expect(r.stdout).toMatch(/reported +projection B64 L32K .*MagicDec speedup at acceptance 0\.8 \(1\.35\)/);
    expect(r.stdout).toMatch(/not measured +projection B32 L8K/);
    expect(table(r.stdout).result).toBe('RESULT: PASS (2 passed, 0 failed, 0 not available, 0 skipped; 7 targets missed)');
    const strict = await run('python3', [join(pack, 'report.py'), w, join(tmp, 'fake-bw-out')], { MD_SUITE_STRICT_TARGETS: '1' });
    expect(strict.code).toBe(1);
  }, 60_000);

  it('a spent time budget fails the suite: the steps it cut are NOT RUN, not skipped', async () => {
    const r = await run('bash', [join(pack, 'gpu-suite.sh'), '--dry-run', join(tmp, 'out-budget')], { MD_SUITE_WORK: join(tmp, 'work-budget'), MD_SUITE_BUDGET: '5' });
    expect(r.code).toBe(1);
    const { rows, result } = table(r.stdout);
    expect(rows.find((l) => l.startsWith('build'))).toMatch(/NOT RUN .*budget is spent/);
    expect(rows.find((l) => l.startsWith('check: m0_fp32_tiny'))).toMatch(/NOT RUN .*the build did not pass/);
    expect(result).toMatch(/^RESULT: FAIL \(0 passed, 2 failed/);
  }, 60_000);
});
