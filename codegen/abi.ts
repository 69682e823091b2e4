// The kernel ABI every backend implements and the runtime calls: C entry points of a generated module.
// This file is the single source of truth (docs/ABI.md): from it are rendered md_abi.h (types, status
// codes, the kernel list as X-macros, the manifest format; committed as generated/contract/md_abi.h for the
// runtime and carried by every module), each module's md_module.h and manifest, both backends' entry-point
// signatures and host-value argument checks (codegen/backends/contract.ts), the runtime's kernel table,
// and the test drivers.
//
// Conventions (all kernels):
// - Activations (hidden states, q/k/v rows, logits, attention outputs) are fp32, row-major.
// - Weights and the KV cache are in the deployment's storage dtype (bf16/fp16/fp32), Hugging Face layout:
//   a linear layer's weight is [out_features, in_features]; y[r, n] = sum_k x[r, k] * w[n, k] (+ bias[n]).
// - A "row" is one token of one sequence: decode has 1 row per sequence, verification gamma+1, prefill a
//   chunk. Rows of different sequences are mixed freely; `row_seq[r]` is the cache slot of row r's
//   sequence and `row_pos[r]` its absolute position.
// - Every entry point returns 0 on success, or a non-zero md_status; nothing throws or aborts.
// - `stream` is a cudaStream_t on CUDA and ignored on CPU.
// - Row invariance (docs/ARCHITECTURE.md, invariant 1): a row's outputs depend only on that row's inputs and absolute
//   positions, bit for bit — never on `rows`, the bucket, the split count or the thread count.
//
// Argument contract. The CPU backend's behaviour is the definition; CUDA matches it wherever the condition
// is a host value (the arguments themselves), and differs only where it would have to read device memory.
// The host-value checks are data here (ArgSpec.check / nullable), rendered once for both backends:
// - rows < 0, or more than a bucketed kernel's B * (gamma + 1): MD_ERR_ARG. rows == 0 (batch == 0 for
//   verify_greedy, verify_sample): MD_OK with nothing read or written, pointers may be NULL. Otherwise every pointer is
//   required (MD_ERR_ARG if NULL) except gemm's bias, lm_head_argmax's logits and, for a pass without
//   runtime params, md_attn_args.params. pages_per_seq <= 0: MD_ERR_ARG. md_attn_args itself is required.
// - gemm_*: the bias is optional for every projection whatever the model: NULL adds nothing, otherwise
//   bias[n] is added (the runtime passes the model's q/k/v biases, NULL elsewhere). gemm_* and
//   lm_head_argmax return MD_ERR_LAUNCH, writing nothing, for working memory they cannot get (the CPU's
//   bf16-rounded copy of x with bf16 weights).
// - Values read through pointers (tokens, slots, positions, lengths, page-table entries). The CPU reads
//   host memory, checks every row before writing anything and returns MD_ERR_ARG for:
//     embed:       a token outside [0, vocab);
//     sample:      a row's temperature negative, infinite or NaN, top_k < 0, top_p outside (0, 1] or min_p
//                  outside [0, 1] (md_sampling_params_ok); working memory it cannot get is MD_ERR_LAUNCH;
//     verify_sample: gamma above the module's, a sequence's parameters as sample's, or a drafted token
//                  outside [0, vocab); working memory it cannot get is MD_ERR_LAUNCH;
//     rope_append: slot < 0, pos < 0, pos >= maxSeq, pos / page_size >= pages_per_seq, or a negative
//                  page-table entry for the row's page;
//     attn_*:      slot < 0, row_pos < 0, seq_len[slot] < 0 or > min(pages_per_seq * page_size, maxSeq),
//                  or a negative page-table entry among the slot's first ceil(seq_len / page_size) pages.
//   CUDA reads device memory, and no CUDA entry point waits for the host (no stream synchronisation, no
//   device-to-host copy), so that a step's launches can be captured as a CUDA graph. They return MD_OK and:
//     embed:       a row whose token is outside [0, vocab) is zeros (the engine checks prompt tokens when
//                  a request is added; every other token it embeds comes from a kernel);
//     sample:      a row whose parameters md_sampling_params_ok refuses gets token -1;
//     verify_sample: gamma above the module's is MD_ERR_ARG (a host value); a sequence whose parameters
//                  md_sampling_params_ok refuses, or with a drafted token outside [0, vocab), gets accepted 0
//                  and next -1;
//     rope_append: a row with slot < 0, pos < 0, pos >= pages_per_seq * page_size or a negative page-table
//                  entry has q and k rotated but its K/V not stored; a pos in [maxSeq, pages_per_seq *
//                  page_size) is stored like any other;
//     attn_*:      a row with slot < 0 or seq_len[slot] <= 0 outputs zeros; a longer seq_len is clamped to
//                  min(pages_per_seq * page_size, maxChunks * chunk) (maxSeq rounded up to a whole chunk);
//                  row_pos < 0 only enters the mask and policy; a negative page-table entry within the
//                  length is used as a page index (an out-of-bounds read: undefined).
//   Neither backend can check a slot past the page table's last row (its row count is not an argument):
//   undefined on both.
//
// Paged KV cache, per layer: k_cache and v_cache are [num_pages, num_kv_heads, page_size, head_dim]
// (kvCacheRow below); logical page i of slot s is physical page page_table[s * pages_per_seq + i];
// position t of slot s lives at page t / page_size, offset t % page_size. One KV head's rows of a page are
// contiguous, so an attention kernel that walks a head's positions streams them.
//
// Attention reduction order (what makes it row-invariant): KV positions are split into chunks of
// ATTN_CHUNK positions starting at absolute multiples of ATTN_CHUNK; a chunk is a run of pages (tiles).
// For each (row, query head, chunk): tiles in ascending order, each classified skip/partial/full for the
// row by the pass's interval analysis; within a tile, a fixed order of its positions (each backend's own,
// never dependent on the rows or threads; the CPU's is in README.md, "CPU numerics"); online softmax
// (running max m, sum l, accumulator acc[head_dim]). Masked positions and skipped
// tiles never touch the state, and a tile or chunk no row of a call may see need not be visited. Chunk
// partials merge in ascending chunk order, skipping empty chunks: M = max m_c,
// L = sum l_c * exp(m_c - M), out = (sum acc_c * exp(m_c - M)) / L. A row with nothing visible outputs 0.
// A row at position q sees kv positions t < seq_len[slot] with mask(q, t) && keep(t, q + 1): `len` in a
// policy is the sequence length as the row sees it (q + 1). The target pass is causal (planModule proves
// mask && keep false for every t > q, codegen/passes/causal.ts), so a target row never reads a later
// position and its attention is the same whether it is decoded alone, prefilled in a chunk or verified
// among drafted tokens. The draft pass may be non-causal: it only runs with seq_len = q + 1.

