// md_abi.h, rendered from codegen/abi.ts (committed as generated/contract/md_abi.h: test/generated.test.ts
// diffs it): a function-pointer type per kernel kind, and X-macro lists that a C++ program walks to the
// same kernels, in the same order, as codegen/abi.ts. Compiles warning-free as C and C++.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EXTRA_SPECS, KERNELS, MANIFEST_FORMAT } from '../../codegen/abi.ts';
import { kernelKind, kernelKinds, renderAbiHeader } from '../../codegen/backends/header.ts';

const dir = mkdtempSync(join(tmpdir(), 'md-abi-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'md_abi.h'), renderAbiHeader());
const STRICT = ['-Wall', '-Wextra', '-Werror', '-pedantic', `-I${dir}`];

describe('md_abi.h', () => {
  it('declares a function-pointer type for every kernel kind and extra', () => {
    const text = renderAbiHeader();
    for (const { kind } of kernelKinds()) expect(text).toContain(`(*md_${kind}_fn)(`);
    for (const e of EXTRA_SPECS) expect(text).toContain(`(*md_${e.name}_fn)(`);
    expect(kernelKinds().map((k) => k.kind)).toContain('gemm');
    expect(new Set(KERNELS.map((k) => k.name)).size).toBe(KERNELS.length);
  });

  it('compiles warning-free as C and as C++', () => {
    for (const lang of ['c', 'c++']) {
      const out = execFileSync('g++', ['-x', lang, ...STRICT, '-fsyntax-only', '-'], {
        input: '#include "md_abi.h"\nint md_probe(md_attn_fn f, const md_attn_args* a) { return f(a); }\n',
        encoding: 'utf8',
      });
      expect(out).toBe('');
    }
  });

  it('walking its X-macros gives codegen/abi.ts: every kernel with its kind and bucketing, every extra, the manifest format', () => {
    const exe = join(dir, 'walk');
    const program = `#include <stdio.h>
#include "md_abi.h"
// Each row names a function-pointer type that must exist: the walk fails to compile otherwise.
#define SHARED(name, kind) { md_##kind##_fn f = 0; (void)f; puts(#name " " #kind " shared"); }
#define BUCKET(name, kind) { md_##kind##_fn f = 0; (void)f; puts(#name " " #kind " bucket"); }
#define EXTRA(name) { md_##name##_fn f = 0; (void)f; puts(#name " extra"); }
int main(void) {
  MD_SHARED_KERNELS(SHARED)
  MD_BUCKET_KERNELS(BUCKET)
  MD_MODULE_EXTRAS(EXTRA)
  printf("format %d\\n", MD_MANIFEST_FORMAT);
  return 0;
}
`;
    writeFileSync(join(dir, 'walk.cpp'), program);
    execFileSync('g++', ['-std=c++17', ...STRICT, '-o', exe, join(dir, 'walk.cpp')]);
    const want = [
      ...KERNELS.filter((k) => !k.perBucket).map((k) => `${k.name} ${kernelKind(k)} shared`),
      ...KERNELS.filter((k) => k.perBucket).map((k) => `${k.name} ${kernelKind(k)} bucket`),
      ...EXTRA_SPECS.map((e) => `${e.name} extra`),
      `format ${MANIFEST_FORMAT}`,
    ];
    expect(execFileSync(exe, { encoding: 'utf8' }).trim().split('\n')).toEqual(want);
  });
});
