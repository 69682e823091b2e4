// md_abi.h is committed (the runtime includes it without running the compiler); it must equal what
// codegen/backends/header.ts renders from codegen/abi.ts. Regenerate with:
//   npx tsx -e "import('./codegen/backends/header.ts').then(h => h.writeAbiHeader())"
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KERNELS } from '../../codegen/abi.ts';
import { ABI_HEADER_PATH, kernelKinds, renderAbiHeader } from '../../codegen/backends/header.ts';

const ROOT = resolve(import.meta.dirname, '../..');

describe('md_abi.h', () => {
  it('the committed file equals the rendering of codegen/abi.ts', () => {
    expect(readFileSync(resolve(ROOT, ABI_HEADER_PATH), 'utf8')).toBe(renderAbiHeader());
  });

  it('declares a function-pointer type for every kernel kind', () => {
    const text = renderAbiHeader();
    for (const { kind } of kernelKinds()) expect(text).toContain(`(*md_${kind}_fn)(`);
    expect(kernelKinds().map((k) => k.kind)).toContain('gemm');
    expect(new Set(KERNELS.map((k) => k.name)).size).toBe(KERNELS.length);
  });

  it('compiles warning-free as C and as C++', () => {
    for (const lang of ['c', 'c++']) {
      const out = execFileSync('g++', ['-x', lang, '-Wall', '-Wextra', '-Werror', '-pedantic', '-fsyntax-only', `-I${resolve(ROOT, 'templates/common')}`, '-'], {
        input: '#include "md_abi.h"\nint md_probe(md_attn_fn f, const md_attn_args* a) { return f(a); }\n',
        encoding: 'utf8',
      });
      expect(out).toBe('');
    }
  });
});