export const ATTN_CHUNK_PAGES = 8;

/** Element index of KV head `kvh`'s row at `offset` of physical page `page` in a layer's k_cache or v_cache. */
export function kvCacheRow(shape: { readonly kvHeads: number; readonly headDim: number; readonly pageSize: number }, page: number, offset: number, kvh: number): number {
  return ((page * shape.kvHeads + kvh) * shape.pageSize + offset) * shape.headDim;
}

export type CType =
  | 'int32_t'
  | 'size_t'
  | 'float'
  | 'void*'
  | 'const void*'
  | 'const float*'
  | 'float*'
  | 'const int32_t*'
  | 'int32_t*'
  | 'const uint32_t*'
  | 'const md_attn_args*';

export interface ArgSpec {
  readonly name: string;
  readonly type: CType;
  readonly doc: string;
  /**
   * A host-value check of an integer, made before any work: 'count' is the kernel's row (or sequence)
   * count: < 0, or more than a bucketed kernel's bound, is MD_ERR_ARG and 0 returns MD_OK at once;
   * 'positive' is MD_ERR_ARG when <= 0 (checked once the count is known to be non-zero).
   */
  readonly check?: 'count' | 'positive';
  /**
   * A pointer is required (NULL is MD_ERR_ARG once the count is non-zero) unless it is nullable: always
   * (true), or only for an attention pass without runtime params ('without-params').
   */
  readonly nullable?: true | 'without-params';
}

