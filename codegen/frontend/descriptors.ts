// The DSL primitives as the front end sees them: attention / kvPolicy / verifier / deploy calls are turned
// into AttentionIR / PolicyIR / VerifierIR / DeploymentIR, with every argument checked and each problem
// reported at the expression it came from.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CallExpression, Node as TsNode } from 'ts-morph';
import { modelPresets, type ModelConfig } from '../../dsl/models.ts';
import { isI32 } from '../ir.ts';
import { DEFAULT_GAMMA_MAX, isBatchBucket, isGamma, isMaxSeq, isPageSize, MAX_BATCH, MAX_GAMMA, MAX_PAGE_SIZE, MAX_SEQ, maxSeqProblems, MIN_PAGE_SIZE, paramProblem } from '../limits.ts';
import { modelConfigProblem, readHfConfigFile } from '../model-config.ts';
import { isCausal } from '../passes/causal.ts';
import { NON_CAUSAL_TARGET, passVisibility } from '../plan.ts';
import type { AttentionIR, DeploymentIR, FnKind, ParamDecl, PassIR, PolicyIR, VerifierIR } from '../spec.ts';
import type { Code } from './diagnostics.ts';
import type { Evaluator } from './evaluate.ts';
import { lowerFunction } from './lower.ts';
import { ArrVal, DescriptorVal, FnVal, kindOf, ObjVal, POISON, toPlain, type Slot, type Value } from './values.ts';

/** Same rule as dsl/core.ts: names become part of kernel names. */
const NAME = /^[a-z][a-z0-9_]*$/;
/** Params become C identifiers in kernel signatures. */
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const DTYPES = ['bf16', 'fp16', 'fp32'] as const;
const ARCHES = ['cpu', 'sm_80', 'sm_90'] as const;

export interface DescriptorContext {
  readonly ev: Evaluator;
  report(code: Code, message: string, node: TsNode): void;
  /** How many diagnostics have been reported so far (to tell whether a call had errors). */
  errorCount(): number;
  /** Directory that relative model config paths are resolved against (the spec file's). */
  readonly specDir: string;
}

type Def = ReadonlyMap<string, Slot>;

/** Field access on a call's definition object, reporting missing and ill-kinded fields. */
class Fields {
  constructor(
    private readonly cx: DescriptorContext,
    readonly props: Def,
    /** Where a missing field is reported. */
    private readonly at: TsNode,
    private readonly what: string,
  ) {}

  slot(key: string): Slot | undefined {
    const s = this.props.get(key);
    return s && s.value !== undefined ? s : undefined;
  }

  missing(key: string, expected: string): undefined {
    this.cx.report('MD1202', `${this.what} needs '${key}' (${expected})`, this.at);
    return undefined;
  }

  wrong(s: Slot, key: string, expected: string): undefined {
    if (s.value !== POISON) this.cx.report('MD1203', `'${key}' must be ${expected}, not ${kindOf(s.value)}`, s.node);
    return undefined;
  }

  string(key: string, required = true): string | undefined {
    const s = this.slot(key);
    if (!s) return required ? this.missing(key, 'a string') : undefined;
    return typeof s.value === 'string' ? s.value : this.wrong(s, key, 'a string');
  }

  number(key: string): { value: number; node: TsNode } | undefined {
    const s = this.slot(key);
    if (!s) return this.missing(key, 'a number');
    return typeof s.value === 'number' ? { value: s.value, node: s.node } : this.wrong(s, key, 'a number');
  }

  boolean(key: string, fallback: boolean): boolean {
    const s = this.slot(key);
    if (!s) return fallback;
    return typeof s.value === 'boolean' ? s.value : (this.wrong(s, key, 'true or false'), fallback);
  }

  fn(key: string, required: boolean): FnVal | undefined | typeof POISON {
    const s = this.slot(key);
    if (!s) return required ? (this.missing(key, 'a function'), POISON) : undefined;
    if (s.value instanceof FnVal) return s.value;
    this.wrong(s, key, 'an arrow function or function declaration');
    return POISON;
  }

