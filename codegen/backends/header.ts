// C declarations rendered from codegen/abi.ts, shared by the CPU and CUDA backends:
// - md_abi.h: module-independent: md_status, md_attn_args, the manifest format, one function-pointer type
//   per kernel kind, and the kernel list as X-macros (what the runtime walks to build its kernel table).
//   Every module carries it; `npm run regen` commits the rendering of codegen/abi.ts's list as
//   generated/contract/md_abi.h, the copy the runtime and the test drivers include.
// - md_module.h: one module's entry points (one prototype per kernel instance, per bucket where needed).
import { ATTN_ARGS_FIELDS, EMULATED_SYMBOL, EMU_QUEUE_MAGIC, EXTRA_SPECS, KERNELS, MANIFEST_FORMAT, STATUS_CODES, type ArgSpec, type KernelSpec } from '../abi.ts';
import type { ModulePlan } from '../plan.ts';

/** Kernels that differ only by role (gemm_q, gemm_kv, ...) or pass (attn_target, attn_draft) share a kind. */
export function kernelKind(spec: KernelSpec): string {
  if (spec.name.startsWith('gemm_')) return 'gemm';
  if (spec.name.startsWith('attn_')) return 'attn';
  return spec.name;
}

/** `md_<kind>_fn`, the function-pointer type of a kernel. */
export function kernelFnType(spec: KernelSpec): string {
  return `md_${kernelKind(spec)}_fn`;
}

/** The kinds in list order, each with the spec that defines its signature; kinds must agree on args. */
export function kernelKinds(kernels: readonly KernelSpec[] = KERNELS): { kind: string; spec: KernelSpec }[] {
  const out = new Map<string, KernelSpec>();
  for (const spec of kernels) {
    const kind = kernelKind(spec);
    const seen = out.get(kind);
    if (seen && paramList(seen.args) !== paramList(spec.args))
      throw new Error(`kernels ${seen.name} and ${spec.name} share kind '${kind}' but not a signature`);
    if (!seen) out.set(kind, spec);
  }
  return [...out].map(([kind, spec]) => ({ kind, spec }));
}

/** The kernel list a plan was made from: its instances' specs, each once, in order. */
export function kernelSpecs(plan: ModulePlan): KernelSpec[] {
  return [...new Set(plan.kernels.map((k) => k.spec))];
}

/** "const float* x, int32_t rows, ..." ("void" when empty). */
export function paramList(args: readonly ArgSpec[]): string {
  return args.length ? args.map((a) => `${a.type} ${a.name}`).join(', ') : 'void';
}

function docComment(lines: string[], indent = ''): string[] {
  return lines.map((l) => `${indent}// ${l}`);
}

function argDocs(args: readonly ArgSpec[]): string[] {
  const width = Math.max(0, ...args.map((a) => a.name.length));
  return args.map((a) => `  ${a.name.padEnd(width)}  ${a.doc}`);
}

/** `#define NAME(X) \` over one `X(...)` line per row, the continuation backslashes aligned. */
function xMacro(name: string, rows: readonly string[]): string[] {
  const lines = [`#define ${name}(X)`, ...rows.map((r) => `  X(${r})`)];
  if (lines.length === 1) return lines;
  const width = Math.max(...lines.map((l) => l.length));
  return lines.map((l, i) => (i < lines.length - 1 ? `${l.padEnd(width)} \\` : l));
}