export interface KernelSpec {
  /** Entry-point name without the `md_` prefix and bucket suffix. */
  readonly name: string;
  readonly doc: string;
  readonly args: readonly ArgSpec[];
  /** Instantiated once per batch bucket as md_<name>_b<B> (rows <= B * (gamma + 1)); else one entry point. */
  readonly perBucket: boolean;
  /** Attention kernels: the pass whose runtime params md_attn_args.params carries. */
  readonly pass?: 'target' | 'draft';
}

/** The version of manifest.json's layout: modules embed it, the runtime refuses any other (md_abi.h MD_MANIFEST_FORMAT). */
export const MANIFEST_FORMAT = 1;

/**
 * An optional export, present only in a CUDA module built for the SIMT emulator (g++ -DMD_SIMT_EMU): the
 * runtime then runs it on host memory (runtime/src/device.h) instead of on a GPU (md_abi.h MD_EMULATED_SYMBOL).
 */
export const EMULATED_SYMBOL = 'md_simt_emulated';

/**
 * An emulated module's stream (md_abi.h md_emu_queue, templates/cuda/md_simt_emu.h): the host device's work
 * queue, so that the engine's stream capture (CUDA graphs on a GPU) has an emulated twin. Its first word.
 */
export const EMU_QUEUE_MAGIC = 0x6d645175;

const stream: ArgSpec = { name: 'stream', type: 'void*', doc: 'cudaStream_t on CUDA; ignored on CPU', nullable: true };
const rows: ArgSpec = { name: 'rows', type: 'int32_t', doc: 'number of rows', check: 'count' };
const pagesPerSeq: ArgSpec = { name: 'pages_per_seq', type: 'int32_t', doc: 'row stride of page_table', check: 'positive' };

/** The dense linear layers of a Llama block, by role; their [N, K] come from the model config. */
export const GEMM_ROLES = ['q', 'kv', 'o', 'gate_up', 'down', 'lm_head'] as const;
export type GemmRole = (typeof GEMM_ROLES)[number];

export function gemmShape(
  role: GemmRole,
  m: { hiddenSize: number; intermediateSize: number; numHeads: number; numKvHeads: number; headDim: number; vocabSize: number },
): { n: number; k: number } {
  switch (role) {
    case 'q':
      return { n: m.numHeads * m.headDim, k: m.hiddenSize };
    case 'kv':
      return { n: m.numKvHeads * m.headDim, k: m.hiddenSize };
    case 'o':
      return { n: m.hiddenSize, k: m.numHeads * m.headDim };
    case 'gate_up':
      return { n: m.intermediateSize, k: m.hiddenSize };
    case 'down':
      return { n: m.hiddenSize, k: m.intermediateSize };
    case 'lm_head':
      return { n: m.vocabSize, k: m.hiddenSize };
  }
}

