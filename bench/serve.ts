// `magicdec bench-serve`: throughput and latency of `magicdec serve` against offered load, autoregressive
// vs self-speculative, in one run on this machine. For each mode it starts `magicdec serve` as a child
// process on a loopback port (--port 0; bench/ stays below server/, test/imports.test.ts), sends one warm-up request, then runs every load level (bench/load.ts: closed-loop
// clients and/or open-loop Poisson rates) with the same requests: prompts of random token ids whose lengths
// cycle through --context, each generating --max-tokens tokens (ignore_eos). Writes
// <out>/serve-<date>.json and .svg (bench/plot.ts's renderer) and prints a table. Speculative and
// autoregressive responses to the same request must carry the same tokens (greedy, lossless).
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, relative, resolve } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { loadDeployment } from '../lib/deployment.ts';
import { UserError } from '../lib/errors.ts';
import { fmt } from '../lib/format.ts';
import type { Io } from '../lib/io.ts';
import { progress } from '../lib/progress.ts';
import { readModelDir } from '../lib/model-dir.ts';
import { RANDOM_PRESETS, type RandomPreset } from '../model/random.ts';
import { presetModel, ROOT } from './grid.ts';
import { loadLabel, rng, runLevel, summarizeLevel, type LevelSummary, type Load, type LoadRequest, type RequestRecord } from './load.ts';
import { renderSvg } from './plot.ts';

export type ServeMode = 'ar' | 'spec';

export interface ServeBenchOptions {
  /** A preset of `magicdec model random` or a model directory (with tokenizer.json). */
  readonly model: string;
  /** Prompt lengths; request i's prompt has contexts[i % contexts.length] tokens. */
  readonly contexts: readonly number[];
  readonly maxTokens: number;
  readonly loads: readonly Load[];
  /** Requests per load level. */
  readonly requests: number;
  readonly modes: readonly ServeMode[];
  readonly maxBatch: number;
  /** The server's --step-tokens; default: the server's. */
  readonly stepTokens?: number;
  readonly seed: number;
  readonly out: string;
  readonly cache?: string;
  /** Spec for the server (its passes, verifier, gamma); default: the built-in deployment. */
  readonly spec?: string;
}

export const DEFAULT_SERVE_BENCH = {
  model: 'mha',
  contexts: [1024, 4096],
  maxTokens: 32,
  loads: [
    { kind: 'closed', clients: 1 },
    { kind: 'closed', clients: 4 },
  ],
  requests: 4,
  modes: ['ar', 'spec'],
  maxBatch: 8,
  seed: 1,
  out: join(ROOT, 'bench/results'),
} as const satisfies ServeBenchOptions;

export interface ServeLevel extends LevelSummary {
  readonly mode: ServeMode;
  readonly load: Load;
  readonly label: string;
  /** Every completed request's tokens equal the other mode's for the same request (null: only one mode ran). */
  readonly identical: boolean | null;
  readonly records: readonly Omit<RequestRecord, 'itlS' | 'tokenIds'>[];
}

/** The requests every level sends: seeded random prompts, lengths cycling through `contexts`. */
export function makeRequests(o: Pick<ServeBenchOptions, 'contexts' | 'maxTokens' | 'requests' | 'seed'>, vocab: number): LoadRequest[] {
  const r = rng(o.seed);
  return Array.from({ length: o.requests }, (_, i) => ({
    prompt: Array.from({ length: o.contexts[i % o.contexts.length] }, () => Math.floor(r() * vocab)),
    maxTokens: o.maxTokens,
  }));
}

const ms = (s: number) => fmt(1000 * s);

function table(levels: readonly ServeLevel[]): string {
  const head = ['mode', 'load', 'ok', 'tok/s', 'req/s', 'TTFT p50 ms', 'TTFT p99 ms', 'ITL p50 ms', 'ITL p99 ms', 'TPOT p50 ms', 'e2e p50 s', 'accept', 'tok/round', 'same tokens'];
  const rows = levels.map((l) => [
    l.mode,
    l.label,
    `${l.requests - l.failed}/${l.requests}`,
    fmt(l.outputTokensPerS),
    fmt(l.requestsPerS),
    ms(l.ttftS.p50),
    ms(l.ttftS.p99),
    ms(l.itlS.p50),
    ms(l.itlS.p99),
    ms(l.tpotS.p50),
    fmt(l.e2eS.p50),
    l.acceptance === null ? '-' : l.acceptance.toFixed(3),
    l.tokensPerRound === null ? '-' : l.tokensPerRound.toFixed(2),
    l.identical === null ? '-' : l.identical ? 'yes' : 'NO',
  ]);
  const all = [head, ...rows];
  const w = head.map((_, c) => Math.max(...all.map((r) => r[c].length)));
  return all.map((r) => r.map((x, c) => (c < 2 ? x.padEnd(w[c]) : x.padStart(w[c]))).join('  ')).join('\n') + '\n';
}

