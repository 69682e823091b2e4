// Shared libraries crafted for the runtime's error tests, compiled with gcc in a few hundred milliseconds:
// - a library that only exports md_module_manifest (to test what the loader does with a manifest before it
//   resolves any kernel, e.g. a CUDA module's);
// - a real CPU module with one kernel made to fail on a chosen token: the engine validates everything it
//   can, so no request can make a correct module fail; this is how a kernel failure mid-flight is staged.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KERNELS } from '../../codegen/abi.ts';
import { definitionParams } from '../../codegen/backends/contract.ts';
import { renderAbiHeader } from '../../codegen/backends/header.ts';

function compile(dir: string, name: string, source: string, extra: readonly string[] = []): string {
  mkdirSync(dir, { recursive: true });
  const src = join(dir, `${name}.c`);
  const lib = join(dir, `${name}.so`);
  writeFileSync(src, source);
  writeFileSync(join(dir, 'md_abi.h'), renderAbiHeader());
  execFileSync('gcc', ['-std=c99', '-Wall', '-Werror', '-shared', '-fPIC', `-I${dir}`, '-o', lib, src, ...extra], { stdio: 'pipe' });
  return lib;
}

/** A library exporting only `const char* md_module_manifest(void)`, which returns `manifest`. */
export function manifestOnlyLibrary(dir: string, name: string, manifest: string): string {
  // A JSON string literal of ASCII text is a valid C string literal.
  if (!/^[\x20-\x7e\n\t]*$/.test(manifest)) throw new Error('manifestOnlyLibrary: the manifest must be ASCII');
  return compile(dir, name, `const char* md_module_manifest(void) { return ${JSON.stringify(manifest)}; }\n`);
}

/**
 * `library` with md_embed failing (MD_ERR_ARG) for any call whose tokens include `poison`, and every other
 * symbol the real module's: the wrapper links against it, so dlsym on the wrapper finds the rest there.
 */
export function poisonedModule(dir: string, library: string, poison: number): string {
  const embed = KERNELS.find((k) => k.name === 'embed')!;
  const source = `// md_embed of ${library}, except that a row holding token ${poison} fails the call.
#define _GNU_SOURCE
#include <dlfcn.h>

#include "md_abi.h"

int md_embed(${definitionParams(embed.args, { unnamedStream: false })}) {
  for (int32_t r = 0; r < rows; ++r)
    if (tokens && tokens[r] == ${poison}) return MD_ERR_ARG;
  md_embed_fn real = (md_embed_fn)dlsym(RTLD_NEXT, "md_embed");
  return real ? real(${embed.args.map((a) => a.name).join(', ')}) : MD_ERR_LAUNCH;
}
`;
  // --no-as-needed: nothing references the module at link time, yet it must stay a dependency.
  return compile(dir, `poisoned-${poison}`, source, ['-Wl,--no-as-needed', library, '-ldl']);
}
