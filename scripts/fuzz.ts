// `npm run fuzz [-- --seconds N] [--targets a,b]`: coverage-guided fuzzing of the runtime's parsers of
// user-supplied files (runtime/fuzz/: config.json, the module manifest, safetensors files, the shard
// index) with clang's libFuzzer, ASan and UBSan. Builds runtime/build-fuzz with clang, then runs each target
// for a fixed time from the committed seed corpus (test/fuzz/corpus/<target>/) with a JSON dictionary
// (test/fuzz/json.dict). Any crash, sanitizer report, leak, timeout or out-of-memory fails the run (exit 1)
// and leaves the input that caused it under out/fuzz/<target>/, to be added to the corpus once fixed.
//
// Needs clang with libFuzzer, which the machine image lacks: on Debian, `apt-get install clang-14
// libclang-rt-14-dev` (CI's .ci/run does exactly this before `npm run fuzz`; the README says the same).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BUILD = join(ROOT, 'runtime/build-fuzz');
const CORPUS = join(ROOT, 'test/fuzz/corpus');
/** The targets of runtime/CMakeLists.txt (MD_FUZZ_TARGETS). */
const TARGETS = ['config', 'manifest', 'safetensors', 'index'] as const;
const CLANGS = ['clang++', 'clang++-19', 'clang++-18', 'clang++-17', 'clang++-16', 'clang++-15', 'clang++-14'];

function fail(message: string): never {
  process.stderr.write(`fuzz: ${message}\n`);
  process.exit(1);
}

function findClang(): { cxx: string; cc: string } {
  for (const cxx of process.env.MAGICDEC_FUZZ_CXX ? [process.env.MAGICDEC_FUZZ_CXX] : CLANGS) {
    if (spawnSync(cxx, ['--version'], { stdio: 'ignore' }).status === 0) return { cxx, cc: cxx.replace('clang++', 'clang') };
  }
  fail('no clang++ found (libFuzzer needs clang); on Debian: apt-get install clang-14 libclang-rt-14-dev');
}

function sh(cmd: string, args: readonly string[]): void {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
}

const opts = new Command('fuzz')
  .option('--seconds <n>', 'fuzzing time per target', (s) => {
    if (!/^\d+$/.test(s) || Number(s) < 1) throw new InvalidArgumentError(`expected a positive whole number, got '${s}'.`);
    return Number(s);
  }, 60)
  .option('--targets <list>', `targets to run (${TARGETS.join(', ')})`, (s) => {
    const list = s.split(',').map((t) => t.trim());
    for (const t of list) if (!(TARGETS as readonly string[]).includes(t)) throw new InvalidArgumentError(`unknown target '${t}'; targets: ${TARGETS.join(', ')}.`);
    return list;
  }, [...TARGETS])
  .parse(process.argv.slice(2), { from: 'user' })
  .opts<{ seconds: number; targets: string[] }>();

const { cxx, cc } = findClang();
process.stderr.write(`fuzz: building ${relative(ROOT, BUILD)} with ${cxx}\n`);
sh('cmake', ['-S', 'runtime', '-B', BUILD, `-DCMAKE_CXX_COMPILER=${cxx}`, `-DCMAKE_C_COMPILER=${cc}`, '-DCMAKE_BUILD_TYPE=RelWithDebInfo', '-DMAGICDEC_FUZZ=ON', '-DMAGICDEC_TESTS=OFF']);
sh('cmake', ['--build', BUILD, '--parallel', '--target', ...opts.targets.map((t) => `fuzz_${t}`)]);

const failed: string[] = [];
for (const [i, target] of opts.targets.entries()) {
  const seeds = join(CORPUS, target);
  const out = join(ROOT, 'out/fuzz', target);
  const work = join(out, 'corpus'); // grows during the run; the committed seeds stay untouched
  rmSync(out, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  process.stderr.write(`[${i + 1}/${opts.targets.length}] ${target}: ${readdirSync(seeds).length} seed inputs, ${opts.seconds} s ... `);
  const r = spawnSync(
    join(BUILD, `fuzz_${target}`),
    [`-max_total_time=${opts.seconds}`, '-timeout=10', '-rss_limit_mb=2048', '-max_len=65536', `-dict=${join(ROOT, 'test/fuzz/json.dict')}`, `-artifact_prefix=${out}/`, '-print_final_stats=1', work, seeds],
    {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'ignore', 'pipe'],
      maxBuffer: 256 << 20,
      env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0', UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1' },
    },
  );
  const stat = (name: string) => r.stderr.match(new RegExp(`stat::${name}:\\s+(\\d+)`))?.[1] ?? '?';
  const artifacts = existsSync(out) ? readdirSync(out).filter((f) => /^(crash|leak|timeout|oom|slow-unit)-/.test(f)) : [];
  if (r.status === 0 && artifacts.length === 0) {
    process.stderr.write(`ok: ${stat('number_of_executed_units')} runs, ${stat('new_units_added')} new inputs\n`);
  } else {
    process.stderr.write(`FAILED (exit ${r.status ?? r.signal})\n${r.stderr.split('\n').slice(-60).join('\n')}\n`);
    failed.push(`${target}: ${artifacts.map((a) => relative(ROOT, join(out, a))).join(', ') || 'no artifact written'}`);
  }
}
if (failed.length) fail(`${failed.length} target(s) failed:\n  ${failed.join('\n  ')}`);
process.stderr.write(`fuzz: ${opts.targets.length} target(s) ran ${opts.seconds} s each with no crash, leak or timeout\n`);
