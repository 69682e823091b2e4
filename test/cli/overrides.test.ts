// gen's shape flags: each bad value is rejected with a message that names it.
import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import * as overrides from '../../cli/overrides.ts';
import { applyOverrides, parseBatch, parseGamma, parseMaxSeq } from '../../cli/overrides.ts';
import * as limits from '../../codegen/limits.ts';
import { makeDeployment } from '../support/deployments.ts';

describe('flag parsers', () => {
  it('parse good values', () => {
    expect(parseBatch('1,8,32')).toEqual([1, 8, 32]);
    expect(parseBatch('4')).toEqual([4]);
    expect(parseGamma('3')).toBe(3);
    expect(parseGamma('auto')).toBe('auto');
    expect(parseMaxSeq('4096')).toBe(4096);
  });

  it.each([
    ['1,x', /whole number, got 'x'/],
    ['1,,8', /whole number, got ''/],
    ['0,8', /batch bucket 0 is out of range/],
    ['8,1', /strictly ascending, got 8,1/],
    ['8,8', /strictly ascending/],
    ['1.5', /whole number/],
    ['-1', /whole number/],
  ])('--batch %j is rejected', (text, msg) => {
    expect(() => parseBatch(text)).toThrow(InvalidArgumentError);
    expect(() => parseBatch(text)).toThrow(msg);
  });

  it.each(['0', '17', 'two', '1e2', 'AUTO', 'auto3'])('--gamma %j is rejected', (text) => {
    expect(() => parseGamma(text)).toThrow(InvalidArgumentError);
    expect(() => parseGamma(text)).toThrow(/or 'auto'/);
  });

  it.each(['0', '99999999', '4k'])('--max-seq %j is rejected', (text) => {
    expect(() => parseMaxSeq(text)).toThrow(InvalidArgumentError);
  });
});

describe('applyOverrides', () => {
  const dep = makeDeployment({ pageSize: 16, maxSeq: 4096, arch: 'cpu', dtype: 'fp32' });

  it('replaces exactly the given fields', () => {
    const out = applyOverrides(dep, { target: 'sm_80', batch: [2, 4], maxSeq: 1024, gamma: 5, dtype: 'bf16' });
    expect(out).toEqual({ ...dep, arch: 'sm_80', dtype: 'bf16', gamma: 5, shapes: { batch: [2, 4], maxSeq: 1024, pageSize: 16 } });
    expect(applyOverrides(dep, {})).toEqual(dep);
  });

  it("--gamma auto compiles an adaptive module for the spec's gammaMax or DEFAULT_GAMMA_MAX; --gamma N a fixed one", () => {
    expect(applyOverrides(dep, { gamma: 'auto' })).toEqual({ ...dep, gamma: limits.DEFAULT_GAMMA_MAX, adaptiveGamma: true });
    const adaptive = { ...dep, gamma: 5, adaptiveGamma: true as const };
    expect(applyOverrides(adaptive, { gamma: 'auto' })).toEqual(adaptive);
    const fixed = applyOverrides(adaptive, { gamma: 2 });
    expect(fixed).toEqual({ ...dep, gamma: 2 });
    expect(fixed).not.toHaveProperty('adaptiveGamma');
    expect(applyOverrides(adaptive, {})).toEqual(adaptive);
  });

  it('rejects a max-seq that is not whole pages or is past the model', () => {
    expect(() => applyOverrides(dep, { maxSeq: 8 })).toThrow(/--max-seq 8 is not a multiple of the spec's page size 16/);
    expect(() => applyOverrides(dep, { maxSeq: 1000 })).toThrow(/--max-seq 1000 is not a multiple/);
    expect(() => applyOverrides(dep, { maxSeq: 1 << 20 })).toThrow(/exceeds max_position_embeddings 16384 of model 'tiny'/);
  });
});

describe('flags accept exactly what a spec may say (codegen/limits.ts)', () => {
  it('the same constants', () => {
    expect([overrides.MAX_BATCH, overrides.MAX_GAMMA, overrides.MAX_SEQ]).toEqual([limits.MAX_BATCH, limits.MAX_GAMMA, limits.MAX_SEQ]);
  });

  it('the same boundaries', () => {
    const accepts = (parse: (t: string) => unknown, v: number) => {
      try {
        parse(String(v));
        return true;
      } catch (e) {
        expect(e).toBeInstanceOf(InvalidArgumentError);
        return false;
      }
    };
    for (const b of [0, 1, limits.MAX_BATCH, limits.MAX_BATCH + 1]) expect(accepts(parseBatch, b), `batch ${b}`).toBe(limits.isBatchBucket(b));
    for (const g of [0, 1, limits.MAX_GAMMA, limits.MAX_GAMMA + 1]) expect(accepts(parseGamma, g), `gamma ${g}`).toBe(limits.isGamma(g));
    for (const n of [0, 1, limits.MAX_SEQ, limits.MAX_SEQ + 1]) expect(accepts(parseMaxSeq, n), `max-seq ${n}`).toBe(limits.isMaxSeq(n));
  });
});