  object(key: string, expected: string): Fields | undefined {
    const s = this.slot(key);
    if (!s) return this.missing(key, expected);
    if (!(s.value instanceof ObjVal)) return this.wrong(s, key, expected);
    return new Fields(this.cx, s.value.props, s.node, `'${key}'`);
  }

  descriptor(key: string, kind: DescriptorVal['kind'], expected: string): DescriptorVal | undefined {
    const s = this.slot(key);
    if (!s) return this.missing(key, expected);
    if (s.value instanceof DescriptorVal && s.value.kind === kind) return s.value;
    return this.wrong(s, key, expected);
  }
}

/** The single definition-object argument of a primitive call. */
function defArg(cx: DescriptorContext, name: string, args: readonly Slot[], call: CallExpression): Fields | undefined {
  const a = args[0];
  if (!a) {
    cx.report('MD1202', `${name}(...) needs a definition object`, call);
    return undefined;
  }
  if (args.length > 1) cx.report('MD1203', `${name}(...) takes one definition object, got ${args.length} arguments`, args[1]!.node);
  if (!(a.value instanceof ObjVal)) {
    if (a.value !== POISON) cx.report('MD1203', `${name}(...) needs an object literal, not ${kindOf(a.value)}`, a.node);
    return undefined;
  }
  return new Fields(cx, a.value.props, a.node, `${name}(...)`);
}

function checkName(cx: DescriptorContext, f: Fields, kind: string): string | undefined {
  const name = f.string('name');
  if (name !== undefined && !NAME.test(name)) {
    cx.report('MD1201', `${kind} name '${name}' must match ${NAME} (lower-case letters, digits and '_', starting with a letter): it becomes part of kernel names`, f.slot('name')!.node);
    return undefined;
  }
  return name;
}

/** The descriptor's params, typed by value (an integer is i32); a runtime i32 must travel exactly as a float. */
function paramsOf(cx: DescriptorContext, f: Fields, isConst: boolean): ParamDecl[] | undefined {
  const s = f.slot('params');
  if (!s) return [];
  if (!(s.value instanceof ObjVal)) return f.wrong(s, 'params', 'an object of named numbers');
  const out: ParamDecl[] = [];
  let ok = true;
  for (const [name, p] of s.value.props) {
    if (!PARAM_NAME.test(name)) {
      cx.report('MD1204', `param name '${name}' must be an identifier (letters, digits, '_'): it becomes a kernel argument`, p.node);
      ok = false;
    } else if (typeof p.value !== 'number' || !Number.isFinite(p.value)) {
      if (p.value !== POISON) cx.report('MD1204', `param '${name}' must be a finite number, not ${kindOf(p.value)}`, p.node);
      ok = false;
    } else {
      const decl: ParamDecl = { name, ty: isI32(p.value) ? 'i32' : 'f32', value: p.value };
      const problem = paramProblem(decl, isConst);
      if (problem) {
        cx.report('MD1204', problem, p.node);
        ok = false;
      } else out.push(decl);
    }
  }
  return ok ? out : undefined;
}

function lowerField(cx: DescriptorContext, fn: FnVal | undefined | typeof POISON, kind: FnKind, params: readonly ParamDecl[] | undefined, isConst: boolean) {
  if (fn === undefined || fn === POISON) return fn;
  // Without valid params the body can still be checked: lower against an empty set would mis-report p.x.
  return lowerFunction(fn, kind, { params: params ?? [], const: isConst }, cx.ev, (code, message, node) => {
    if (code === 'MD1405' && params === undefined) return;
    cx.report(code, message, node);
  });
}

