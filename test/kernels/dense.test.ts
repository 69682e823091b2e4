// Generated row-wise and dense kernels vs the float64 reference, on every test module (fp32/bf16/fp16
// storage). Outputs start as NaN poison (driver), so an unwritten element fails the finiteness check.
// Row invariance for gemm, rmsnorm and rope_append is bitwise: a row alone (smallest bucket, one thread)
// equals that row inside a batch (largest bucket, two threads).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { STATUS_CODES } from '../../codegen/abi.ts';
import { manifestText } from '../../codegen/manifest.ts';
import { addRef, appendedCacheRef, argmaxRef, cpuGemmInputs, embedRef, gemmRef, relError, rmsnormRef, ropeRef, swigluRef, verifyGreedyRef } from '../reference/kernels.ts';
import { mulberry32 } from '../harness/kernels/attention-case.ts';
import { KERNEL_DEPLOYMENTS, type KernelDeploymentName } from '../harness/kernels/deployments.ts';
import { f32, i32 } from '../harness/kernels/driver.ts';
import { useModules, type ModuleUnderTest } from '../harness/kernels/module.ts';
import { load, store, storageBytes } from '../harness/kernels/storage.ts';

const NAMES = Object.keys(KERNEL_DEPLOYMENTS) as KernelDeploymentName[];
const modules = useModules(KERNEL_DEPLOYMENTS);

const RUNS = 15;
const rand = (rnd: () => number, n: number, scale = 1) => Float32Array.from({ length: n }, () => (2 * rnd() - 1) * scale);
const bits = (a: Float32Array) => new Uint32Array(a.slice().buffer);
const finite = (a: Float32Array) => a.every(Number.isFinite);
const seedArb = fc.integer({ min: 1, max: 0x7fffffff });

/** Draw: a seed and a row count within the largest bucket. */
const drawArb = (m: ModuleUnderTest) => fc.record({ seed: seedArb, rows: fc.integer({ min: 1, max: Math.max(...m.plan.buckets) * (m.plan.gamma + 1) }) });
const small = (m: ModuleUnderTest) => Math.min(...m.plan.buckets);
const large = (m: ModuleUnderTest) => Math.max(...m.plan.buckets);

