// Rendering helpers both backends share: a pass's predicates and score as C functions (bodies from the
// IR via render.ts, over the helpers of md_expr.h), C literals, and handlebars loading. What differs
// between CPU and CUDA is the qualifier in front of a function (MD_FN covers both) and the skeletons.
import { readFileSync } from 'node:fs';
import Handlebars from 'handlebars';
import type { DType } from '../../dsl/deploy.ts';
import { topo, variable, type Node, type Ty } from '../ir.ts';
import type { ModulePlan, PassPlan } from '../plan.ts';
import { C_TYPE, renderBody } from '../render.ts';

export const TEMPLATES_DIR = new URL('../../templates/', import.meta.url);

const compiled = new Map<string, HandlebarsTemplateDelegate>();

/** Render templates/<path> with `context`; strict, so a missing field is an error, never an empty string. */
export function renderTemplate(path: string, context: object): string {
  let t = compiled.get(path);
  if (!t) {
    t = Handlebars.compile(readFileSync(new URL(path, TEMPLATES_DIR), 'utf8'), { noEscape: true, strict: true });
    compiled.set(path, t);
  }
  return t(context);
}

/** C names of a pass's device/host functions, e.g. md_target_visible. */
export function passFnNames(pass: PassPlan['pass']) {
  return {
    visible: `md_${pass}_visible`,
    tileMust: `md_${pass}_tile_must`,
    tileMay: `md_${pass}_tile_may`,
    score: `md_${pass}_score`,
  };
}

interface FnArg {
  readonly name: string;
  readonly ty: Ty;
}

/** One C function returning `root` rendered over `args` and `params[]` (the pass's runtime params). */
export function renderFunction(qualifier: string, name: string, args: readonly FnArg[], root: Node, pass: PassPlan): string {
  const vars = Object.fromEntries(args.map((a) => [a.name, a.name]));
  const body = renderBody(root, {
    vars,
    prefix: 'e',
    param(key, ty) {
      const p = pass.params.find((x) => x.key === key);
      if (!p) throw new Error(`${pass.pass} pass: the IR reads param '${key}', which is not among its runtime params (${pass.params.map((x) => x.key).join(', ') || 'none'})`);
      return ty === 'i32' ? `md_param_i32(params[${p.index}])` : `params[${p.index}]`;
    },
  });
  const sig = [...args.map((a) => `${C_TYPE[a.ty]} ${a.name}`), 'const float* params'].join(', ');
  // Every argument is "used" so that predicates which ignore some (most do) compile warning-free.
  const unused = [...args.map((a) => a.name), 'params'].map((a) => `(void)${a};`).join(' ');
  return [`${qualifier} ${C_TYPE[root.ty]} ${name}(${sig}) {`, `  ${unused}`, ...body.lines.map((l) => `  ${l}`), `  return ${body.result};`, '}'].join('\n');
}

/** The four functions the attention skeletons call for a pass: Pass member, C name, arguments, IR root. */
function passFunctions(pass: PassPlan) {
  const names = passFnNames(pass.pass);
  const i32 = (name: string): FnArg => ({ name, ty: 'i32' });
  const tile = [i32('q'), i32('p0'), i32('p1')];
  return [
    { member: 'visible', name: names.visible, args: [i32('q'), i32('kv')], root: pass.visible },
    { member: 'tile_must', name: names.tileMust, args: tile, root: pass.tile.must },
    { member: 'tile_may', name: names.tileMay, args: tile, root: pass.tile.may },
    { member: 'score', name: names.score, args: [{ name: 's', ty: 'f32' as const }, i32('q'), i32('kv'), i32('head')], root: pass.score ?? variable('s', 'f32') },
  ];
}

/**
 * The four functions the attention skeletons call for a pass:
 *   bool <visible>(int32_t q, int32_t kv, const float* params)             per element
 *   bool <tile_must>/<tile_may>(int32_t q, int32_t p0, int32_t p1, ...)    per tile [p0, p1]
 *   float <score>(float s, int32_t q, int32_t kv, int32_t head, ...)       the identity without a score
 */
export function renderPassFunctions(pass: PassPlan, qualifier: string): string {
  return [
    `// ${pass.pass} pass: attention '${pass.ir.attention.name}', KV policy '${pass.ir.kv.name}'; params: ${pass.params.map((p) => `${p.index}=${p.key}`).join(', ') || 'none'}`,
    ...passFunctions(pass).map((f) => renderFunction(qualifier, f.name, f.args, f.root, pass)),
  ].join('\n\n');
}

/** C name of the struct that hands a pass to the attention skeleton, e.g. md_pass_target. */
export function passStructName(pass: PassPlan['pass']): string {
  return `md_pass_${pass}`;
}

/**
 * The Pass type both backends' attention skeletons are templates over: any constants (C declarations,
 * e.g. CUDA's SCALE), and static members visible / tile_must / tile_may / score that forward to
 * renderPassFunctions' functions. `qualifier` goes before each member function.
 */
