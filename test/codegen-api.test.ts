// The compiler as a library (`magicdec/codegen`, through the package's self-reference): the same pipeline
// `magicdec gen --build` runs, and the build cache's guarantees.
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
