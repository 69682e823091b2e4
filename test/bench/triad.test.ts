// The bench's STREAM triad (bench/triad.ts, triad.cpp): built once and cached, a plausible result on small
// arrays, STREAM's byte count, bad arguments refused, the last-level caches read from a sysfs-shaped tree.
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildTriad, defaultTriadArrayBytes, lastLevelCacheBytes, runTriad } from '../../bench/triad.ts';

const tmp = mkdtempSync(join(tmpdir(), 'magicdec-triad-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('bench triad', () => {
  it('builds once, then measures a triad with STREAM byte accounting', () => {
    const exe = buildTriad(join(tmp, 'cache'));
    const mtime = statSync(exe).mtimeMs;
    expect(buildTriad(join(tmp, 'cache'))).toBe(exe);
    expect(statSync(exe).mtimeMs).toBe(mtime);

    const r = runTriad(exe, 1 << 20, 3);
    expect(r.arrayBytes).toBe(1 << 20);
    expect(r.reps).toBe(3);
    expect(r.bytesPerRep).toBe(3 * (1 << 20));
    expect(r.threads).toBeGreaterThanOrEqual(1);
    expect(r.bestS).toBeGreaterThan(0);
    expect(r.bestS).toBeLessThanOrEqual(r.meanS);
    expect(r.gbPerS).toBeCloseTo(r.bytesPerRep / r.bestS / 1e9, 3);

    expect(() => runTriad(exe, 10, 1)).toThrow('bytes per array must be a whole number >= 64, got 10');
    expect(() => runTriad(exe, 1 << 20, 0)).toThrow('repetitions must be a whole number >= 1, got 0');
  });

  it('sizes arrays from the last-level caches: 4x their sum, each instance once, at least 128 MiB', () => {
    const sys = join(tmp, 'sys');
    const cache = (cpu: number, index: number, type: string, lvl: number, size: string, shared: string) => {
      const d = join(sys, `cpu${cpu}`, 'cache', `index${index}`);
      mkdirSync(d, { recursive: true });
      for (const [f, v] of Object.entries({ type, level: lvl, size, shared_cpu_list: shared })) writeFileSync(join(d, f), `${v}\n`);
    };
    // 4 CPUs, private L1/L2, two L3 instances of 96 MiB shared by CPUs 0-1 and 2-3.
    for (let cpu = 0; cpu < 4; cpu++) {
      cache(cpu, 0, 'Data', 1, '48K', String(cpu));
      cache(cpu, 1, 'Instruction', 1, '32K', String(cpu));
      cache(cpu, 2, 'Unified', 2, '1024K', String(cpu));
      cache(cpu, 3, 'Unified', 3, '96M', cpu < 2 ? '0-1' : '2-3');
    }
    mkdirSync(join(sys, 'cpufreq'), { recursive: true });
    expect(lastLevelCacheBytes(sys)).toBe(2 * 96 * 2 ** 20);
    expect(lastLevelCacheBytes(join(tmp, 'absent'))).toBeUndefined();
    expect(defaultTriadArrayBytes(96 * 2 ** 20)).toBe(384 * 2 ** 20);
    expect(defaultTriadArrayBytes(2 ** 20)).toBe(128 * 2 ** 20);
    expect(defaultTriadArrayBytes(0)).toBe(128 * 2 ** 20);
  });
});