export function renderPassStruct(pass: PassPlan, qualifier: string, constants: readonly string[] = []): string {
  const members = passFunctions(pass).map((f) => {
    const params = [...f.args.map((a) => `${C_TYPE[a.ty]} ${a.name}`), 'const float* params'].join(', ');
    const call = [...f.args.map((a) => a.name), 'params'].join(', ');
    return `  ${qualifier} ${C_TYPE[f.root.ty]} ${f.member}(${params}) { return ${f.name}(${call}); }`;
  });
  return [
    `struct ${passStructName(pass.pass)} {`,
    ...constants.map((c) => `  ${c}`),
    ...members,
    '};',
  ].join('\n');
}

/** A C string literal of `text`, one source line per text line; only printable ASCII passes unescaped. */
export function cStringLiteral(text: string, indent = '  '): string {
  const lines = text.split(/(?<=\n)/);
  const esc = (line: string) =>
    [...Buffer.from(line, 'utf8')]
      .map((b) => {
        if (b === 0x5c) return '\\\\';
        if (b === 0x22) return '\\"';
        if (b === 0x0a) return '\\n';
        // Octal escapes are at most 3 digits, so a following digit cannot extend them (unlike \x).
        if (b < 0x20 || b > 0x7e || b === 0x3f) return `\\${b.toString(8).padStart(3, '0')}`;
        return String.fromCharCode(b);
      })
      .join('');
  return lines.length ? lines.map((l) => `${indent}"${esc(l)}"`).join('\n') : `${indent}""`;
}

/** A float64 as a C double literal that reads back exactly. */
export function cDouble(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`cannot render non-finite double ${x}`);
  const s = x.toPrecision(17);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/** Storage dtypes (CPU backend): the C type of one element and the bit conversions md_cpu.h (templates/cpu/md_cpu.h.hbs) defines. */
export const STORAGE: Readonly<Record<DType, { ctype: string; bytes: number; widen: string; narrow: string }>> = {
  fp32: { ctype: 'float', bytes: 4, widen: 'md_f32_from_f32', narrow: 'md_f32_from_f32' },
  bf16: { ctype: 'uint16_t', bytes: 2, widen: 'md_f32_from_bf16', narrow: 'md_bf16_from_f32' },
  fp16: { ctype: 'uint16_t', bytes: 2, widen: 'md_f32_from_f16', narrow: 'md_f16_from_f32' },
};

/** The LM head's [N, K]: md_lm_head_argmax reduces exactly as md_gemm_lm_head does. */
export function lmHeadShape(plan: ModulePlan): ModulePlan['gemms'][number] {
  const g = plan.gemms.find((x) => x.role === 'lm_head');
  if (!g) throw new Error(`module ${plan.name}: the plan has no lm_head projection`);
  return g;
}

/**
 * md_verify_sample's rule as C functions (bodies from the IR, plan.verifierRule):
 *   bool md_verify_accept(float p, float q, float u, float h)   accept a drafted token (h: the target row's entropy)
 *   float md_verify_residual(float p, float q)                  unnormalised weight to resample from
 * and MD_VERIFY_ENTROPY, whether accept reads h: the kernels reduce the entropy over the vocabulary only then.
 */
/** Whether the module's accept rule reads h, the entropy of the target's distribution. */
export function verifierReadsEntropy(plan: ModulePlan): boolean {
  return topo(plan.verifierRule.accept).some((n) => n.op === 'var' && n.value === 'h');
}

export function renderVerifierFunctions(plan: ModulePlan, qualifier: string): string {
  const f32 = (name: string): FnArg => ({ name, ty: 'f32' });
  const fn = (name: string, args: readonly FnArg[], root: Node) => {
    const body = renderBody(root, {
      vars: Object.fromEntries(args.map((a) => [a.name, a.name])),
      prefix: 'e',
      param(key) {
        throw new Error(`verifier rule reads param '${key}'; verifier functions have no params`);
      },
    });
    const sig = args.map((a) => `${C_TYPE[a.ty]} ${a.name}`).join(', ');
    const unused = args.map((a) => `(void)${a.name};`).join(' ');
    return [`${qualifier} ${C_TYPE[root.ty]} ${name}(${sig}) {`, `  ${unused}`, ...body.lines.map((l) => `  ${l}`), `  return ${body.result};`, '}'].join('\n');
  };
  const r = plan.verifierRule;
  return [
    `// md_verify_sample's rule: ${r.from}.`,
    `constexpr bool MD_VERIFY_ENTROPY = ${verifierReadsEntropy(plan)};`,
    fn('md_verify_accept', [f32('p'), f32('q'), f32('u'), f32('h')], r.accept),
    fn('md_verify_residual', [f32('p'), f32('q')], r.residual),
  ].join('\n\n');
}