/** md_abi.h for a kernel list (codegen/abi.ts's by default; a test may extend it). */
export function renderAbiHeader(kernels: readonly KernelSpec[] = KERNELS): string {
  const width = Math.max(...ATTN_ARGS_FIELDS.map((f) => `${f.type} ${f.name};`.length));
  const out: string[] = [
    '// GENERATED from codegen/abi.ts by codegen/backends/header.ts; do not edit (`npm run regen` rewrites it).',
    '// The kernel ABI of every magicdec module, independent of the module: status codes, the attention',
    '// argument block, one function-pointer type per kernel kind, the kernel list, the manifest format.',
    '// Conventions: see codegen/abi.ts and docs/ABI.md.',
    '#pragma once',
    '#include <stddef.h>',
    '#include <stdint.h>',
    '',
    '#ifdef __cplusplus',
    'extern "C" {',
    '#endif',
    '',
    `typedef enum md_status { ${STATUS_CODES.map((s) => `${s.name} = ${s.value}`).join(', ')} } md_status;`,
    '',
    "// The layout version of manifest.json: modules embed it (md_module_manifest), the runtime reads no other.",
    `#define MD_MANIFEST_FORMAT ${MANIFEST_FORMAT}`,
    '',
    '// Exported (returning 1) only by a CUDA module built for the SIMT emulator: its device memory is host memory.',
    `#define MD_EMULATED_SYMBOL "${EMULATED_SYMBOL}"`,
    '',
    '// The stream an emulated module is handed: its device\'s work queue. The module submits each launch, async',
    '// copy, fill and stream-ordered allocation as op(arg); the queue runs it at once or, while the device',
    '// captures work (the twin of a CUDA graph capture), records it to run at every replay, and calls drop(arg)',
    '// after its last run. capturing(ctx) is nonzero while work is recorded. A null stream runs work at once.',
    `#define MD_EMU_QUEUE_MAGIC 0x${EMU_QUEUE_MAGIC.toString(16)}u`,
    'typedef struct md_emu_queue {',
    '  uint32_t magic;  // MD_EMU_QUEUE_MAGIC',
    '  void* ctx;',
    '  void (*submit)(void* ctx, void (*op)(void*), void* arg, void (*drop)(void*));',
    '  int (*capturing)(void* ctx);',
    '} md_emu_queue;',
    '',
    'typedef struct md_attn_args {',
    ...ATTN_ARGS_FIELDS.map((f) => `  ${`${f.type} ${f.name};`.padEnd(width)}  // ${f.doc}`),
    '} md_attn_args;',
    '',
  ];
  for (const { kind, spec } of kernelKinds(kernels)) {
    const names = kernels.filter((k) => kernelKind(k) === kind).map((k) => `md_${k.name}${k.perBucket ? '_b<B>' : ''}`);
    out.push(...docComment([`${names[0]}: ${spec.doc}`]));
    if (names.length > 1) out.push(...docComment([`  (same signature: ${names.slice(1).join(', ')})`]));
    out.push(...docComment(argDocs(spec.args)));
    out.push(`typedef int (*md_${kind}_fn)(${paramList(spec.args)});`, '');
  }
  for (const e of EXTRA_SPECS) {
    out.push(...docComment([`md_${e.name}: ${e.doc}`]));
    out.push(`typedef ${e.ret} (*md_${e.name}_fn)(${paramList(e.args)});`, '');
  }
  const row = (k: KernelSpec) => `${k.name}, ${kernelKind(k)}`;
  out.push(
    ...docComment([
      'The kernel list as X-macros over X(name, kind): md_<name> is an entry point of type md_<kind>_fn, and',
      "MD_BUCKET_KERNELS' are instantiated once per batch bucket as md_<name>_b<B>. The runtime builds its",
      'kernel table by walking them, so a kernel is declared once: in codegen/abi.ts.',
    ]),
    ...xMacro('MD_SHARED_KERNELS', kernels.filter((k) => !k.perBucket).map(row)),
    ...xMacro('MD_BUCKET_KERNELS', kernels.filter((k) => k.perBucket).map(row)),
    '',
    ...docComment(["The module's other exports, as X(name): md_<name> of type md_<name>_fn."]),
    ...xMacro('MD_MODULE_EXTRAS', EXTRA_SPECS.map((e) => e.name)),
    '',
  );
  out.push('#ifdef __cplusplus', '}  // extern "C"', '#endif', '');
  return out.join('\n');
}

export interface ModuleHeaderOptions {
  /** Written into the header's first comment, e.g. 'cpu'. */
  readonly backend: string;
  /** Text before every declaration, e.g. a visibility attribute; empty by default. */
  readonly declPrefix?: string;
}

/** md_module.h: every entry point of the module, C linkage. */
export function renderModuleHeader(plan: ModulePlan, opts: ModuleHeaderOptions): string {
  const pre = opts.declPrefix ? `${opts.declPrefix} ` : '';
  const out: string[] = [
    `// GENERATED by magicdec (${opts.backend} backend) for module ${plan.name} (hash ${plan.hash}); do not edit.`,
    '#pragma once',
    '#include "md_abi.h"',
    '',
    '#ifdef __cplusplus',
    'extern "C" {',
    '#endif',
    '',
  ];
  for (const k of plan.kernels) {
    const bound = k.maxRows !== undefined ? ` (rows <= ${k.maxRows})` : '';
    out.push(`${pre}int ${k.symbol}(${paramList(k.spec.args)});  // ${kernelFnType(k.spec)}${bound}`);
  }
  for (const e of EXTRA_SPECS) out.push(`${pre}${e.ret} md_${e.name}(${paramList(e.args)});`);
  out.push('', '#ifdef __cplusplus', '}  // extern "C"', '#endif', '');
  return out.join('\n');
}