/** Three panels against offered load: output tokens/s, TTFT and ITL (p50 solid, p99 dashed), per mode. */
export function serveChartSpec(levels: readonly ServeLevel[], title: string): TopLevelSpec {
  const order = [...new Set(levels.map((l) => l.label))];
  const x = { field: 'load', type: 'ordinal', sort: order, title: 'offered load', axis: { labelAngle: 0 } } as const;
  const color = { field: 'mode', type: 'nominal', title: null, legend: { orient: 'bottom' } } as const;
  const tput = levels.map((l) => ({ load: l.label, mode: l.mode, value: l.outputTokensPerS }));
  const lat = (key: 'ttftS' | 'itlS') =>
    levels.flatMap((l) => [
      { load: l.label, mode: l.mode, stat: 'p50', value: 1000 * l[key].p50 },
      { load: l.label, mode: l.mode, stat: 'p99', value: 1000 * l[key].p99 },
    ]);
  const panel = (t: string, values: unknown[], y: string, dash: boolean) => ({
    title: t,
    data: { values },
    width: 260,
    height: 200,
    mark: { type: 'line', point: true },
    encoding: {
      x,
      y: { field: 'value', type: 'quantitative', title: y },
      color,
      ...(dash ? { strokeDash: { field: 'stat', type: 'nominal', title: null, legend: { orient: 'bottom' } } } : {}),
    },
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    hconcat: [
      panel('throughput (output tokens/s)', tput, 'tokens/s', false),
      panel('time to first token', lat('ttftS'), 'ms', true),
      panel('inter-token latency', lat('itlS'), 'ms', true),
    ],
  } as TopLevelSpec;
}

export interface ServeBenchReport {
  readonly jsonPath: string;
  readonly svgPath: string;
  readonly levels: ServeLevel[];
}

function modelDir(name: string, io: Io): { dir: string; preset?: RandomPreset } {
  if ((RANDOM_PRESETS as readonly string[]).includes(name)) return { dir: presetModel(name as RandomPreset, io), preset: name as RandomPreset };
  return { dir: resolve(name) };
}

interface Child {
  readonly url: string;
  readonly modelId: string;
  readonly module: string;
  stop(): Promise<void>;
}

/** `magicdec serve` in a child process; resolves once it says where it listens. */
function startServe(args: readonly string[]): Promise<Child> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/magicdec.js'), 'serve', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let up = false;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /listening on (\S+) \(model '([^']*)', module (\S+),/.exec(out);
      if (m && !up) {
        up = true;
        res({ url: m[1], modelId: m[2], module: m[3], stop: () => (child.kill('SIGTERM'), exited) });
      }
    });
    child.once('exit', (code) => {
      if (!up) rej(new UserError(`bench-serve: magicdec serve exited (${code}) before listening: ${err.trim().split('\n').pop() ?? ''}`));
    });
  });
}

