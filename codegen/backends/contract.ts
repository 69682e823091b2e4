// What both backends render the same way from codegen/abi.ts: entry-point signatures, the host-value
// argument checks every entry point starts with, the module-exports unit, and the headers a module
// directory carries so that it compiles on its own (no include path into this checkout).
import { readFileSync } from 'node:fs';
import { ATTN_ARGS_FIELDS, EMULATED_SYMBOL, EXTRA_SPECS, STATUS_CODES, type ArgSpec, type KernelSpec } from '../abi.ts';
import type { EmittedFile } from '../backend.ts';
import { manifestText } from '../manifest.ts';
import type { KernelInstance, ModulePlan } from '../plan.ts';
import { cStringLiteral, renderTemplate, TEMPLATES_DIR } from './common.ts';
import { kernelKind, kernelSpecs, renderAbiHeader, renderModuleHeader } from './header.ts';

/** Hand-written headers every generated module includes, copied into its directory (templates/common). */
export const COMMON_HEADERS = ['md_expr.h', 'md_argmax.h', 'md_philox.h', 'md_sampling.h'] as const;

export interface SignatureOptions {
  /** CPU modules ignore `stream`: its parameter is left unnamed there (-Wextra would flag it unused). */
  readonly unnamedStream: boolean;
}

/** Parameter list of an entry point's definition. */
export function definitionParams(args: readonly ArgSpec[], opts: SignatureOptions): string {
  return args.map((a) => (a.name === 'stream' && opts.unnamedStream ? `${a.type} /*stream*/` : `${a.type} ${a.name}`)).join(', ');
}

/** Definition parameter lists by kernel name and by kind ('gemm', 'attn': shared by the roles/passes). */
export function signatures(kernels: readonly KernelSpec[], opts: SignatureOptions): Record<string, string> {
  const sig: Record<string, string> = {};
  for (const k of kernels) {
    sig[k.name] = definitionParams(k.args, opts);
    sig[kernelKind(k)] ??= sig[k.name];
  }
  return sig;
}

/** Rendered checks stay within this many columns; a longer condition wraps at its `||`s. */
const MAX_COLUMNS = 110;

/** `if (<c1> || <c2> ...) return <status>;` on one line, or wrapped with the return on a line of its own. */
function guard(indent: string, conds: readonly string[], status: string): string[] {
  const one = `${indent}if (${conds.join(' || ')}) return ${status};`;
  if (one.length <= MAX_COLUMNS) return [one];
  const lines = [`${indent}if (`];
  conds.forEach((c, i) => {
    const piece = i === conds.length - 1 ? `${c})` : `${c} ||`;
    const open = lines[lines.length - 1].endsWith('(');
    if (!open && lines[lines.length - 1].length + 1 + piece.length > MAX_COLUMNS) lines.push(`${indent}    ${piece}`);
    else lines[lines.length - 1] += `${open ? '' : ' '}${piece}`;
  });
  return [...lines, `${indent}  return ${status};`];
}

/**
 * The host-value argument checks of one entry point (codegen/abi.ts, "Argument contract"), as C lines:
 * a NULL md_attn_args; the count out of range (past the bucket's row bound for a bucketed kernel) or zero
 * (MD_OK: nothing to do); then any required pointer NULL or `positive` integer <= 0. `paramCount` is the
 * number of runtime params of the kernel's attention pass (md_attn_args.params is required when > 0).
 */
export function renderArgChecks(spec: KernelSpec, opts: { maxRows?: number; paramCount?: number; indent?: string } = {}): string {
  const indent = opts.indent ?? '  ';
  const lines: string[] = [];
  const block = spec.args.find((a) => a.type === 'const md_attn_args*');
  const fields = block ? ATTN_ARGS_FIELDS.map((f) => ({ arg: f, expr: `${block.name}->${f.name}` })) : spec.args.map((a) => ({ arg: a, expr: a.name }));
  if (block) lines.push(`${indent}if (!${block.name}) return MD_ERR_ARG;`);
  const counts = fields.filter((f) => f.arg.check === 'count');
  if (counts.length !== 1) throw new Error(`kernel ${spec.name}: the ABI must give exactly one count argument, not ${counts.length}`);
  const n = counts[0].expr;
  lines.push(...guard(indent, [`${n} < 0`, ...(opts.maxRows !== undefined ? [`${n} > ${opts.maxRows}`] : [])], 'MD_ERR_ARG'));
  lines.push(`${indent}if (${n} == 0) return MD_OK;`);
  const required = (a: ArgSpec) => {
    if (a.nullable !== 'without-params') return !a.nullable;
    if (opts.paramCount === undefined) throw new Error(`kernel ${spec.name}: '${a.name}' depends on the pass's params; give paramCount`);
    return opts.paramCount > 0;
  };
  const conds = [
    ...fields.filter((f) => f.arg.type.endsWith('*') && required(f.arg)).map((f) => `!${f.expr}`),
    ...fields.filter((f) => f.arg.check === 'positive').map((f) => `${f.expr} <= 0`),
  ];
  if (conds.length) lines.push(...guard(indent, conds, 'MD_ERR_ARG'));
  return lines.join('\n');
}

/** The checks of one kernel instance of `plan`: its bucket's row bound, its pass's params. */
export function instanceChecks(plan: ModulePlan, k: KernelInstance): string {
  return renderArgChecks(k.spec, { maxRows: k.maxRows, paramCount: k.spec.pass ? plan.passes[k.spec.pass].params.length : undefined });
}

/** Checks of the plan's bucket-free kernels, by kernel name. */
export function sharedChecks(plan: ModulePlan): Record<string, string> {
  return Object.fromEntries(plan.kernels.filter((k) => k.bucket === undefined).map((k) => [k.spec.name, instanceChecks(plan, k)]));
}

/** A kernel's instances as a template iterates them: symbol, bucket, row bound and checks. */
export function entryPoints(plan: ModulePlan, kernel: string) {
  return plan.kernels.filter((k) => k.spec.name === kernel).map((k) => ({ symbol: k.symbol, bucket: k.bucket, maxRows: k.maxRows, checks: instanceChecks(plan, k) }));
}

/** The module's non-kernel exports (EXTRA_SPECS) in one unit, the same source for both backends. */
export function renderModuleExports(plan: ModulePlan, backend: 'cpu' | 'cuda'): string {
  return renderTemplate('common/module-exports.hbs', {
    backend,
    name: plan.name,
    hash: plan.hash,
    extras: Object.fromEntries(EXTRA_SPECS.map((e) => [e.name, `${e.ret} md_${e.name}(${definitionParams(e.args, { unnamedStream: false }) || 'void'})`])),
    heads: plan.dims.heads,
    headDim: plan.dims.headDim,
    maxChunks: plan.maxChunks,
    manifest: cStringLiteral(manifestText(plan)),
    statuses: STATUS_CODES,
    emulatedSymbol: backend === 'cuda' ? EMULATED_SYMBOL : undefined,
  });
}

/** md_abi.h, md_module.h and the common headers: what a module's sources include besides their own. */
export function moduleHeaders(plan: ModulePlan, backend: 'cpu' | 'cuda'): EmittedFile[] {
  return [
    { path: 'md_abi.h', contents: renderAbiHeader(kernelSpecs(plan)) },
    { path: 'md_module.h', contents: renderModuleHeader(plan, { backend }) },
    ...COMMON_HEADERS.map((h) => ({ path: h, contents: readFileSync(new URL(`common/${h}`, TEMPLATES_DIR), 'utf8') })),
  ];
}
