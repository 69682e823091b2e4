// `npm run bench` end to end at toy sizes: every case runs in its own process, speculative tokens equal the
// autoregressive ones, the STREAM triad runs in the same run, AR and draft steps get their bytes read
// (hand-counted below for tiny) and achieved bandwidth, and the JSON, the SVG chart and the tables are written.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CaseWithBandwidth } from '../../bench/bandwidth.ts';
import type { TriadResult } from '../../bench/triad.ts';
import { buildRuntime, REPO } from '../runtime/build-runtime.ts';

let tmp: string;
beforeAll(() => {
  buildRuntime();
  tmp = mkdtempSync(join(tmpdir(), 'magicdec-bench-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('bench', () => {
  it('measures AR and speculative decoding per case and writes JSON, SVG and a table', () => {
    const args = ['--import', 'tsx', join(REPO, 'bench/run.ts'), '--models', 'tiny', '--context', '600', '--sweep', '200', '--wide-window', '1020', '--decode-tokens', '12', '--out', tmp];
    const stdout = execFileSync(process.execPath, args, { cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const files = readdirSync(tmp).sort();
    expect(files).toHaveLength(2);
    expect(files[0]).toMatch(/^\d{4}-\d\d-\d\d\.json$/);
    expect(files[1]).toBe(files[0].replace('.json', '.svg'));

    const report = JSON.parse(readFileSync(join(tmp, files[0]), 'utf8')) as { results: CaseWithBandwidth[]; gamma: number; triad: TriadResult };
    expect(report.results.map((r) => [r.model, r.context, r.batch])).toEqual([['tiny', 200, 8], ['tiny', 600, 8]]);
    const { triad } = report;
    expect(triad.threads).toBeGreaterThanOrEqual(1);
    expect(triad.arrayBytes).toBeGreaterThanOrEqual(128 * 2 ** 20);
    expect(triad.bytesPerRep).toBe(3 * triad.arrayBytes);
    expect(triad.gbPerS).toBeGreaterThan(0);

    // tiny in bf16: every weight but the embedding is 918784 bytes, an embedding row 256, a cached position
    // 2 layers x K, V x 2 KV heads x 32 x 2 bytes = 512. Decode steps run at q = context .. context + 10.
    const WEIGHTS = 918784;
    const ROW = 256;
    const POSITION = 512;
    const meanRead = (context: number, budget: number) => Array.from({ length: 11 }, (_, i) => Math.min(context + i + 1, budget)).reduce((a, b) => a + b) / 11;
    for (const r of report.results) {
      expect(r.ar.decodeTokens).toBe(8 * 11);
      expect(r.ar.tokensPerS).toBeGreaterThan(0);
      expect(r.spec.map((s) => s.draftWindow)).toEqual([undefined, 1020]);
      for (const s of r.spec) {
        expect(s.identical).toBe(true);
        expect(s.summary.decodeTokens).toBe(8 * 11);
        expect(s.summary.tokensPerRound).toBeGreaterThanOrEqual(1);
        expect(s.summary.tokensPerRound).toBeLessThanOrEqual(report.gamma + 1);
        expect(s.draftOverAr).toBeGreaterThan(0);
        expect(s.verifyOverAr).toBeGreaterThan(0);
        expect(s.speedup).toBeCloseTo(s.summary.tokensPerS / r.ar.tokensPerS, 10);
        // Draft steps: one row per live sequence; sink 4 + window reads at most 4 + window positions.
        const rows = s.sequenceRounds / s.summary.steps;
        expect(rows).toBeGreaterThan(0);
        expect(rows).toBeLessThanOrEqual(8);
        const d = s.draftBandwidth;
        expect(d.bytesPerStep.weights).toBeCloseTo(WEIGHTS + rows * ROW, 6);
        expect(d.bytesPerStep.kv).toBeCloseTo(rows * meanRead(r.context, 4 + (s.draftWindow ?? 508)) * POSITION, 6);
        expect(d.stepS).toBeCloseTo(s.summary.draftS / (s.summary.steps * report.gamma), 12);
        expect(d.gbPerS).toBeCloseTo(d.bytesPerStep.total / d.stepS / 1e9, 9);
        expect(d.ofTriad).toBeCloseTo(d.gbPerS / triad.gbPerS, 9);
      }
      // AR steps: all 8 sequences each step, the whole cache of each.
      const a = r.arBandwidth;
      expect(a.bytesPerStep).toEqual({ weights: WEIGHTS + 8 * ROW, kv: 8 * (r.context + 6) * POSITION, total: WEIGHTS + 8 * ROW + 8 * (r.context + 6) * POSITION });
      expect(a.stepS).toBeCloseTo(r.ar.decodeS / r.ar.steps, 12);
      expect(a.gbPerS).toBeCloseTo(a.bytesPerStep.total / a.stepS / 1e9, 9);
      expect(a.ofTriad).toBeCloseTo(a.gbPerS / triad.gbPerS, 9);
      // The draft reads everything up to 4 + 1020 positions: it is the target there, so it is never wrong.
      expect(r.spec[1].summary.acceptance).toBe(1);
      expect(r.memory.peakRss).toBeGreaterThan(r.memory.startRss);
      expect(r.memory.kvBytes).toBe(8 * Math.ceil((r.context + 12 + report.gamma) / 64) * 64 * 2 * 2 * 2 * 32 * 2);
    }
    // Past the default draft budget (4 + 508 positions) the sparse draft does miss.
    expect(report.results[1].spec[0].summary.acceptance).toBeLessThan(1);

    const svg = readFileSync(join(tmp, files[1]), 'utf8');
    expect(svg).toMatch(/^<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    expect(svg).toContain('tiny, sink 4 + window 1020 (wider draft)');
    expect(stdout).toMatch(/^model +context +draft +AR tok\/s +spec tok\/s +speedup/m);
    expect(stdout).toMatch(/^tiny +600 +sink 4 \+ window 1020\* .* yes /m);
    expect(svg).toContain('achieved memory bandwidth / STREAM triad');
    expect(stdout).toMatch(/^model +context +draft +AR MB\/step +AR KV share +AR GB\/s +AR\/triad +draft MB\/step/m);
    // At 600 the default draft reads 512 positions per row, the wider one all 606 (as AR does).
    expect(stdout).toMatch(/^tiny +600 +sink 4 \+ window 1020\* +3\.40 +72\.9% .* 3\.40 +72\.9% /m);
  });
});
