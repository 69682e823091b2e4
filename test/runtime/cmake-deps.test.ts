// The runtime builds from the repository and node_modules alone: `npm ci` on a fresh machine with only the
// toolchain must be enough. So its CMake may look for the toolchain's own packages (threads, OpenMP, CUDA)
// and nothing else: no find_package of a system library, no find_path/find_library/pkg-config probe, no
// download at configure time.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './build-runtime.ts';

const TOOLCHAIN_PACKAGES = new Set(['Threads', 'OpenMP', 'CUDAToolkit', 'CUDA']);
const PROBES = /\b(find_package|find_path|find_library|find_file|find_program|pkg_check_modules|pkg_search_module|FetchContent_\w+|ExternalProject_Add)\s*\(\s*([^\s)]*)/gi;

/** Every third-party lookup in a CMake text, as `command(first-arg)`; toolchain packages are allowed. */
export function foreignLookups(cmake: string): string[] {
  const code = cmake.replace(/#\[(=*)\[[\s\S]*?\]\1\]/g, '').replace(/#.*$/gm, '');
  const out: string[] = [];
  for (const [, command, arg] of code.matchAll(PROBES)) {
    if (command.toLowerCase() === 'find_package' && TOOLCHAIN_PACKAGES.has(arg)) continue;
    out.push(`${command}(${arg})`);
  }
  return out;
}

function cmakeFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'build' ? [] : cmakeFiles(p);
    return e.name === 'CMakeLists.txt' || e.name.endsWith('.cmake') ? [p] : [];
  });
}

describe("the runtime's CMake", () => {
  it('looks for no package outside the repository and node_modules but the toolchain (threads, OpenMP, CUDA)', () => {
    const files = cmakeFiles(join(REPO, 'runtime'));
    expect(files.map((f) => relative(REPO, f))).toContain('runtime/CMakeLists.txt');
    const found = files.flatMap((f) => foreignLookups(readFileSync(f, 'utf8')).map((l) => `${relative(REPO, f)}: ${l}`));
    expect(found, 'the runtime must build from the repository and node_modules (npm ci) alone').toEqual([]);
  });

  it('the check sees every kind of lookup, and ignores comments', () => {
    expect(
      foreignLookups(
        [
          'find_package(Threads REQUIRED)',
          'find_package( OpenMP )',
          'find_package(nlohmann_json 3.2 QUIET)',
          'FIND_PATH(ZLIB_DIR zlib.h)',
          'find_library(M m)',
          'pkg_check_modules(SSL openssl)',
          'FetchContent_Declare(json URL x)',
          '# find_package(Commented)',
          '#[[ find_library(Bracketed) ]]',
        ].join('\n'),
      ),
    ).toEqual(['find_package(nlohmann_json)', 'FIND_PATH(ZLIB_DIR)', 'find_library(M)', 'pkg_check_modules(SSL)', 'FetchContent_Declare(json)']);
  });
});
