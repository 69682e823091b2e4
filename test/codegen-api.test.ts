// The compiler as a library (`magicdec/codegen`, through the package's self-reference): the same pipeline
// `magicdec gen --build` runs, and the build cache's guarantees.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BuildError, backendFor, buildModule, loadSpec, loadSpecText, planModule, renderModule } from 'magicdec/codegen';

const cache = mkdtempSync(join(tmpdir(), 'md-api-'));
afterAll(() => rmSync(cache, { recursive: true, force: true }));

describe('magicdec/codegen', () => {
  const { deployment, diagnostics } = loadSpec('examples/streaming-draft.ts');

  it('compiles a spec end to end into a loadable library, then hits the cache', async () => {
    expect(diagnostics).toEqual([]);
    const plan = planModule(deployment!);
    const files = renderModule(plan, backendFor('cpu'));
    expect(files.map((f) => f.path)).toContain('manifest.json');
    const built = await buildModule({ name: plan.name, files, target: 'cpu', cacheDir: cache });
    expect(built.cached).toBe(false);
    expect(existsSync(built.library)).toBe(true);
    const again = await buildModule({ name: plan.name, files, target: 'cpu', cacheDir: cache });
    expect(again).toEqual({ ...built, cached: true, compiled: [] });
  });

  it('a new runtime param value changes only the manifest: no kernel recompiles', async () => {
    const file = 'examples/streaming-draft.ts';
    const source = readFileSync(file, 'utf8');
    expect(source).toContain('window: 252');
    const wider = loadSpecText(source.replace('window: 252', 'window: 1000'), file);
    expect(wider.diagnostics).toEqual([]);
    const [a, b] = [deployment!, wider.deployment!].map((d) => {
      const plan = planModule(d);
      return { plan, files: renderModule(plan, backendFor('cpu')) };
    });
    expect(b.plan.hash).toBe(a.plan.hash);
    const changed = b.files.filter((f, i) => f.contents !== a.files[i].contents).map((f) => f.path);
    expect(changed.sort()).toEqual(['manifest.json', 'module.cpp']);
    const built = await buildModule({ name: b.plan.name, files: b.files, target: 'cpu', cacheDir: cache });
    expect(built.cached).toBe(false);
    expect(built.compiled).toEqual(['module.cpp']);
  });

  it('reports a compiler error with the failing file and leaves no partial cache entry', async () => {
    const plan = planModule(deployment!);
    const files = renderModule(plan, backendFor('cpu')).map((f) =>
      f.path === 'gemm.cpp' ? { ...f, contents: `${f.contents}\nthis is not C++;\n` } : f,
    );
    const before = readdirSync(cache);
    const err = await buildModule({ name: plan.name, files, target: 'cpu', cacheDir: cache }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as Error).message).toMatch(/g\+\+ failed on gemm\.cpp/);
    expect((err as Error).message).toMatch(/this is not C\+\+/);
    expect(readdirSync(cache)).toEqual(before);
  });
});

describe('build cache keys', () => {
  it('sourcesHash sorts paths by code unit, not by locale, and ignores input order', async () => {
    const { sourcesHash } = await import('../codegen/build.ts');
    // Locale order is _x.h, a.h, b.h, B.h; code-unit order (the same everywhere) is B.h, _x.h, a.h, b.h.
    const files = ['a.h', 'B.h', '_x.h', 'b.h'].map((path) => ({ path, contents: `// ${path}\n` }));
    const byCodeUnit = [...files].sort((x, y) => (x.path < y.path ? -1 : 1));
    expect(byCodeUnit.map((f) => f.path)).toEqual(['B.h', '_x.h', 'a.h', 'b.h']);
    const h = createHash('sha256').update('extra');
    for (const f of byCodeUnit) h.update(`\0${f.path}\0${f.contents}`);
    expect(sourcesHash(files, 'extra')).toBe(h.digest('hex').slice(0, 16));
    expect(sourcesHash([...files].reverse(), 'extra')).toBe(sourcesHash(files, 'extra'));
  });

  it("cpu keys hold what -march=native resolves to on this host, not just the literal flag", async () => {
    const { toolchainKey, nativeTargetHash } = await import('../codegen/build.ts');
    const resolved = execFileSync('g++', ['-march=native', '-Q', '--help=target'], { encoding: 'utf8' });
    const expected = createHash('sha256').update(resolved).digest('hex').slice(0, 16);
    expect(await nativeTargetHash()).toBe(expected);
    const key = await toolchainKey('cpu');
    expect(key).toContain('-march=native');
    expect(key).toContain(`native-target:${expected}`);
  });
});