describe.each(NAMES)('dense kernels, module %s', (name) => {
  const mod = () => modules.get(name)!;

  it('embed: rows are the decoded table rows; an out-of-range token is MD_ERR_ARG and writes nothing', async () => {
    const m = mod();
    const { hidden: H, vocab: V } = m.plan.dims;
    await fc.assert(
      fc.asyncProperty(drawArb(m), async ({ seed, rows }) => {
        const rnd = mulberry32(seed);
        const table = store(m.plan.deployment.dtype, rand(rnd, V * H, 2));
        const tokens = Int32Array.from({ length: rows }, () => Math.floor(rnd() * V));
        const res = await m.driver.call('md_embed', { table: table.bytes, tokens, x: { out: rows * H * 4 }, rows });
        expect(res.status).toBe(0);
        expect(Array.from(f32(res.out.x))).toEqual(Array.from(embedRef(table.values, tokens, H)));
        tokens[rows - 1] = rnd() < 0.5 ? -1 : V;
        const bad = await m.driver.call('md_embed', { table: table.bytes, tokens, x: { out: rows * H * 4 }, rows });
        expect(bad.status).toBe(1);
        expect(f32(bad.out.x).every(Number.isNaN)).toBe(true);
      }),
      { numRuns: 5 },
    );
  });

  it('rmsnorm, add_rmsnorm, add, swiglu match the reference; rmsnorm is row-invariant', async () => {
    const m = mod();
    const { hidden: H, intermediate: I } = m.plan.dims;
    await fc.assert(
      fc.asyncProperty(drawArb(m), async ({ seed, rows }) => {
        const rnd = mulberry32(seed);
        const x = rand(rnd, rows * H, 3);
        const delta = rand(rnd, rows * H, 1);
        const w = store(m.plan.deployment.dtype, rand(rnd, H, 2));
        const eps = m.plan.rmsEps;
        const norm = await m.driver.call('md_rmsnorm', { x, w: w.bytes, y: { out: rows * H * 4 }, rows }, 2);
        expect(norm.status).toBe(0);
        const y = f32(norm.out.y);
        expect(finite(y)).toBe(true);
        expect(relError(y, rmsnormRef(x, w.values, rows, H, eps))).toBeLessThan(1e-5);
        for (let r = 0; r < rows; r++) {
          const alone = await m.driver.call('md_rmsnorm', { x: x.slice(r * H, (r + 1) * H), w: w.bytes, y: { out: H * 4 }, rows: 1 }, 1);
          expect(bits(f32(alone.out.y))).toEqual(bits(y.slice(r * H, (r + 1) * H)));
        }

        const fused = await m.driver.call('md_add_rmsnorm', { resid: x, delta, w: w.bytes, y: { out: rows * H * 4 }, rows });
        expect(fused.status).toBe(0);
        const sum = Float32Array.from(x, (v, i) => v + delta[i]);
        expect(bits(f32(fused.out.resid))).toEqual(bits(sum));
        expect(relError(f32(fused.out.y), rmsnormRef(sum, w.values, rows, H, eps))).toBeLessThan(1e-5);

        const add = await m.driver.call('md_add', { resid: x, delta, rows });
        expect(add.status).toBe(0);
        expect(bits(f32(add.out.resid))).toEqual(bits(Float32Array.from(addRef(x, delta))));

        const gate = rand(rnd, rows * I, 6);
        const up = rand(rnd, rows * I, 2);
        const sw = await m.driver.call('md_swiglu', { gate, up, out: { out: rows * I * 4 }, rows });
        expect(sw.status).toBe(0);
        expect(finite(f32(sw.out.out))).toBe(true);
        expect(relError(f32(sw.out.out), swigluRef(gate, up))).toBeLessThan(1e-5);
      }),
      { numRuns: RUNS },
    );
  });

  it('gemm of every role matches the reference and is row-invariant', async () => {
    const m = mod();
    const roles = m.plan.gemms;
    await fc.assert(
      fc.asyncProperty(drawArb(m), fc.integer({ min: 0, max: roles.length - 1 }), fc.boolean(), async ({ seed, rows }, ri, withBias) => {
        const { role, n: N, k: K } = roles[ri];
        const rnd = mulberry32(seed);
        const x = rand(rnd, rows * K, 2);
        const w = store(m.plan.deployment.dtype, rand(rnd, N * K, 0.5));
        const bias = withBias ? store(m.plan.deployment.dtype, rand(rnd, N, 1)) : undefined;
        const res = await m.driver.call(`md_gemm_${role}_b${large(m)}`, { x, w: w.bytes, bias: bias?.bytes ?? null, y: { out: rows * N * 4 }, rows }, 2);
        expect(res.status).toBe(0);
        const y = f32(res.out.y);
        expect(finite(y)).toBe(true);
        expect(relError(y, gemmRef(...cpuGemmInputs(m.plan.deployment.dtype, x, w.values), bias?.values, rows, N, K))).toBeLessThan(1e-5);
        for (let r = 0; r < rows; r++) {
          const alone = await m.driver.call(`md_gemm_${role}_b${small(m)}`, { x: x.slice(r * K, (r + 1) * K), w: w.bytes, bias: bias?.bytes ?? null, y: { out: N * 4 }, rows: 1 }, 1);
          expect(bits(f32(alone.out.y)), `${role} row ${r} of ${rows}`).toEqual(bits(y.slice(r * N, (r + 1) * N)));
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('gemm rejects more rows than its bucket allows', async () => {
    const m = mod();
    const { n: N, k: K } = m.plan.gemms[0];
    const rows = small(m) * (m.plan.gamma + 1) + 1;
    const res = await m.driver.call(`md_gemm_q_b${small(m)}`, { x: new Float32Array(rows * K), w: new Uint8Array(N * K * storageBytes(m.plan.deployment.dtype)), bias: null, y: { out: rows * N * 4 }, rows });
    expect(res.status).toBe(1);
    expect(f32(res.out.y).every(Number.isNaN)).toBe(true);
  });

  it('rope_append rotates q and k like the reference, stores k and v rounded to storage, touches nothing else, row-invariantly', async () => {
    const m = mod();
    const { heads, kvHeads, headDim: D, kvDim } = m.plan.dims;
    const dtype = m.plan.deployment.dtype;
    const PS = m.plan.pageSize;
    await fc.assert(
      fc.asyncProperty(drawArb(m), async ({ seed, rows }) => {
        const rnd = mulberry32(seed);
        const slots = rows + 1;
        const pagesPerSeq = m.plan.pagesPerSeq;
        const nPages = 3 * rows;
        const pageTable = Int32Array.from({ length: slots * pagesPerSeq }, () => Math.floor(rnd() * nPages));
        // Distinct (slot, position) per row; positions up to maxSeq - 1 (large angles).
        const rowSeq = Int32Array.from({ length: rows }, (_, r) => r);
        const rowPos = Int32Array.from({ length: rows }, () => Math.floor(rnd() ** 2 * m.plan.maxSeq));
        for (let r = 0; r < rows; r++) pageTable[r * pagesPerSeq + Math.floor(rowPos[r] / PS)] = r; // page r is row r's
        const q = rand(rnd, rows * heads * D, 2);
        // k and v span 2^-30 .. 2^20, so fp16/bf16 stores hit subnormals, rounding ties and overflow.
        const wide = () => Float32Array.from({ length: rows * kvDim }, () => (2 * rnd() - 1) * 2 ** (Math.floor(rnd() * 50) - 30));
        const k = wide();
        const v = wide();
        const cache = store(dtype, rand(rnd, nPages * PS * kvDim, 1));
        const args = { q, k, v, k_cache: cache.bytes, v_cache: cache.bytes.slice(), page_table: pageTable, pages_per_seq: pagesPerSeq, row_seq: rowSeq, row_pos: rowPos, rows };
        const res = await m.driver.call('md_rope_append', args, 2);
        expect(res.status).toBe(0);
        const qo = f32(res.out.q);
        const ko = f32(res.out.k);
        expect(relError(qo, ropeRef(q, rowPos, heads, D, m.plan.ropeInvFreq))).toBeLessThan(1e-5);
        expect(relError(ko, ropeRef(k, rowPos, kvHeads, D, m.plan.ropeInvFreq))).toBeLessThan(1e-5);
        const shape = { kvHeads, headDim: D, pageSize: PS };
        const page = (r: number) => r;
        const kWant = appendedCacheRef(shape, load(dtype, cache.bytes), load(dtype, store(dtype, ko).bytes), rowPos, page);
        const vWant = appendedCacheRef(shape, load(dtype, cache.bytes), load(dtype, store(dtype, v).bytes), rowPos, page);
        expect(Array.from(load(dtype, res.out.k_cache))).toEqual(Array.from(kWant));
        expect(Array.from(load(dtype, res.out.v_cache))).toEqual(Array.from(vWant));
        for (let r = 0; r < rows; r++) {
          const one = await m.driver.call(
            'md_rope_append',
            { ...args, q: q.slice(r * heads * D, (r + 1) * heads * D), k: k.slice(r * kvDim, (r + 1) * kvDim), v: v.slice(r * kvDim, (r + 1) * kvDim), row_seq: rowSeq.slice(r, r + 1), row_pos: rowPos.slice(r, r + 1), rows: 1 },
            1,
          );
          expect(bits(f32(one.out.q))).toEqual(bits(qo.slice(r * heads * D, (r + 1) * heads * D)));
          expect(bits(f32(one.out.k))).toEqual(bits(ko.slice(r * kvDim, (r + 1) * kvDim)));
        }
        // A position beyond maxSeq is rejected before anything is written.
        const bad = await m.driver.call('md_rope_append', { ...args, row_pos: Int32Array.from(rowPos, (p, i) => (i === rows - 1 ? m.plan.maxSeq : p)) });
        expect(bad.status).toBe(1);
        expect(Array.from(bad.out.k_cache)).toEqual(Array.from(cache.bytes));
        expect(bits(f32(bad.out.q))).toEqual(bits(q));
      }),
      { numRuns: 10 },
    );
  });

  it('argmax: lowest index wins ties, NaN never wins', async () => {
    const m = mod();
    const V = m.plan.dims.vocab;
    await fc.assert(
      fc.asyncProperty(drawArb(m), async ({ seed, rows }) => {
        const rnd = mulberry32(seed);
        // Few distinct values (ties), NaNs and infinities, one all-NaN row.
        const pool = [-Infinity, -1, 0, -0, 0.5, 2, Infinity, NaN];
        const logits = Float32Array.from({ length: rows * V }, () => pool[Math.floor(rnd() * (rnd() < 0.5 ? 5 : pool.length))]);
        logits.fill(NaN, 0, V);
        const res = await m.driver.call('md_argmax', { logits, tokens: { out: rows * 4 }, rows }, 2);
        expect(res.status).toBe(0);
        expect(Array.from(i32(res.out.tokens))).toEqual(Array.from(argmaxRef(logits, rows, V)));
      }),
      { numRuns: RUNS },
    );
  });

  it('verify_greedy counts the accepted prefix and picks the next token', async () => {
    const m = mod();
    const g = m.plan.gamma;
    await fc.assert(
      fc.asyncProperty(seedArb, fc.integer({ min: 1, max: 9 }), async (seed, batch) => {
        const rnd = mulberry32(seed);
        const target = Int32Array.from({ length: batch * (g + 1) }, () => Math.floor(rnd() * 3));
        const draft = Int32Array.from({ length: batch * g }, () => Math.floor(rnd() * 3));
        const res = await m.driver.call('md_verify_greedy', { target_tokens: target, draft_tokens: draft, accepted: { out: batch * 4 }, next: { out: batch * 4 }, batch });
        expect(res.status).toBe(0);
        const want = verifyGreedyRef(target, draft, batch, g);
        expect(Array.from(i32(res.out.accepted))).toEqual(Array.from(want.accepted));
        expect(Array.from(i32(res.out.next))).toEqual(Array.from(want.next));
      }),
      { numRuns: RUNS },
    );
  });

  it('exports the manifest, the status names and the workspace size', async () => {
    const m = mod();
    expect(await m.driver.manifest()).toBe(manifestText(m.plan));
    for (const s of STATUS_CODES) expect(await m.driver.statusString(s.value)).toBe(s.text);
    expect(await m.driver.statusString(99)).toBe('unknown status');
    const { heads, headDim } = m.plan.dims;
    expect(await m.driver.workspaceFloats(5)).toBe(5 * heads * m.plan.maxChunks * (headDim + 2));
    expect(await m.driver.workspaceFloats(0)).toBe(0);
  });
});