export const KERNELS: readonly KernelSpec[] = [
  {
    name: 'embed',
    doc: 'x[r] = table[tokens[r]] (hidden_size wide), converted to fp32; a token outside [0, vocab) is MD_ERR_ARG on the CPU, a zero row on CUDA',
    perBucket: false,
    args: [
      { name: 'table', type: 'const void*', doc: '[vocab, hidden] storage dtype' },
      { name: 'tokens', type: 'const int32_t*', doc: '[rows]' },
      { name: 'x', type: 'float*', doc: '[rows, hidden]' },
      rows,
      stream,
    ],
  },
  {
    name: 'rmsnorm',
    doc: 'y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w; the sum of squares runs in a fixed order per row',
    perBucket: false,
    args: [
      { name: 'x', type: 'const float*', doc: '[rows, hidden]' },
      { name: 'w', type: 'const void*', doc: '[hidden] storage dtype' },
      { name: 'y', type: 'float*', doc: '[rows, hidden]' },
      rows,
      stream,
    ],
  },
  {
    name: 'add_rmsnorm',
    doc: 'resid[r] += delta[r]; y[r] = rmsnorm(resid[r]) * w (fused residual add)',
    perBucket: false,
    args: [
      { name: 'resid', type: 'float*', doc: '[rows, hidden], updated in place' },
      { name: 'delta', type: 'const float*', doc: '[rows, hidden]' },
      { name: 'w', type: 'const void*', doc: '[hidden] storage dtype' },
      { name: 'y', type: 'float*', doc: '[rows, hidden]' },
      rows,
      stream,
    ],
  },
  {
    name: 'add',
    doc: 'resid[r] += delta[r] (hidden wide)',
    perBucket: false,
    args: [
      { name: 'resid', type: 'float*', doc: '[rows, hidden], updated in place' },
      { name: 'delta', type: 'const float*', doc: '[rows, hidden]' },
      rows,
      stream,
    ],
  },
  ...GEMM_ROLES.map(
    (role): KernelSpec => ({
      name: `gemm_${role}`,
      doc: `y[r, n] = sum_k x[r, k] * w[n, k] (+ bias[n]) for the ${role} projection; K is reduced in one fixed order per row, weights are read once per call for all rows`,
      perBucket: true,
      args: [
        { name: 'x', type: 'const float*', doc: '[rows, K]' },
        { name: 'w', type: 'const void*', doc: '[N, K] storage dtype' },
        { name: 'bias', type: 'const void*', doc: '[N] storage dtype, or NULL for none (optional for every projection)', nullable: true },
        { name: 'y', type: 'float*', doc: '[rows, N]' },
        rows,
        stream,
      ],
    }),
  ),
  {
    name: 'swiglu',
    doc: 'out[r, i] = silu(gate[r, i]) * up[r, i] (intermediate_size wide), silu(x) = x / (1 + exp(-x))',
    perBucket: false,
    args: [
      { name: 'gate', type: 'const float*', doc: '[rows, intermediate]' },
      { name: 'up', type: 'const float*', doc: '[rows, intermediate]' },
      { name: 'out', type: 'float*', doc: '[rows, intermediate]' },
      rows,
      stream,
    ],
  },
  {
    name: 'rope_append',
    doc: 'rotate q and k in place (Llama rotate-half, with the model\'s rope scaling), then store k and v at (row_seq[r], row_pos[r]) in the paged cache in storage dtype',
    perBucket: false,
    args: [
      { name: 'q', type: 'float*', doc: '[rows, num_heads, head_dim], rotated in place' },
      { name: 'k', type: 'float*', doc: '[rows, num_kv_heads, head_dim], rotated in place' },
      { name: 'v', type: 'const float*', doc: '[rows, num_kv_heads, head_dim]' },
      { name: 'k_cache', type: 'void*', doc: 'this layer\'s K pages' },
      { name: 'v_cache', type: 'void*', doc: 'this layer\'s V pages' },
      { name: 'page_table', type: 'const int32_t*', doc: '[slots, pages_per_seq]' },
      pagesPerSeq,
      { name: 'row_seq', type: 'const int32_t*', doc: '[rows] cache slot' },
      { name: 'row_pos', type: 'const int32_t*', doc: '[rows] absolute position' },
      rows,
      stream,
    ],
  },
  ...(['target', 'draft'] as const).map(
    (pass): KernelSpec => ({
      name: `attn_${pass}`,
      doc: `paged split-KV attention of the ${pass} pass (its mask, score and KV policy inlined, tiles skipped by interval analysis)`,
      perBucket: true,
      pass,
      args: [{ name: 'args', type: 'const md_attn_args*', doc: 'see md_attn_args' }],
    }),
  ),
  {
    name: 'argmax',
    doc: 'tokens[r] = argmax over vocab of logits[r] (lowest index wins ties; NaN never wins); with md_gemm_lm_head_b<B>, the unfused reference of md_lm_head_argmax_b<B>, which the engine calls instead',
    perBucket: false,
    args: [
      { name: 'logits', type: 'const float*', doc: '[rows, vocab]' },
      { name: 'tokens', type: 'int32_t*', doc: '[rows]' },
      rows,
      stream,
    ],
  },
  {
    name: 'lm_head_argmax',
    doc: 'logits[r, n] = sum_k x[r, k] * w[n, k], bit-identical to md_gemm_lm_head_b<B> (bias NULL), and tokens[r] = md_argmax of that row, in one pass over the weights; with logits NULL only tokens are written. Partial argmaxes merge by a total order on (value, index), so no merge order, grid or thread count changes a token',
    perBucket: true,
    args: [
      { name: 'x', type: 'const float*', doc: '[rows, hidden]' },
      { name: 'w', type: 'const void*', doc: '[vocab, hidden] storage dtype' },
      { name: 'logits', type: 'float*', doc: '[rows, vocab], or NULL when only the tokens are wanted', nullable: true },
      { name: 'tokens', type: 'int32_t*', doc: '[rows] greedy token of each row (lowest index wins ties; NaN never wins; a row of NaNs gives 0)' },
      rows,
      stream,
    ],
  },
  {
    name: 'sample',
    doc: "tokens[r] = the sample of logits[r] under row r's temperature, top_k, top_p and min_p, with Gumbel noise keyed by (seed, row_pos[r]); temperature 0 is md_argmax's token (docs/ABI.md, \"Sampling\"). Each row is computed from its own inputs in a fixed order",
    perBucket: false,
    args: [
      { name: 'logits', type: 'const float*', doc: '[rows, vocab]' },
      { name: 'temperature', type: 'const float*', doc: '[rows] finite, >= 0; 0: greedy' },
      { name: 'top_k', type: 'const int32_t*', doc: '[rows] >= 0: keep the top_k highest-ranked tokens; 0 keeps all' },
      { name: 'top_p', type: 'const float*', doc: '[rows] in (0, 1]: keep the shortest top-ranked run holding top_p of the weight; 1 keeps all' },
      { name: 'min_p', type: 'const float*', doc: "[rows] in [0, 1]: keep tokens of weight >= min_p times the top token's; 0 keeps all" },
      { name: 'seed', type: 'const uint32_t*', doc: "[rows, 2] the request's 64-bit seed: low word, high word" },
      { name: 'row_pos', type: 'const int32_t*', doc: "[rows] absolute position of the row (the noise counter; its token goes to position + 1)" },
      { name: 'tokens', type: 'int32_t*', doc: '[rows]' },
      rows,
      stream,
    ],
  },
  {
    name: 'verify_sample',
    doc: "speculative sampling per sequence b (docs/ABI.md, \"Speculative sampling\"): drafted token j (a sample of draft row j) is accepted while md_verify_accept(p, q, u, h) holds for its target and draft probabilities, the uniform of (seed, row_pos + j) and the entropy of the target row's distribution; at the first rejection next[b] is drawn from md_verify_residual over the vocabulary (from the target's distribution if that is all zero); after gamma acceptances next[b] is the target's sample at the last row. The rule is the module's 'sample' verifier's, or the standard one",
    perBucket: false,
    args: [
      { name: 'target_logits', type: 'const float*', doc: '[batch, gamma + 1, vocab] the verified rows\' logits' },
      { name: 'draft_logits', type: 'const float*', doc: '[batch, gamma, vocab] the drafted rows\' logits' },
      { name: 'draft_tokens', type: 'const int32_t*', doc: '[batch, gamma] drafted tokens, each in [0, vocab)' },
      { name: 'temperature', type: 'const float*', doc: '[batch] as md_sample' },
      { name: 'top_k', type: 'const int32_t*', doc: '[batch] as md_sample' },
      { name: 'top_p', type: 'const float*', doc: '[batch] as md_sample' },
      { name: 'min_p', type: 'const float*', doc: '[batch] as md_sample' },
      { name: 'seed', type: 'const uint32_t*', doc: '[batch, 2] as md_sample' },
      { name: 'row_pos', type: 'const int32_t*', doc: "[batch] absolute position of each sequence's first verified row" },
      { name: 'accepted', type: 'int32_t*', doc: '[batch] in 0..gamma' },
      { name: 'next', type: 'int32_t*', doc: '[batch] the token after the accepted ones' },
      { name: 'gamma', type: 'int32_t', doc: 'drafted tokens per sequence, 1..the module gamma', check: 'positive' },
      { name: 'batch', type: 'int32_t', doc: 'number of sequences', check: 'count' },
      stream,
    ],
  },
  {
    name: 'verify_greedy',
    doc: 'per sequence b: accepted[b] = number of leading drafted tokens equal to the target argmax before them; next[b] = target argmax after the accepted prefix',
    perBucket: false,
    args: [
      { name: 'target_tokens', type: 'const int32_t*', doc: '[batch, gamma + 1] target argmax at each verified row' },
      { name: 'draft_tokens', type: 'const int32_t*', doc: '[batch, gamma] drafted tokens' },
      { name: 'accepted', type: 'int32_t*', doc: '[batch] in 0..gamma' },
      { name: 'next', type: 'int32_t*', doc: '[batch] the bonus/correction token' },
      { name: 'batch', type: 'int32_t', doc: 'number of sequences', check: 'count' },
      stream,
    ],
  },
];