export function attentionCall(cx: DescriptorContext, args: readonly Slot[], call: CallExpression): Value {
  const before = cx.errorCount();
  const f = defArg(cx, 'attention', args, call);
  if (!f) return POISON;
  const name = checkName(cx, f, 'attention');
  const isConst = f.boolean('const', false);
  const params = paramsOf(cx, f, isConst);
  const mask = lowerField(cx, f.fn('mask', false), 'mask', params, isConst);
  const score = lowerField(cx, f.fn('score', false), 'score', params, isConst);
  const ok = cx.errorCount() === before && name !== undefined && params !== undefined && mask !== POISON && score !== POISON;
  const irv: AttentionIR | undefined = ok ? { name, params, const: isConst, ...(mask ? { mask } : {}), ...(score ? { score } : {}) } : undefined;
  return new DescriptorVal('attention', new ObjVal(f.props), irv);
}

export function kvPolicyCall(cx: DescriptorContext, args: readonly Slot[], call: CallExpression): Value {
  const before = cx.errorCount();
  const f = defArg(cx, 'kvPolicy', args, call);
  if (!f) return POISON;
  const name = checkName(cx, f, 'kvPolicy');
  const isConst = f.boolean('const', false);
  const params = paramsOf(cx, f, isConst);
  const keep = lowerField(cx, f.fn('keep', true), 'keep', params, isConst);
  const ok = cx.errorCount() === before && name !== undefined && params !== undefined && keep !== undefined && keep !== POISON;
  const irv: PolicyIR | undefined = ok ? { name, params, const: isConst, keep } : undefined;
  return new DescriptorVal('kvPolicy', new ObjVal(f.props), irv);
}

export function verifierCall(cx: DescriptorContext, args: readonly Slot[], call: CallExpression): Value {
  const before = cx.errorCount();
  const f = defArg(cx, 'verifier', args, call);
  if (!f) return POISON;
  const name = checkName(cx, f, 'verifier');
  const mode = f.string('mode');
  let irv: VerifierIR | undefined;
  if (mode === 'greedy' || mode === 'match') {
    if (cx.errorCount() === before && name !== undefined) irv = { name, mode };
  } else if (mode === 'sample') {
    const af = f.fn('accept', false);
    const rf = f.fn('residual', false);
    if (af === undefined || rf === undefined) {
      const lacking = [af === undefined ? 'accept' : '', rf === undefined ? 'residual' : ''].filter(Boolean).join(' and ');
      cx.report('MD1205', `a verifier with mode 'sample' needs ${lacking}: accept(p, q, u, h) => boolean and residual(p, q) => number`, f.slot('mode')!.node);
    }
    const accept = lowerField(cx, af, 'accept', [], false);
    const residual = lowerField(cx, rf, 'residual', [], false);
    const lossy = f.boolean('lossy', false);
    if (cx.errorCount() === before && name !== undefined && accept && accept !== POISON && residual && residual !== POISON)
      irv = { name, mode: 'sample', accept, residual, ...(lossy ? { lossy: true as const } : {}) };
  } else if (mode !== undefined) {
    cx.report('MD1203', `'mode' must be 'greedy', 'match' or 'sample', not '${mode}'`, f.slot('mode')!.node);
  }
  return new DescriptorVal('verifier', new ObjVal(f.props), irv);
}

// ------------------------------------------------------------------------------------------ deploy

function passOf(f: Fields, key: 'target' | 'draft'): PassIR | undefined {
  const p = f.object(key, "a pass: { attention: attention(...), kv: kvPolicy(...) }");
  if (!p) return undefined;
  const a = p.descriptor('attention', 'attention', 'an attention(...) descriptor');
  const kv = p.descriptor('kv', 'kvPolicy', 'a kvPolicy(...) descriptor');
  if (!a?.ir || !kv?.ir) return undefined;
  return { attention: a.ir as AttentionIR, kv: kv.ir as PolicyIR };
}

