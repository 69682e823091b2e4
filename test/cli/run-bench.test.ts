// `magicdec bench` end to end on a toy grid (tiny model, one batch size, one context, gamma 3 and auto, a few
// tokens): every point's numbers follow from the raw measurements the JSON also holds (the cost model, the
// draft steps of gamma 'auto' counted as rounds x mean gamma, bytes hand-counted for tiny), speculative
// tokens equal the autoregressive ones, the triad runs in the same run, the JSON holds relative paths only,
// the SVG and the tables are written; bad flags exit 1 with one line.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CaseResult } from '../../bench/case.ts';
import type { PointMetrics } from '../../bench/metrics.ts';
import { chartSpec, renderSvg } from '../../bench/plot.ts';
import type { TriadResult } from '../../bench/triad.ts';
import { buildRuntime, REPO } from '../runtime/build-runtime.ts';

const run = promisify(execFile);
const BIN = join(REPO, 'bin/magicdec.js');
const BATCH = 2;
const CONTEXT = 640;
const TOKENS = 6;

let tmp: string;
beforeAll(() => {
  buildRuntime();
  tmp = mkdtempSync(join(tmpdir(), 'magicdec-bench-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Report {
  flags: { out: string };
  moduleGamma: number;
  triad: TriadResult;
  models: { name: string; synthetic: boolean; source: string }[];
  points: PointMetrics[];
  cases: CaseResult[];
}

describe('magicdec bench', () => {
  let report: Report;
  let stdout: string;
  let svg: string;

  beforeAll(async () => {
    const out = join(tmp, 'results');
    const args = [BIN, 'bench', '--models', 'tiny', '--batch', String(BATCH), '--context', String(CONTEXT), '--gamma', '3,auto', '--decode-tokens', String(TOKENS), '--out', out];
    ({ stdout } = await run(process.execPath, args, { cwd: REPO, maxBuffer: 16 << 20 }));
    const files = readdirSync(out).sort();
    expect(files).toHaveLength(2);
    expect(files[0]).toMatch(/^\d{4}-\d\d-\d\d\.json$/);
    expect(files[1]).toBe(files[0].replace('.json', '.svg'));
    const text = readFileSync(join(out, files[0]), 'utf8');
    // No absolute path: the output directory is recorded relative to the checkout.
    expect(text).not.toMatch(/"\/(work|home|tmp|root|usr)\//);
    expect(text).not.toContain(REPO);
    report = JSON.parse(text);
    svg = readFileSync(join(out, files[1]), 'utf8');
  }, 600_000);

  it('measures one point per gamma, each from its own segment of the same batch, exactly', () => {
    expect(report.points.map((p) => [p.model, p.context, p.batch, p.gamma, p.budget])).toEqual([
      ['tiny', CONTEXT, BATCH, 3, 512],
      ['tiny', CONTEXT, BATCH, 'auto', 512],
    ]);
    expect(report.moduleGamma).toBe(8); // gamma 'auto' chooses in 1..8
    const [c] = report.cases;
    const [b] = c.batches;
    expect(b.identical).toBe(true);
    expect(b.segments).toHaveLength(2);
    for (const [k, p] of report.points.entries()) {
      const s = b.segments[k];
      expect(p.identical).toBe(true);
      expect(s.tokens).toBeGreaterThanOrEqual(BATCH * TOKENS);
      // Every sequence stays in the batch: each round drafts its gamma for each of them.
      expect(s.drafted).toBe(s.rounds * s.meanGamma * BATCH);
      const spec = p.spec;
      expect(spec.acceptance).toBeCloseTo(s.accepted / s.drafted, 12);
      expect(spec.tokensPerRound).toBeCloseTo(1 + s.accepted / (s.rounds * BATCH), 12);
      expect(spec.tokensPerS).toBeCloseTo(s.tokens / (s.draftS + s.verifyS), 9);
      // Draft steps are rounds x the gamma each round drafted, not rounds x the module's gamma.
      expect(spec.draftStepS).toBeCloseTo(s.draftS / (s.drafted / BATCH), 12);
      expect(spec.verifyStepS).toBeCloseTo(s.verifyS / s.rounds, 12);
      expect(spec.draftOverAr).toBeCloseTo(spec.draftStepS / p.ar.stepS, 9);
      expect(spec.verifyOverAr).toBeCloseTo(spec.verifyStepS / p.ar.stepS, 9);
      const cost = spec.meanGamma * spec.draftOverAr + spec.verifyOverAr;
      // The cost model's prediction: tokens per round from the per-token acceptance the measured one implies.
      const rounds = Object.entries(spec.gammaRounds).map(([g, n]) => [Number(g), n]);
      const a = spec.perTokenAcceptance;
      const ratio = rounds.reduce((x, [g, n]) => x + n * Array.from({ length: g }, (_, k) => a ** (k + 1)).reduce((u, v) => u + v), 0) / rounds.reduce((x, [g, n]) => x + n * g, 0);
      expect(ratio).toBeCloseTo(spec.acceptance, 9);
      const tpr = rounds.reduce((x, [g, n]) => x + n * Array.from({ length: g + 1 }, (_, k) => a ** k).reduce((u, v) => u + v), 0) / s.rounds;
      expect(spec.predictedSpeedup).toBeCloseTo(tpr / cost, 9);
      // Tokens per round are 1 + gamma x accepted / drafted whatever the rejections' distribution, so with
      // consistent accounting the model's speedup is the measured one.
      expect(spec.tokensPerRound / cost).toBeCloseTo(spec.speedup, 9);
      expect(spec.predictedSpeedup).toBeCloseTo(spec.speedup, 9);
      expect(spec.speedup).toBeCloseTo(spec.tokensPerS / p.ar.tokensPerS, 9);
      if (p.gamma === 3) {
        expect(spec.meanGamma).toBe(3);
        expect(spec.gammaRounds).toEqual({ 3: s.rounds });
        expect(spec.predictedSpeedupAt08).toBeCloseTo((1 - 0.8 ** 4) / 0.2 / cost, 9);
      } else {
        expect(Object.keys(spec.gammaRounds).every((g) => Number(g) >= 1 && Number(g) <= 8)).toBe(true);
        expect(spec.meanGamma).toBeCloseTo(Object.entries(spec.gammaRounds).reduce((a, [g, n]) => a + Number(g) * n, 0) / s.rounds, 12);
      }
      // Segments follow one another: the second starts where the first ended.
      expect(p.firstPosition).toBe(CONTEXT + Math.round(s.startTokensPerSeq) - 1);
    }
    // Around each point an autoregressive segment on the same engine: exactly TOKENS AR steps, no round.
    expect(b.arSegments).toHaveLength(3);
    for (const a of b.arSegments) {
      expect(a.gamma).toBe('off');
      expect([a.arSteps, a.tokens, a.rounds, a.drafted]).toEqual([TOKENS, BATCH * TOKENS, 0, 0]);
      expect(a.arS).toBeGreaterThan(0);
    }
    for (const [k, p] of report.points.entries()) {
      const around = [b.arSegments[k], b.arSegments[k + 1]];
      expect(p.ar.steps).toBe(2 * TOKENS);
      expect(p.ar.stepS).toBeCloseTo((around[0].arS + around[1].arS) / (2 * TOKENS), 12);
      expect(p.ar.tokensPerS).toBeCloseTo((2 * BATCH * TOKENS) / (around[0].arS + around[1].arS), 9);
    }
    // Segments follow one another, AR ones included, after a warm-up of TOKENS AR steps.
    const order = [b.arSegments[0], b.segments[0], b.arSegments[1], b.segments[1], b.arSegments[2]];
    expect(order[0].startTokensPerSeq).toBeCloseTo(1 + TOKENS, 12);
    for (let i = 1; i < order.length; i++) expect(order[i].startTokensPerSeq).toBeCloseTo(order[i - 1].startTokensPerSeq + order[i - 1].tokens / BATCH, 12);
    // The AR engine decodes as far as the furthest speculative sequence.
    expect(b.ar.decodeTokens).toBe(BATCH * (b.arTokens - 1));
    expect(b.arTokens).toBeGreaterThanOrEqual(1 + TOKENS + order.reduce((n, x) => n + x.tokens, 0) / BATCH);
  });

  it('counts bytes per step and bandwidth against the triad of the same run', () => {
    const { triad } = report;
    expect(triad.threads).toBeGreaterThanOrEqual(1);
    expect(triad.bytesPerRep).toBe(3 * triad.arrayBytes);
    expect(triad.gbPerS).toBeGreaterThan(0);
    // tiny in bf16: every weight but the embedding is 918784 bytes, an embedding row 256, a cached position
    // 2 layers x K, V x 2 KV heads x 32 x 2 bytes = 512.
    const WEIGHTS = 918784;
    const ROW = 256;
    const POSITION = 512;
    const b = report.cases[0].batches[0];
    for (const [k, p] of report.points.entries()) {
      const a = p.ar.traffic;
      // The point's AR steps: TOKENS from each segment around it, each step's rows one position further.
      const around = [b.arSegments[k], b.arSegments[k + 1]];
      const positions = around.flatMap((s) => Array.from({ length: TOKENS }, (_, i) => CONTEXT + Math.round(s.startTokensPerSeq) - 1 + i + 1));
      const arKv = (BATCH * POSITION * positions.reduce((x, y) => x + y)) / positions.length;
      const kernel = (c: 'attention' | 'gemm') => around[0].kernelS.ar[c] + around[1].kernelS.ar[c];
      expect(a.step.bytesPerStep.weights).toBe(WEIGHTS + BATCH * ROW);
      expect(a.step.bytesPerStep.kv).toBeCloseTo(arKv, 6);
      expect(a.step.stepS).toBeCloseTo((around[0].arS + around[1].arS) / (2 * TOKENS), 12);
      expect(a.step.ofTriad).toBeCloseTo(a.step.gbPerS / triad.gbPerS, 9);
      expect(a.attention.gbPerS).toBeCloseTo(arKv / (kernel('attention') / (2 * TOKENS)) / 1e9, 6);
      expect(a.gemm.gbPerS).toBeCloseTo((WEIGHTS + BATCH * ROW) / (kernel('gemm') / (2 * TOKENS)) / 1e9, 6);
      // The draft reads sink 4 + window 508 positions per row once the context is past them.
      const d = p.spec.draft;
      expect(d.step.bytesPerStep).toEqual({ weights: WEIGHTS + BATCH * ROW, kv: BATCH * 512 * POSITION, total: WEIGHTS + BATCH * ROW + BATCH * 512 * POSITION });
      // Verification reads each sequence's cache once for its gamma + 1 rows.
      const v = p.spec.verify;
      expect(v.step.bytesPerStep.weights).toBeCloseTo(WEIGHTS + BATCH * (p.spec.meanGamma + 1) * ROW, 6);
      expect(v.step.bytesPerStep.kv).toBeGreaterThan(BATCH * p.firstPosition * POSITION);
      for (const t of [a.time, d.time, v.time]) {
        const parts = [t.attention, t.gemm, t.normRope, t.other];
        for (const x of parts) expect(x).toBeGreaterThan(0);
        expect(t.host).toBeGreaterThanOrEqual(0);
        expect(parts.reduce((x, y) => x + y) + t.host).toBeCloseTo(1, 9);
      }
    }
    const m = report.cases[0].memory;
    expect(m.peakRss).toBeGreaterThan(m.startRss);
    // The speculative pool: 2 points x 6 tokens x (8 + 1), 4 AR segments (the warm-up too) x 6 tokens, + 1
    // tokens and gamma 8 past the prompt, whole pages.
    expect(m.kvBytes).toBe(BATCH * Math.ceil((CONTEXT + 2 * TOKENS * 9 + 4 * TOKENS + 1 + 8) / 64) * 64 * POSITION);
  });

  it('records relative paths, and writes the chart and the tables', async () => {
    expect(report.flags.out).not.toMatch(/^\//);
    expect(report.models).toEqual([expect.objectContaining({ name: 'tiny', synthetic: false, source: 'preset tiny, seed 1, bf16 (out/bench/models/tiny)' })]);
    expect(svg).toMatch(/^<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    expect(svg).toContain(`speculative / autoregressive tokens/s, context ${CONTEXT}`);
    expect(svg).toContain(`achieved bandwidth / STREAM triad, context ${CONTEXT}`);
    expect(svg).toContain('tiny, gamma auto');
    expect(svg).toContain('verify attention (gamma 3)');
    expect(stdout).toMatch(/^model +context +batch +budget +gamma +AR tok\/s +spec tok\/s +speedup +accept +a +tok\/round +mean gamma +Td\/Tar +Tv\/Tar +model speedup +at a=0\.8 +same tokens$/m);
    expect(stdout).toMatch(new RegExp(`^tiny +${CONTEXT} +${BATCH} +512 +auto .* yes$`, 'm'));
    expect(stdout).toMatch(/^model +context +batch +budget +gamma +AR step +AR attn +AR GEMM +draft step/m);
    expect(stdout).toMatch(/^model +context +batch +budget +gamma +step +ms\/step +attention +GEMM +norm\+rope +other +host$/m);
    expect(stdout).toMatch(/^ +512 +3 +verify /m);
    // A synthetic model is labelled so in the chart.
    const synthetic = await renderSvg(chartSpec(report.points.map((p) => ({ ...p, model: 'local', synthetic: true })), 't'));
    expect(synthetic).toContain('local (synthetic), gamma 3');
  });
});

describe('magicdec bench: bad flags', () => {
  const cases: [string[], string][] = [
    [['--batch', '0'], '--batch: 0 is outside 1..4096'],
    [['--batch', '1,,2'], "--batch takes a comma-separated list, got '1,,2'"],
    [['--gamma', '3,x'], "--gamma: expected a whole number, got 'x'"],
    [['--gamma', '17'], '--gamma: 17 is outside 1..16'],
    [['--context', '4M'], "--context: expected a whole number (or NK, N * 1024), got '4M'"],
    [['--context', '1K,1K'], "--context lists a value twice: '1K,1K'"],
    [['--decode-tokens', '1'], '--decode-tokens: 1 is outside 2..65536'],
    [['--models', 'nosuch'], "--models: 'nosuch' is neither a preset (tiny, small, mha, gqa, local) nor a model directory"],
  ];
  for (const [flags, message] of cases) {
    it(`${flags.join(' ')}: exit 1, one line`, async () => {
      const e = await run(process.execPath, [BIN, 'bench', ...flags, '--out', join(tmp, 'never')], { cwd: REPO }).catch((x) => x);
      expect(e.code).toBe(1);
      expect(e.stderr).toBe(`magicdec: error: ${message}\n`);
      expect(readdirSync(tmp)).not.toContain('never');
    });
  }
});
