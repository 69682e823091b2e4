// codegen/build.ts's cache on a hostile file system: what a killed build left behind is cleaned by the
// next build, a live build's temporaries are not touched, concurrent builds of one module compile it once
// and never take each other's temporaries, and a cache path the OS refuses is one line.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BuildError, buildModule, removeStaleTemps } from '../../codegen/build.ts';

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'magicdec-cache-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** The pid of a process that has exited (and been reaped). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '0']);
  expect(r.status).toBe(0);
  return r.pid!;
}

describe('build cache', () => {
  it('removes the temporaries of builds whose process is gone, keeps a live one', async () => {
    const cache = join(root, 'cache');
    mkdirSync(join(cache, 'objects'), { recursive: true });
    const dead = deadPid();
    const live = spawn('sleep', ['30']);
    try {
      const stale = [join(cache, `tiny.cpu-0123.tmp-${dead}-1700000000000`), join(cache, 'objects', `abcd.o.tmp-${dead}-0`)];
      const kept = [join(cache, `tiny.cpu-0123.tmp-${live.pid}-1700000000001`), join(cache, 'objects', `abcd.o.tmp-${live.pid}-3`), join(cache, 'tiny.cpu-0123')];
      mkdirSync(stale[0]);
      writeFileSync(join(stale[0], 'gemm.cpp'), '');
      writeFileSync(stale[1], '');
      mkdirSync(kept[0]);
      writeFileSync(kept[1], '');
      mkdirSync(kept[2]);
      expect(removeStaleTemps(cache).sort()).toEqual(stale.sort());
      for (const p of stale) expect(existsSync(p), p).toBe(false);
      for (const p of kept) expect(existsSync(p), p).toBe(true);
      expect(removeStaleTemps(join(root, 'absent'))).toEqual([]);
    } finally {
      live.kill('SIGKILL');
    }
  });

  it('is cleaned by the next build', async () => {
    const cache = join(root, 'cache');
    const stale = join(cache, `m-0000.tmp-${deadPid()}-1`);
    mkdirSync(stale, { recursive: true });
    const built = await buildModule({ name: 'm', target: 'cpu', files: [{ path: 'a.cpp', contents: 'extern "C" int md_x() { return 1; }\n' }], cacheDir: cache });
    expect(existsSync(built.library)).toBe(true);
    expect(existsSync(stale)).toBe(false);
  }, 60_000);

  it('lets one process build modules that share a unit at once', async () => {
    // Three modules (three locks, so nothing serialises them) with one common unit, whose object the cache
    // shares. A g++ that lingers after writing its object makes the three compiles of it overlap for
    // certain: with shared temporary names, the first build's rename takes the others' objects away (ENOENT).
    const bin = join(root, 'bin');
    mkdirSync(bin);
    const real = spawnSync('sh', ['-c', 'command -v g++'], { encoding: 'utf8' }).stdout.trim();
    writeFileSync(join(bin, 'g++'), `#!/bin/sh\n"${real}" "$@" || exit $?\ncase " $* " in *" -c "*) sleep 0.5 ;; esac\n`, { mode: 0o755 });
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path}`;
    try {
      const cache = join(root, 'concurrent');
      const files = [{ path: 'a.cpp', contents: 'extern "C" int md_a() { return 1; }\n' }];
      const builds = await Promise.all([0, 1, 2].map((i) => buildModule({ name: `m${i}`, target: 'cpu', files, cacheDir: cache })));
      for (const b of builds) expect(existsSync(b.library)).toBe(true);
      expect(new Set(builds.map((b) => b.library)).size).toBe(3);
      expect(builds.map((b) => b.compiled)).toEqual([['a.cpp'], ['a.cpp'], ['a.cpp']]);
      expect(readdirSync(join(cache, 'objects')).filter((f) => f.endsWith('.o'))).toHaveLength(1);
      expect(readdirSync(cache).filter((f) => f.includes('.tmp-'))).toEqual([]);
      expect(readdirSync(join(cache, 'objects')).filter((f) => f.includes('.tmp-'))).toEqual([]);
    } finally {
      process.env.PATH = path;
    }
  }, 120_000);

  it('takes a cache path relative to the working directory', async () => {
    const cacheDir = relative(process.cwd(), join(root, 'relative-cache'));
    const built = await buildModule({ name: 'm', target: 'cpu', files: [{ path: 'a.cpp', contents: 'extern "C" int md_r() { return 3; }\n' }], cacheDir });
    expect(existsSync(built.library)).toBe(true);
    expect(built.library.startsWith(join(root, 'relative-cache'))).toBe(true);
  }, 60_000);

  it('compiles a module once when builds of it run concurrently, and takes over a dead builder\'s lock', async () => {
    const cache = join(root, 'cache');
    const files = [{ path: 'a.cpp', contents: 'extern "C" int md_y() { return 2; }\n' }];
    const [a, b] = await Promise.all([buildModule({ name: 'm', target: 'cpu', files, cacheDir: cache }), buildModule({ name: 'm', target: 'cpu', files, cacheDir: cache })]);
    expect(a.library).toBe(b.library);
    expect([a.compiled, b.compiled].sort()).toEqual([[], ['a.cpp']]);
    expect(readdirSync(cache).filter((f) => f.includes('.lock'))).toEqual([]);
    // A lock left by a process that died mid-build does not block the next build.
    const other = [{ path: 'a.cpp', contents: 'extern "C" int md_z() { return 3; }\n' }];
    const first = await buildModule({ name: 'n', target: 'cpu', files: other, cacheDir: cache });
    rmSync(first.dir, { recursive: true, force: true });
    writeFileSync(`${first.dir}.lock`, String(deadPid()));
    const again = await buildModule({ name: 'n', target: 'cpu', files: other, cacheDir: cache });
    expect(existsSync(again.library)).toBe(true);
    expect(existsSync(`${first.dir}.lock`)).toBe(false);
  }, 120_000);

  it('refuses a cache path below a regular file with one line naming it', async () => {
    writeFileSync(join(root, 'file'), 'x');
    const cacheDir = join(root, 'file', 'cache');
    const build = buildModule({ name: 'm', target: 'cpu', files: [{ path: 'a.cpp', contents: 'int x;\n' }], cacheDir });
    await expect(build).rejects.toBeInstanceOf(BuildError);
    await expect(build).rejects.toThrow(/^cannot use the build cache .*file\/cache: mkdir .*file\/cache\/objects: ENOTDIR \(a parent is not a directory\)$/);
    expect(readdirSync(root)).toEqual(['file']);
  });
});
