// Limits on a deployment's values, in one place: the front end reports them as diagnostics at the spec's
// expressions, `gen`'s flags reject them as bad arguments, and planModule refuses a deployment built in
// code that breaks them. They keep every derived size (rows = bucket * (gamma + 1), positions, page and
// chunk indices) well inside int32, and every runtime param exact in the float slots it travels in.
import type { DeploymentIR, ParamDecl } from './spec.ts';

/** Largest batch bucket. */
export const MAX_BATCH = 4096;
/** Most tokens drafted per round. */
export const MAX_GAMMA = 16;
/**
 * gammaMax of a spec with gamma 'auto' that gives none. Modules are compiled for bucket * (gammaMax + 1)
 * rows, and past 8 drafts a round gains little even at acceptance 0.8 (4.3 tokens of a possible 5).
 */
export const DEFAULT_GAMMA_MAX = 8;
/** Longest sequence (positions are < maxSeq). */
export const MAX_SEQ = 2 ** 22;
/**
 * A spec's page size: a power of two in [MIN_PAGE_SIZE, MAX_PAGE_SIZE]; smaller pages only add page-table
 * lookups. The kernels work with any power of two up to MAX_PAGE_SIZE, which is all planModule asks
 * (the kernel tests use 4-position pages to get many tiles from short sequences).
 */
export const MIN_PAGE_SIZE = 8;
export const MAX_PAGE_SIZE = 256;
/**
 * Largest magnitude of a runtime i32 param: runtime params travel as floats (md_attn_args.params), which
 * hold every integer up to 2^24 exactly but not all integers beyond (2^24 + 1 is not a float).
 */
export const MAX_EXACT_I32_PARAM = 2 ** 24;

/**
 * Largest value of each integer field of a model's config.json (smallest: 1), by its config.json name; the
 * C++ runtime reads the same table from runtime/generated/md_limits.h (renderLimitsHeader). Beyond the
 * largest real models (hidden 16384, 256K vocab, 126 layers, 10M context) yet small enough that every
 * weight and activation size is far inside what the kernels index (size_t) and the compiler can unroll.
 */
export const CONFIG_INT_LIMITS = {
  hidden_size: 2 ** 16,
  intermediate_size: 2 ** 18,
  num_hidden_layers: 2 ** 10,
  num_attention_heads: 2 ** 10,
  num_key_value_heads: 2 ** 10,
  head_dim: 2 ** 10,
  vocab_size: 2 ** 20,
  max_position_embeddings: 2 ** 30,
  sliding_window: 2 ** 30,
  'rope_scaling.original_max_position_embeddings': 2 ** 30,
} as const satisfies Record<string, number>;
export type ConfigIntField = keyof typeof CONFIG_INT_LIMITS;
/** eos_token_id may list this many ids at most (Llama 3 lists three). */
export const MAX_EOS_TOKEN_IDS = 4;
/** Deepest nesting of arrays/objects in any JSON file of a model (config.json needs 3, a safetensors header 3). */
export const MAX_JSON_DEPTH = 64;
/** Largest config.json / index json read (they are kilobytes; safetensors headers have their own cap). */
export const MAX_JSON_FILE_BYTES = 64 * 2 ** 20;

const isInt = (x: number) => Number.isInteger(x);

export const isBatchBucket = (b: number): boolean => isInt(b) && b >= 1 && b <= MAX_BATCH;
export const isGamma = (g: number): boolean => isInt(g) && g >= 1 && g <= MAX_GAMMA;
const isPow2Page = (p: number) => isInt(p) && p >= 1 && p <= MAX_PAGE_SIZE && (p & (p - 1)) === 0;
export const isPageSize = (p: number): boolean => isPow2Page(p) && p >= MIN_PAGE_SIZE;
/** maxSeq on its own; whole pages and the model's limit are checked with them (maxSeqProblem). */
export const isMaxSeq = (n: number): boolean => isInt(n) && n >= 1 && n <= MAX_SEQ;
/** A runtime param of type i32 whose value its float slot carries exactly. */
export const isExactI32Param = (v: number): boolean => Math.abs(v) <= MAX_EXACT_I32_PARAM;