/** Check a model object written in TypeScript (a preset or the user's own) by the config.json rules. */
function checkModelObject(cx: DescriptorContext, s: Slot): ModelConfig | undefined {
  const plain = toPlain(s.value);
  if (plain === POISON || typeof plain !== 'object' || plain === null || Array.isArray(plain)) {
    cx.report('MD1307', `'model' must be a model config object, a preset name or a path to a config.json; got ${kindOf(s.value)}`, s.node);
    return undefined;
  }
  const m = plain as Record<string, unknown>;
  // What modelConfigToHf passes through unchecked; every value rule is modelConfigProblem's.
  const problems: string[] = [];
  if (typeof m.name !== 'string' || !m.name) problems.push("'name' must be a non-empty string");
  for (const k of ['qkvBias', 'tieWordEmbeddings']) if (typeof m[k] !== 'boolean') problems.push(`'${k}' must be true or false`);
  if (m.ropeScaling !== undefined && (typeof m.ropeScaling !== 'object' || m.ropeScaling === null)) problems.push("'ropeScaling' must be an object");
  const problem = problems.length ? undefined : modelConfigProblem(m as unknown as ModelConfig);
  if (problem) problems.push(problem);
  if (problems.length) {
    cx.report('MD1307', `invalid model config: ${problems.join('; ')}`, s.node);
    return undefined;
  }
  return m as unknown as ModelConfig;
}

