// gen's shape flags: each bad value is rejected with a message that names it.
import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { applyOverrides, parseBatch, parseGamma, parseMaxSeq } from '../../cli/overrides.ts';
import { makeDeployment } from '../support/deployments.ts';

describe('flag parsers', () => {
  it('parse good values', () => {
    expect(parseBatch('1,8,32')).toEqual([1, 8, 32]);
    expect(parseBatch('4')).toEqual([4]);
    expect(parseGamma('3')).toBe(3);
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

  it.each(['0', '17', 'two', '1e2'])('--gamma %j is rejected', (text) => {
    expect(() => parseGamma(text)).toThrow(InvalidArgumentError);
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

  it('rejects a max-seq that is not whole pages or is past the model', () => {
    expect(() => applyOverrides(dep, { maxSeq: 8 })).toThrow(/--max-seq 8 is not a multiple of the spec's page size 16/);
    expect(() => applyOverrides(dep, { maxSeq: 1000 })).toThrow(/--max-seq 1000 is not a multiple/);
    expect(() => applyOverrides(dep, { maxSeq: 1 << 20 })).toThrow(/exceeds max_position_embeddings 16384 of model 'tiny'/);
  });
});
