// `npm run bench` end to end at toy sizes: every case runs in its own process, speculative tokens equal the
// autoregressive ones, and the JSON, the SVG chart and the summary table are written.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CaseResult } from '../../bench/case.ts';
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

    const report = JSON.parse(readFileSync(join(tmp, files[0]), 'utf8')) as { results: CaseResult[]; gamma: number };
    expect(report.results.map((r) => [r.model, r.context, r.batch])).toEqual([['tiny', 200, 8], ['tiny', 600, 8]]);
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
      }
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
  });
});
