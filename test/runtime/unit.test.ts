// The runtime's C++ unit checks (KV page allocator, dtypes, config.json and manifest parsing) and the C API's
// error paths, through the programs runtime/CMakeLists.txt builds.
import { describe, expect, it } from 'vitest';
import { buildRuntime, runProgram } from './build-runtime.ts';

describe('runtime C++ and C programs', () => {
  const b = buildRuntime();

  it('passes the C++ unit checks (KV allocator, dtypes and their spellings, config and manifest parsing)', () => {
    const r = runProgram(b.unit, []);
    expect(r.stdout).toContain('all runtime unit checks passed');
    expect(r.status).toBe(0);
  });

  it('reports C API errors through md_last_error without crashing', () => {
    // libmagicdec.so is a real shared library that is not a module: the loader must say so.
    const r = runProgram(b.capi, ['errors', b.lib]);
    expect(r.stdout).toBe('capi error paths ok\n');
    expect(r.status).toBe(0);
  });
});