/** What is wrong with maxSeq given the page size and the model ([] when nothing; isMaxSeq assumed). */
export function maxSeqProblems(maxSeq: number, pageSize: number | undefined, model: { maxPositionEmbeddings: number } | undefined): string[] {
  const out: string[] = [];
  if (pageSize !== undefined && maxSeq % pageSize !== 0) out.push(`maxSeq (${maxSeq}) must be a multiple of pageSize (${pageSize})`);
  if (model && maxSeq > model.maxPositionEmbeddings) out.push(`maxSeq (${maxSeq}) exceeds the model's maxPositionEmbeddings (${model.maxPositionEmbeddings})`);
  return out;
}

/** A runtime i32 param too large to travel exactly, as a message naming it; undefined when fine. */
export function paramProblem(p: ParamDecl, isConst: boolean): string | undefined {
  if (isConst || p.ty !== 'i32' || isExactI32Param(p.value)) return undefined;
  return `param '${p.name}' = ${p.value} is a runtime i32 beyond ±2^24 (${MAX_EXACT_I32_PARAM}): runtime params travel as floats, which hold integers exactly only up to there; use a smaller value or make the descriptor 'const: true'`;
}

/** Every limit `dep` breaks (page sizes below MIN_PAGE_SIZE pass, see there), each as a message naming the value; [] when none. */
export function deploymentLimitProblems(dep: DeploymentIR): string[] {
  const out: string[] = [];
  const { batch, maxSeq, pageSize } = dep.shapes;
  if (batch.length === 0) out.push('batch buckets must not be empty');
  for (const b of batch) if (!isBatchBucket(b)) out.push(`batch bucket ${b} is not an integer from 1 to ${MAX_BATCH}`);
  for (let i = 1; i < batch.length; i++) if (!(batch[i] > batch[i - 1])) out.push(`batch buckets must be strictly ascending, got ${batch.join(',')}`);
  if (!isGamma(dep.gamma)) out.push(`gamma ${dep.gamma} is not an integer from 1 to ${MAX_GAMMA}`);
  if (!isPow2Page(pageSize)) out.push(`pageSize ${pageSize} is not a power of two up to ${MAX_PAGE_SIZE}`);
  if (!isMaxSeq(maxSeq)) out.push(`maxSeq ${maxSeq} is not an integer from 1 to ${MAX_SEQ}`);
  else out.push(...maxSeqProblems(maxSeq, isPow2Page(pageSize) ? pageSize : undefined, dep.model));
  for (const [pass, p] of [['target', dep.target], ['draft', dep.draft]] as const) {
    for (const d of [p.attention, p.kv]) {
      for (const decl of d.params) {
        const problem = paramProblem(decl, d.const);
        if (problem) out.push(`${pass} ${d.name}: ${problem}`);
      }
    }
  }
  return out;
}

/** The path of the C++ header that carries these limits to the runtime, relative to the repository. */
export const LIMITS_HEADER_PATH = 'runtime/generated/md_limits.h';

/** runtime/generated/md_limits.h: the model-file limits for the C++ readers (written by `npm run regen`). */
export function renderLimitsHeader(): string {
  const rows = Object.entries(CONFIG_INT_LIMITS).map(([field, max]) => `    {"${field}", ${max}},`);
  return [
    '// Generated from codegen/limits.ts by `npm run regen`; do not edit (test/runtime/limits-header.test.ts',
    '// compares it with the rendering). The rules that use these numbers: docs/MODEL-FILES.md.',
    '#pragma once',
    '#include <cstdint>',
    '',
    'namespace md::limits {',
    '',
    'struct ConfigIntLimit {',
    '  const char* field;  // as written in config.json; nested fields as parent.child',
    '  int64_t max;        // the smallest is 1',
    '};',
    '',
    'inline constexpr ConfigIntLimit kConfigInt[] = {',
    ...rows,
    '};',
    '',
    `inline constexpr int kMaxEosTokenIds = ${MAX_EOS_TOKEN_IDS};`,
    `inline constexpr int kMaxJsonDepth = ${MAX_JSON_DEPTH};`,
    `inline constexpr int64_t kMaxJsonFileBytes = ${MAX_JSON_FILE_BYTES};`,
    '',
    '}  // namespace md::limits',
    '',
  ].join('\n');
}
