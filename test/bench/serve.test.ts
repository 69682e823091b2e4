// `magicdec bench-serve` (bench/serve.ts, bench/load.ts): the statistics against hand-computed cases, the
// arrival process, bad flags, and one tiny run end to end (tiny model, the server tests' spec, 3 requests
// per level) whose JSON and SVG are checked.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.ts';
import { percentile, poissonArrivals, rng, summarize, summarizeLevel, type RequestRecord } from '../../bench/load.ts';
import { memoryIo } from '../../lib/io.ts';
import { SPEC } from '../server/support.ts';

const rec = (r: Partial<RequestRecord>): RequestRecord => ({
  promptTokens: 10, startS: 0, ok: true, status: 200, ttftS: 0, itlS: [], e2eS: 0, tokens: 0, drafted: 0, accepted: 0, rounds: 0, tokenIds: [], ...r,
});

describe('percentile and summaries', () => {
  it('interpolates linearly between closest ranks (hand-computed)', () => {
    expect(percentile([4, 1, 3, 2], 0.5)).toBe(2.5); // h = 1.5: between 2 and 3
    expect(percentile([4, 1, 3, 2], 0)).toBe(1);
    expect(percentile([4, 1, 3, 2], 1)).toBe(4);
    expect(percentile([4, 1, 3, 2], 0.99)).toBeCloseTo(3.97, 12); // h = 2.97: 3 + 0.97
    expect(percentile([10, 20, 30, 40, 50], 0.9)).toBeCloseTo(46, 12); // h = 3.6: 40 + 0.6 * 10
    expect(percentile([7], 0.99)).toBe(7);
    expect(percentile([], 0.5)).toBeNaN();
    expect(() => percentile([1], 1.5)).toThrow(/q must be in/);
  });

  it('summarizes a sample', () => {
    expect(summarize([3, 1, 2])).toEqual({ n: 3, mean: 2, p50: 2, p90: 2.8, p99: 2.98, max: 3 });
  });

  it('summarizes a level: throughput over its span, pooled gaps, acceptance over drafted, failures excluded', () => {
    const l = summarizeLevel([
      rec({ startS: 0, ttftS: 0.5, itlS: [0.1, 0.3], e2eS: 0.9, tokens: 3, drafted: 6, accepted: 3, rounds: 2 }),
      rec({ startS: 1, ttftS: 0.2, itlS: [0.2], e2eS: 1, tokens: 2, drafted: 2, accepted: 0, rounds: 2 }),
      rec({ startS: 0.5, ok: false, status: 429, e2eS: 0.01, tokens: 0 }),
    ]);
    expect(l.requests).toBe(3);
    expect(l.failed).toBe(1);
    expect(l.durationS).toBe(2); // 0 .. 1 + 1
    expect(l.outputTokensPerS).toBe(2.5); // 5 tokens / 2 s
    expect(l.requestsPerS).toBe(1);
    expect(l.ttftS.p50).toBeCloseTo(0.35, 12);
    expect(l.itlS.n).toBe(3);
    expect(l.itlS.p50).toBeCloseTo(0.2, 12);
    expect(l.tpotS.p50).toBeCloseTo((0.2 + 0.8) / 2, 12); // (0.9 - 0.5) / 2 and (1 - 0.2) / 1
    expect(l.acceptance).toBe(3 / 8);
    expect(l.tokensPerRound).toBe(5 / 4);
    expect(summarizeLevel([rec({ tokens: 4, e2eS: 1 })]).acceptance).toBeNull();
  });

  it('draws Poisson arrivals: starts at 0, ascending, mean gap 1 / rate, repeatable from the seed', () => {
    const a = poissonArrivals(4000, 5, rng(3));
    expect(a[0]).toBe(0);
    expect(a.every((t, i) => i === 0 || t >= a[i - 1])).toBe(true);
    expect(a[a.length - 1] / (a.length - 1)).toBeGreaterThan(0.19);
    expect(a[a.length - 1] / (a.length - 1)).toBeLessThan(0.21);
    expect(poissonArrivals(5, 2, rng(9))).toEqual(poissonArrivals(5, 2, rng(9)));
  });
});

describe('magicdec bench-serve', () => {
  for (const [args, msg] of [
    [['--clients', '0'], /^magicdec: error: --clients: 0 is outside 1\.\.4096\n$/],
    [['--rate', 'fast'], /^magicdec: error: --rate: expected a request rate > 0 .*got 'fast'\n$/],
    [['--rate', '0'], /^magicdec: error: --rate: expected a request rate > 0/],
    [['--modes', 'ar,turbo'], /^magicdec: error: --modes: expected ar and\/or spec, got 'turbo'\n$/],
    [['--model', 'no/such/dir'], /^magicdec: error: --model: 'no\/such\/dir' is neither a preset/],
    [['--context', '4K,,16K'], /^magicdec: error: --context takes a comma-separated list/],
    [['--step-tokens', '0'], /^magicdec: error: --step-tokens: 0 is outside 1\.\.2147483647\n$/],
  ] as const) {
    it(`refuses ${args.join(' ')} in one line, exit 1`, async () => {
      const io = memoryIo();
      expect(await main(['bench-serve', ...args], io)).toBe(1);
      expect(io.err()).toMatch(msg);
      expect(io.err().trim().split('\n')).toHaveLength(1);
    });
  }

  const out = mkdtempSync(join(tmpdir(), 'bench-serve-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('measures a tiny grid end to end and writes the JSON and the SVG', async () => {
    const io = memoryIo();
    const args = ['bench-serve', '--model', 'tiny', '--spec', SPEC, '--context', '32,96', '--max-tokens', '6', '--clients', '2', '--rate', '50', '--requests', '3', '--max-batch', '8', '--out', out];
    const code = await main(args, io);
    expect(code, io.err()).toBe(0);
    const files = readdirSync(out).sort();
    expect(files).toHaveLength(2);
    const json = JSON.parse(readFileSync(join(out, files[0]), 'utf8'));
    expect(json.flags.out).not.toMatch(/^\//);
    expect(json.levels.map((l: { mode: string; label: string }) => `${l.mode} ${l.label}`)).toEqual(['ar 2 clients', 'ar 50 req/s', 'spec 2 clients', 'spec 50 req/s']);
    for (const l of json.levels) {
      expect(l.requests).toBe(3);
      expect(l.failed).toBe(0);
      expect(l.identical).toBe(true);
      expect(l.records.map((r: { promptTokens: number }) => r.promptTokens)).toEqual([32, 96, 32]);
      expect(l.records.every((r: { tokens: number }) => r.tokens === 6)).toBe(true);
      expect(l.outputTokensPerS).toBeGreaterThan(0);
      expect(l.ttftS.n).toBe(3);
      expect(l.itlS.n).toBe(15);
      expect(l.ttftS.p99).toBeGreaterThanOrEqual(l.ttftS.p50);
      expect(l.itlS.p99).toBeGreaterThanOrEqual(l.itlS.p50);
      if (l.mode === 'ar') expect([l.acceptance, l.tokensPerRound]).toEqual([null, null]);
      else {
        expect(l.acceptance).toBeGreaterThanOrEqual(0);
        expect(l.acceptance).toBeLessThanOrEqual(1);
        expect(l.tokensPerRound).toBeGreaterThanOrEqual(1);
      }
    }
    const svg = readFileSync(join(out, files[1]), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    for (const t of ['throughput (output tokens/s)', 'time to first token', 'inter-token latency', '2 clients', '50 req/s']) expect(svg).toContain(t);
    expect(io.out()).toMatch(/^mode +load +ok +tok\/s/);
  }, 240_000);
});