function modelOf(cx: DescriptorContext, f: Fields): ModelConfig | undefined {
  const s = f.slot('model');
  if (!s) return f.missing('model', 'a model config object, a preset name or a path to a config.json');
  if (s.value === POISON) return undefined;
  if (typeof s.value !== 'string') return checkModelObject(cx, s);
  const preset = Object.hasOwn(modelPresets, s.value) ? modelPresets[s.value] : undefined;
  if (preset) return preset;
  if (!/\.json$/i.test(s.value) && !/[\\/]/.test(s.value)) {
    cx.report('MD1307', `unknown model preset '${s.value}'; presets: ${Object.keys(modelPresets).join(', ')}, or give a path to a Hugging Face config.json`, s.node);
    return undefined;
  }
  let file = path.resolve(cx.specDir, s.value);
  try {
    if (fs.statSync(file).isDirectory()) file = path.join(file, 'config.json');
    return readHfConfigFile(file, path.relative(process.cwd(), file) || file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    cx.report('MD1307', err.code === 'ENOENT' ? `model config '${s.value}' not found (looked for ${file})` : err.message, s.node);
    return undefined;
  }
}

function validateShapes(cx: DescriptorContext, f: Fields, model: ModelConfig | undefined): DeploymentIR['shapes'] | undefined {
  const sh = f.object('shapes', '{ batch: number[], maxSeq: number, pageSize: number }');
  if (!sh) return undefined;
  let ok = true;
  const bad = (code: Code, msg: string, node: TsNode) => {
    cx.report(code, msg, node);
    ok = false;
  };

  const bs = sh.slot('batch');
  const batch: number[] = [];
  if (!bs) ok = sh.missing('batch', 'ascending positive integers') ?? false;
  else if (!(bs.value instanceof ArrVal)) ok = sh.wrong(bs, 'batch', 'an array of batch sizes') ?? false;
  else if (bs.value.items.length === 0) bad('MD1302', 'batch buckets must not be empty: list at least one batch size, e.g. [1, 8, 32]', bs.node);
  else {
    for (const it of bs.value.items) {
      const v = it.value;
      if (typeof v !== 'number' || !isBatchBucket(v)) {
        if (v !== POISON) bad('MD1302', `a batch bucket must be an integer from 1 to ${MAX_BATCH}, not ${kindOf(v)}`, it.node);
        else ok = false;
      } else if (batch.length && v <= batch[batch.length - 1]!) {
        bad('MD1302', `batch buckets must be strictly ascending: ${v} comes after ${batch[batch.length - 1]}`, it.node);
      } else batch.push(v);
    }
  }

  const ps = sh.number('pageSize');
  if (!ps) ok = false;
  else if (!isPageSize(ps.value)) {
    bad('MD1303', `pageSize must be a power of two from ${MIN_PAGE_SIZE} to ${MAX_PAGE_SIZE}, not ${ps.value}`, ps.node);
  }

  const ms = sh.number('maxSeq');
  if (!ms) ok = false;
  else if (!isMaxSeq(ms.value)) bad('MD1304', `maxSeq must be an integer from 1 to ${MAX_SEQ}, not ${ms.value}`, ms.node);
  else {
    for (const problem of maxSeqProblems(ms.value, ps && ok ? ps.value : undefined, model)) bad('MD1304', problem, ms.node);
  }
  return ok && ps && ms ? { batch, maxSeq: ms.value, pageSize: ps.value } : undefined;
}

function oneOf<T extends string>(cx: DescriptorContext, f: Fields, key: string, allowed: readonly T[], code: Code): T | undefined {
  const s = f.slot(key);
  if (!s) return f.missing(key, allowed.map((a) => `'${a}'`).join(' | '));
  if (typeof s.value === 'string' && (allowed as readonly string[]).includes(s.value)) return s.value as T;
  if (s.value !== POISON) cx.report(code, `'${key}' must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, not ${kindOf(s.value)}`, s.node);
  return undefined;
}

/** `gamma: n`, or `gamma: 'auto'` with an optional `gammaMax` (the compiled maximum). */
function gammaOf(cx: DescriptorContext, f: Fields): Pick<DeploymentIR, 'gamma' | 'adaptiveGamma'> | undefined {
  const range = `an integer from 1 to ${MAX_GAMMA}`;
  const s = f.slot('gamma');
  const max = f.slot('gammaMax');
  if (!s) return f.missing('gamma', `tokens drafted per round: ${range}, or 'auto'`);
  if (s.value === POISON || max?.value === POISON) return undefined;
  if (s.value !== 'auto') {
    if (typeof s.value !== 'number' || !isGamma(s.value)) {
      cx.report('MD1301', `gamma (tokens drafted per round) must be ${range} or 'auto', not ${kindOf(s.value)}`, s.node);
      return undefined;
    }
    if (max) {
      cx.report('MD1301', `gammaMax only applies with gamma: 'auto' (the module is compiled for gamma ${s.value}); remove it or use gamma: 'auto'`, max.node);
      return undefined;
    }
    return { gamma: s.value };
  }
  if (!max) return { gamma: DEFAULT_GAMMA_MAX, adaptiveGamma: true };
  if (typeof max.value !== 'number' || !isGamma(max.value)) {
    cx.report('MD1301', `gammaMax (the most tokens a round may draft) must be ${range}, not ${kindOf(max.value)}`, max.node);
    return undefined;
  }
  return { gamma: max.value, adaptiveGamma: true };
}

export function deployCall(cx: DescriptorContext, args: readonly Slot[], call: CallExpression): Value {
  const before = cx.errorCount();
  const f = defArg(cx, 'deploy', args, call);
  if (!f) return POISON;
  const model = modelOf(cx, f);
  const target = passOf(f, 'target');
  // Invariant 1 (spec == AR, bitwise) needs a causal target; the draft only runs with seq_len = q + 1.
  // The model's window never makes a mask causal (it keeps every kv > q), so an invalid model is no reason to skip.
  if (target && !isCausal(passVisibility(target, { slidingWindow: model?.slidingWindow }))) cx.report('MD1308', NON_CAUSAL_TARGET, f.slot('target')!.node);
  const draft = passOf(f, 'draft');
  const vd = f.descriptor('verify', 'verifier', 'a verifier(...) descriptor, e.g. greedy or sampleAndMatch');
  const gamma = gammaOf(cx, f);
  const shapes = validateShapes(cx, f, model);
  const dtype = oneOf(cx, f, 'dtype', DTYPES, 'MD1305');
  const arch = oneOf(cx, f, 'arch', ARCHES, 'MD1306');
  const verify = vd?.ir as VerifierIR | undefined;
  const irv: Omit<DeploymentIR, 'source'> | undefined =
    cx.errorCount() === before && model && target && draft && verify && gamma && shapes && dtype && arch
      ? { model, target, draft, verify, ...gamma, shapes, dtype, arch }
      : undefined;
  return new DescriptorVal('deploy', new ObjVal(f.props), irv);
}