// The rest of the ABI as data, for the header renderer (codegen/backends/header.ts) and the test drivers.

/** md_status codes, in value order. */
export const STATUS_CODES = [
  { name: 'MD_OK', value: 0, text: 'ok' },
  { name: 'MD_ERR_ARG', value: 1, text: 'invalid argument' },
  { name: 'MD_ERR_LAUNCH', value: 2, text: 'kernel launch failed' },
] as const;

/** Fields of md_attn_args, in declaration order. */
export const ATTN_ARGS_FIELDS: readonly ArgSpec[] = [
  { name: 'q', type: 'const float*', doc: '[rows, num_heads, head_dim], RoPE applied' },
  { name: 'k_cache', type: 'const void*', doc: "this layer's K pages, storage dtype" },
  { name: 'v_cache', type: 'const void*', doc: "this layer's V pages" },
  { name: 'page_table', type: 'const int32_t*', doc: '[slots, pages_per_seq]' },
  pagesPerSeq,
  { name: 'row_seq', type: 'const int32_t*', doc: '[rows] cache slot of each row' },
  { name: 'row_pos', type: 'const int32_t*', doc: "[rows] absolute position of each row's query" },
  { name: 'seq_len', type: 'const int32_t*', doc: '[slots] positions present in the cache for each slot' },
  rows,
  { name: 'params', type: 'const float*', doc: "the pass's runtime params, in manifest order (attention's, then the policy's)", nullable: 'without-params' },
  { name: 'out', type: 'float*', doc: '[rows, num_heads, head_dim]' },
  { name: 'workspace', type: 'float*', doc: 'md_attn_workspace_floats(rows) floats' },
  stream,
];

/** What every module exports besides the kernels, with the C signatures. */
export interface ExtraSpec {
  readonly name: 'attn_workspace_floats' | 'module_manifest' | 'status_string';
  readonly ret: 'size_t' | 'const char*';
  readonly args: readonly ArgSpec[];
  readonly doc: string;
}

export const EXTRA_SPECS: readonly ExtraSpec[] = [
  { name: 'attn_workspace_floats', ret: 'size_t', args: [{ name: 'rows', type: 'int32_t', doc: 'number of rows' }], doc: 'workspace md_attn_* needs for `rows` rows' },
  { name: 'module_manifest', ret: 'const char*', args: [], doc: 'the manifest.json text, for the loader\'s check' },
  { name: 'status_string', ret: 'const char*', args: [{ name: 'status', type: 'int32_t', doc: 'an md_status' }], doc: 'a readable name of a status code' },
];