export async function runServeBench(o: ServeBenchOptions, io: Io): Promise<ServeBenchReport> {
  const t0 = performance.now();
  const { dir, preset } = modelDir(o.model, io);
  const config = readModelDir(dir);
  const requests = makeRequests(o, config.vocabSize);
  const longest = Math.max(...o.contexts);
  const levels: ServeLevel[] = [];
  const tokensOf = new Map<string, (readonly number[] | undefined)[]>();
  const units = o.modes.length * o.loads.length * o.requests;
  const bar = progress(io, 'bench-serve');
  let done = 0;
  let moduleName = '';
  let gamma = 0;
  try {
    for (const mode of o.modes) {
      // Pages for max-batch sequences of the longest request; more requests queue for admission.
      const dep = await loadDeployment(o.spec);
      const { pageSize } = dep.shapes;
      gamma = dep.gamma;
      const perSeq = Math.ceil((longest + o.maxTokens + 16) / pageSize) + 1;
      const server = await startServe([
        '--model', dir, ...(o.spec ? ['--spec', resolve(o.spec)] : []), '--host', '127.0.0.1', '--port', '0', '--mode', mode,
        '--max-batch', String(o.maxBatch), '--kv-pages', String(o.maxBatch * perSeq), '--max-queue', String(Math.max(256, o.requests)),
        '--max-body-bytes', String(64 << 20), '--shutdown-grace', '5', ...(o.cache ? ['--cache', resolve(o.cache)] : []),
        ...(o.stepTokens === undefined ? [] : ['--step-tokens', String(o.stepTokens)]),
      ]);
      moduleName = server.module;
      try {
        const warm = await runLevel(server.url, server.modelId, { kind: 'closed', clients: 1 }, [{ prompt: requests[0].prompt.slice(0, 16), maxTokens: 4 }], o.seed);
        if (!warm[0].ok) throw new UserError(`bench-serve: the ${mode} server's warm-up request failed (${warm[0].status}): ${warm[0].error}`);
        for (const [li, load] of o.loads.entries()) {
          const label = loadLabel(load);
          const records = await runLevel(server.url, server.modelId, load, requests, o.seed + li, () => bar.update(++done, units, `${mode}, ${label}`));
          const bad = records.find((r) => !r.ok);
          if (bad) io.stderr.write(`bench-serve: ${mode}, ${label}: a request failed (${bad.status}): ${bad.error}\n`);
          tokensOf.set(`${mode}/${li}`, records.map((r) => (r.ok ? r.tokenIds : undefined)));
          levels.push({ mode, load, label, ...summarizeLevel(records), identical: null, records: records.map(({ itlS: _i, tokenIds: _t, ...r }) => r) });
        }
      } finally {
        await server.stop();
      }
    }
  } finally {
    bar.stop();
  }
  // Lossless: the same request gives the same tokens in both modes, at every load.
  if (o.modes.length === 2) {
    for (const [i, l] of levels.entries()) {
      const li = o.loads.indexOf(l.load);
      const [a, b] = o.modes.map((m) => tokensOf.get(`${m}/${li}`)!);
      levels[i] = { ...l, identical: a.every((t, k) => t === undefined || b[k] === undefined || t.join() === b[k]!.join()) };
    }
  }

  const date = new Date().toISOString().slice(0, 10);
  mkdirSync(o.out, { recursive: true });
  const jsonPath = join(o.out, `serve-${date}.json`);
  const svgPath = join(o.out, `serve-${date}.svg`);
  const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryBytes: totalmem(), node: process.version };
  const rel = (p: string) => relative(ROOT, resolve(p)) || '.';
  const elapsedS = (performance.now() - t0) / 1000;
  const report = {
    date,
    machine,
    flags: { ...o, out: rel(o.out), ...(o.cache ? { cache: rel(o.cache) } : {}), ...(o.spec ? { spec: rel(o.spec) } : {}) },
    model: { name: preset ?? rel(dir), source: preset ? `preset ${preset}, seed 1, bf16 (${rel(dir)})` : rel(dir), config },
    module: moduleName,
    gamma,
    notes: 'open-loop levels: Poisson arrivals at the rate; closed-loop: N clients back to back. ITL: gaps between streamed tokens (a chunk of k tokens: one gap and k - 1 zeros). Percentiles: linear interpolation (bench/load.ts).',
    levels,
    elapsedS,
  };
  writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  const title = `magicdec serve, ${preset ? `random ${preset} model` : rel(dir)}, prompts ${o.contexts.join('/')} tokens, ${o.maxTokens} out, CPU (${machine.cores} cores)`;
  writeFileSync(svgPath, await renderSvg(serveChartSpec(levels, title)));
  io.stdout.write(table(levels));
  io.stdout.write(`\nITL: gaps between streamed tokens (a speculative round's k tokens arrive together: one gap, k - 1 zeros). TPOT: (e2e - TTFT) / (tokens - 1) per request.\n`);
  io.stdout.write(`wrote ${relative(process.cwd(), jsonPath)} and ${relative(process.cwd(), svgPath)} in ${elapsedS.toFixed(0)} s\n`);
  const differ = levels.find((l) => l.identical === false);
  if (differ) throw new UserError(`bench-serve: speculative tokens differ from autoregressive tokens at ${differ.label}: the server is not lossless`);
  const failed = levels.find((l) => l.failed > 0);
  if (failed) throw new UserError(`bench-serve: ${failed.failed} request(s) failed at ${failed.mode}, ${failed.label} (first error above)`);
  return { jsonPath, svgPath, levels };
}
