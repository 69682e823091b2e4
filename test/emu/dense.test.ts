// The generated CUDA row-wise, GEMM and LM-head kernels, run under the SIMT emulator (test/harness/emu/
// module.ts: the very kernel bodies nvcc compiles, built as host C++ with ASan and UBSan), against the
// float64 references of the CPU kernels (test/reference/kernels.ts), on every emulated test module (fp32,
// bf16 and fp16 storage). Outputs start as NaN / -1 poison, so an unwritten element fails. Tolerances
// follow the CUDA numerics: storage values are decoded exactly and all arithmetic is fp32; the one
// rounding is the GEMMs' activations to bf16 / fp16 on the tensor-core path (gemm-numerics.ts), which the
// references apply too. So one bound serves every dtype — a relative L2 error of 2e-6 where the measured
// worst is 1.2e-7 (the run prints each kernel's) — and the GEMMs also stay within that bound plus the
// rounding's unit roundoff of the reference on unrounded activations. Row invariance is bitwise: a row alone in the smallest bucket, the
// batch in every bucket that holds it, and another thread schedule (reverse, shuffled) all give the same
// bits. Every property runs first on a full largest bucket (every GEMM row tile full), then on drawn
// row counts. The CUDA backend's documented differences from the CPU (codegen/abi.ts) are what is checked where
// the CPU would refuse: embed writes the valid rows and zeros for a bad token, rope_append rotates a row
// outside the cache without storing it.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { STATUS_CODES } from '../../codegen/abi.ts';
import { manifestText } from '../../codegen/manifest.ts';
import { addRef, appendedCacheRef, argmaxRef, embedRef, gemmRef, relError, rmsnormRef, ropeRef, swigluRef, verifyGreedyRef } from '../reference/kernels.ts';
import { mulberry32 } from '../harness/kernels/attention-case.ts';
import { f32, i32, type KernelDriver } from '../harness/kernels/driver.ts';
import { useEmulatedModules, type EmulatedModule } from '../harness/emu/module.ts';
import { load, store, storageBytes } from '../harness/kernels/storage.ts';
import { EMU_DEPLOYMENTS, heavy, type EmuDeploymentName } from './deployments.ts';
import { activationRoundoff, gemmInput } from './gemm-numerics.ts';

const NAMES = Object.keys(EMU_DEPLOYMENTS) as EmuDeploymentName[];
const modules = useEmulatedModules(EMU_DEPLOYMENTS);

/** fp32 arithmetic on exactly decoded storage values, whatever the dtype (see the header). */
const TOL = 2e-6;
const worst = new Map<string, number>();
const measured = (what: string, e: number) => {
  worst.set(what, Math.max(worst.get(what) ?? 0, e));
  return e;
};
afterAll(() => console.log(`emulated dense kernels, worst relative error: ${JSON.stringify(Object.fromEntries([...worst].map(([k, v]) => [k, Number(v.toPrecision(2))])))}`));

const rand = (rnd: () => number, n: number, scale = 1) => Float32Array.from({ length: n }, () => (2 * rnd() - 1) * scale);
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.slice().buffer));
const finite = (a: Float32Array) => a.every(Number.isFinite);
const seedArb = fc.integer({ min: 1, max: 0x7fffffff });
const maxRows = (m: EmulatedModule, b: number) => b * (m.plan.gamma + 1);
const small = (m: EmulatedModule) => Math.min(...m.plan.buckets);
const large = (m: EmulatedModule) => Math.max(...m.plan.buckets);
/** Cases to draw: fewer on the Llama slice. */
const runs = (m: EmulatedModule, n: number) => (heavy(m.plan) ? 1 : n);
const drawArb = (m: EmulatedModule) => fc.record({ seed: seedArb, rows: fc.integer({ min: 1, max: maxRows(m, large(m)) }) });
/** The case fast-check runs first: every row a bucket holds (all of the GEMMs' row tiles full). */
const fullBucket = (m: EmulatedModule): [{ seed: number; rows: number }][] => [[{ seed: 1, rows: maxRows(m, large(m)) }]];
/** A few rows of `rows` to recompute alone: first, last and some between (each alone call runs the whole kernel). */
const someRows = (rows: number) => [...new Set([0, rows - 1, Math.floor(rows / 2)])].filter((r) => r < rows);

describe.each(NAMES)('emulated CUDA dense kernels, module %s', (name) => {
  const mod = () => modules.get(name)!;
  const dtype = () => mod().plan.deployment.dtype;

  it('embed: rows are the decoded table rows; a token out of range is a zero row and MD_OK (CUDA)', async () => {
    const m = mod();
    const { hidden: H, vocab: V } = m.plan.dims;
    await fc.assert(
      fc.asyncProperty(drawArb(m), async ({ seed, rows }) => {
        const rnd = mulberry32(seed);
        const table = store(dtype(), rand(rnd, V * H, 2));
        const tokens = Int32Array.from({ length: rows }, () => Math.floor(rnd() * V));
        const res = await m.driver.call('md_embed', { table: table.bytes, tokens, x: { out: rows * H * 4 }, rows });
        expect(res.status).toBe(0);
        expect(Array.from(f32(res.out.x))).toEqual(Array.from(embedRef(table.values, tokens, H)));
        const bad = Math.floor(rnd() * rows);
        tokens[bad] = rnd() < 0.5 ? -1 : V;
        const zeroed = await m.driver.call('md_embed', { table: table.bytes, tokens, x: { out: rows * H * 4 }, rows });
        expect(zeroed.status).toBe(0);
        const x = f32(zeroed.out.x);
        const want = embedRef(table.values, tokens.map((t) => (t < 0 || t >= V ? 0 : t)), H).fill(0, bad * H, (bad + 1) * H);
        expect(Array.from(x)).toEqual(Array.from(want));
      }),
      { numRuns: runs(m, 3), examples: fullBucket(m) },
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
        const w = store(dtype(), rand(rnd, H, 2));
        const eps = m.plan.rmsEps;
        const norm = await m.driver.call('md_rmsnorm', { x, w: w.bytes, y: { out: rows * H * 4 }, rows });
        expect(norm.status).toBe(0);
        const y = f32(norm.out.y);
        expect(finite(y)).toBe(true);
        expect(measured('rmsnorm', relError(y, rmsnormRef(x, w.values, rows, H, eps)))).toBeLessThan(TOL);
        for (const r of someRows(rows)) {
          const alone = await m.driver.call('md_rmsnorm', { x: x.slice(r * H, (r + 1) * H), w: w.bytes, y: { out: H * 4 }, rows: 1 });
          expect(bits(f32(alone.out.y)), `row ${r} alone`).toEqual(bits(y.slice(r * H, (r + 1) * H)));
        }
        const fused = await m.driver.call('md_add_rmsnorm', { resid: x, delta, w: w.bytes, y: { out: rows * H * 4 }, rows });
        expect(fused.status).toBe(0);
        const sum = Float32Array.from(x, (v, i) => v + delta[i]);
        expect(bits(f32(fused.out.resid))).toEqual(bits(sum));
        expect(measured('add_rmsnorm', relError(f32(fused.out.y), rmsnormRef(sum, w.values, rows, H, eps)))).toBeLessThan(TOL);

        const add = await m.driver.call('md_add', { resid: x, delta, rows });
        expect(add.status).toBe(0);
        expect(bits(f32(add.out.resid))).toEqual(bits(Float32Array.from(addRef(x, delta))));

        const gate = rand(rnd, rows * I, 6);
        const up = rand(rnd, rows * I, 2);
        const sw = await m.driver.call('md_swiglu', { gate, up, out: { out: rows * I * 4 }, rows });
        expect(sw.status).toBe(0);
        expect(finite(f32(sw.out.out))).toBe(true);
        expect(measured('swiglu', relError(f32(sw.out.out), swigluRef(gate, up)))).toBeLessThan(TOL);
      }),
      { numRuns: runs(m, 4), examples: fullBucket(m) },
    );
  });

  it('gemm of every role, with and without bias, matches the reference; bitwise the same in every bucket and for a row alone', async () => {
    const m = mod();
    for (const { role, n: N, k: K } of m.plan.gemms) {
      await fc.assert(
        fc.asyncProperty(drawArb(m), fc.boolean(), async ({ seed, rows }, withBias) => {
          const rnd = mulberry32(seed);
          const x = rand(rnd, rows * K, 2);
          const w = store(dtype(), rand(rnd, N * K, 0.5));
          const bias = withBias ? store(dtype(), rand(rnd, N, 1)) : undefined;
          const call = (b: number, xs: Float32Array, r: number) =>
            m.driver.call(`md_gemm_${role}_b${b}`, { x: xs, w: w.bytes, bias: bias?.bytes ?? null, y: { out: r * N * 4 }, rows: r });
          const res = await call(large(m), x, rows);
          expect(res.status).toBe(0);
          const y = f32(res.out.y);
          expect(finite(y)).toBe(true);
          expect(measured(`gemm ${dtype()}`, relError(y, gemmRef(gemmInput(m.plan, x), w.values, bias?.values, rows, N, K))), role).toBeLessThan(TOL);
          const unrounded = relError(y, gemmRef(x, w.values, bias?.values, rows, N, K));
          expect(measured(`gemm ${dtype()} vs fp32 x`, unrounded), role).toBeLessThan(TOL + activationRoundoff(m.plan));
          for (const b of m.plan.buckets.filter((b) => maxRows(m, b) >= rows && b !== large(m))) {
            const other = await call(b, x, rows);
            expect(bits(f32(other.out.y)), `${role}: bucket ${b} vs ${large(m)}`).toEqual(bits(y));
          }
          for (const r of someRows(rows)) {
            const alone = await call(small(m), x.slice(r * K, (r + 1) * K), 1);
            expect(bits(f32(alone.out.y)), `${role} row ${r} of ${rows} alone`).toEqual(bits(y.slice(r * N, (r + 1) * N)));
          }
        }),
        { numRuns: runs(m, 2), examples: [[fullBucket(m)[0][0], true]] },
      );
    }
  });

  it('gemm rejects more rows than its bucket allows, writing nothing', async () => {
    const m = mod();
    const { n: N, k: K } = m.plan.gemms[0];
    const rows = maxRows(m, small(m)) + 1;
    const w = new Uint8Array(N * K * storageBytes(dtype()));
    const res = await m.driver.call(`md_gemm_q_b${small(m)}`, { x: new Float32Array(rows * K), w, bias: null, y: { out: rows * N * 4 }, rows });
    expect(res.status).toBe(1);
    expect(f32(res.out.y).every(Number.isNaN)).toBe(true);
  });

  it('lm_head_argmax: logits are gemm_lm_head bit for bit, tokens md_argmax of them (ties, NaN columns, NaN rows), every bucket, a row alone, logits NULL', async () => {
    const m = mod();
    const { hidden: H, vocab: V } = m.plan.dims;
    await fc.assert(
      fc.asyncProperty(drawArb(m), async ({ seed, rows }) => {
        const rnd = mulberry32(seed);
        const x = rand(rnd, rows * H, 2);
        const wv = rand(rnd, V * H, 0.5);
        const row = (n: number) => wv.subarray(n * H, (n + 1) * H);
        for (let c = 0; c < 4; c++) {
          const from = Math.floor(rnd() * V);
          row(from + Math.floor(rnd() * (V - from))).set(row(from).slice()); // an exact tie at a higher index
        }
        if (rnd() < 0.7) row(Math.floor(rnd() * V))[Math.floor(rnd() * H)] = NaN; // a NaN column
        if (rows > 1 && rnd() < 0.5) x.fill(NaN, (rows - 1) * H, rows * H); // an all-NaN row: token 0
        const w = store(dtype(), wv);
        const fusedCall = (b: number, xs: Float32Array, r: number, withLogits = true) =>
          m.driver.call(`md_lm_head_argmax_b${b}`, { x: xs, w: w.bytes, logits: withLogits ? { out: r * V * 4 } : null, tokens: { out: r * 4 }, rows: r });
        const fused = await fusedCall(large(m), x, rows);
        expect(fused.status).toBe(0);
        const gemm = await m.driver.call(`md_gemm_lm_head_b${large(m)}`, { x, w: w.bytes, bias: null, y: { out: rows * V * 4 }, rows });
        const logits = f32(fused.out.logits);
        expect(bits(logits)).toEqual(bits(f32(gemm.out.y)));
        const argmax = await m.driver.call('md_argmax', { logits, tokens: { out: rows * 4 }, rows });
        const tokens = Array.from(i32(fused.out.tokens));
        expect(tokens).toEqual(Array.from(i32(argmax.out.tokens)));
        expect(tokens).toEqual(Array.from(argmaxRef(logits, rows, V)));
        const ref = gemmRef(gemmInput(m.plan, x), w.values, undefined, rows, V, H);
        const clean = (a: ArrayLike<number>) => Float64Array.from(a, (v, i) => (Number.isNaN(ref[i]) ? 0 : v));
        expect(measured(`lm_head ${dtype()}`, relError(clean(logits), clean(ref)))).toBeLessThan(TOL);
        const unrounded = clean(gemmRef(x, w.values, undefined, rows, V, H));
        expect(measured(`lm_head ${dtype()} vs fp32 x`, relError(clean(logits), unrounded))).toBeLessThan(TOL + activationRoundoff(m.plan));
        for (const b of m.plan.buckets.filter((b) => maxRows(m, b) >= rows)) {
          const other = await fusedCall(b, x, rows);
          expect(bits(f32(other.out.logits)), `bucket ${b}`).toEqual(bits(logits));
          expect(Array.from(i32(other.out.tokens)), `bucket ${b}`).toEqual(tokens);
          const noLogits = await fusedCall(b, x, rows, false);
          expect(noLogits.status).toBe(0);
          expect(Array.from(i32(noLogits.out.tokens)), `bucket ${b}, logits NULL`).toEqual(tokens);
        }
        for (const r of someRows(rows)) {
          const alone = await fusedCall(small(m), x.slice(r * H, (r + 1) * H), 1);
          expect(bits(f32(alone.out.logits)), `row ${r} alone`).toEqual(bits(logits.slice(r * V, (r + 1) * V)));
          expect(i32(alone.out.tokens)[0], `row ${r} alone`).toBe(tokens[r]);
        }
      }),
      { numRuns: runs(m, 3), examples: fullBucket(m) },
    );
  });

  it('argmax: lowest index wins ties, NaN never wins, an all-NaN row gives 0', async () => {
    const m = mod();
    const V = m.plan.dims.vocab;
    await fc.assert(
      fc.asyncProperty(drawArb(m), async ({ seed, rows }) => {
        const rnd = mulberry32(seed);
        const pool = [-Infinity, -1, 0, -0, 0.5, 2, Infinity, NaN];
        const logits = Float32Array.from({ length: rows * V }, () => pool[Math.floor(rnd() * (rnd() < 0.5 ? 5 : pool.length))]);
        logits.fill(NaN, 0, V);
        const res = await m.driver.call('md_argmax', { logits, tokens: { out: rows * 4 }, rows });
        expect(res.status).toBe(0);
        expect(Array.from(i32(res.out.tokens))).toEqual(Array.from(argmaxRef(logits, rows, V)));
      }),
      { numRuns: runs(m, 4), examples: fullBucket(m) },
    );
  });

  it('verify_greedy counts the accepted prefix and picks the next token', async () => {
    const m = mod();
    const g = m.plan.gamma;
    await fc.assert(
      fc.asyncProperty(seedArb, fc.integer({ min: 1, max: 300 }), async (seed, batch) => {
        const rnd = mulberry32(seed);
        const target = Int32Array.from({ length: batch * (g + 1) }, () => Math.floor(rnd() * 3));
        const draft = Int32Array.from({ length: batch * g }, () => Math.floor(rnd() * 3));
        const res = await m.driver.call('md_verify_greedy', { target_tokens: target, draft_tokens: draft, accepted: { out: batch * 4 }, next: { out: batch * 4 }, batch });
        expect(res.status).toBe(0);
        const want = verifyGreedyRef(target, draft, batch, g);
        expect(Array.from(i32(res.out.accepted))).toEqual(Array.from(want.accepted));
        expect(Array.from(i32(res.out.next))).toEqual(Array.from(want.next));
      }),
      { numRuns: runs(m, 4), examples: [[1, 300]] },
    );
  });

  it('rope_append rotates like the reference, stores k and v rounded to storage and nothing else, row-invariantly; a row outside the cache is rotated, not stored (CUDA)', async () => {
    const m = mod();
    const { heads, kvHeads, headDim: D, kvDim } = m.plan.dims;
    const PS = m.plan.pageSize;
    const pps = m.plan.pagesPerSeq;
    await fc.assert(
      fc.asyncProperty(drawArb(m), async ({ seed, rows }) => {
        const rnd = mulberry32(seed);
        const slots = rows + 1;
        const nPages = 3 * rows;
        const pageTable = Int32Array.from({ length: slots * pps }, () => Math.floor(rnd() * nPages));
        const rowSeq = Int32Array.from({ length: rows }, (_, r) => r);
        const rowPos = Int32Array.from({ length: rows }, () => Math.floor(rnd() ** 2 * m.plan.maxSeq));
        for (let r = 0; r < rows; r++) pageTable[r * pps + Math.floor(rowPos[r] / PS)] = r; // page r is row r's
        const q = rand(rnd, rows * heads * D, 2);
        const wide = () => Float32Array.from({ length: rows * kvDim }, () => (2 * rnd() - 1) * 2 ** (Math.floor(rnd() * 50) - 30));
        const k = wide();
        const v = wide();
        const cache = store(dtype(), rand(rnd, nPages * PS * kvDim, 1));
        // Some rows outside the cache: a position past it, a negative slot, a negative page.
        const outside = new Set<number>();
        const seq = Int32Array.from(rowSeq);
        const pos = Int32Array.from(rowPos);
        const table = Int32Array.from(pageTable);
        if (rows > 1) {
          const r = Math.floor(rnd() * rows);
          const how = Math.floor(rnd() * 3);
          if (how === 0) pos[r] = pps * PS + Math.floor(rnd() * 5);
          else if (how === 1) seq[r] = -1;
          else table[r * pps + Math.floor(pos[r] / PS)] = -1;
          outside.add(r);
        }
        const args = { q, k, v, k_cache: cache.bytes, v_cache: cache.bytes.slice(), page_table: table, pages_per_seq: pps, row_seq: seq, row_pos: pos, rows };
        const res = await m.driver.call('md_rope_append', args);
        expect(res.status).toBe(0);
        const qo = f32(res.out.q);
        const ko = f32(res.out.k);
        expect(measured('rope', relError(qo, ropeRef(q, pos, heads, D, m.plan.ropeInvFreq)))).toBeLessThan(TOL);
        expect(relError(ko, ropeRef(k, pos, kvHeads, D, m.plan.ropeInvFreq))).toBeLessThan(TOL);
        const shape = { kvHeads, headDim: D, pageSize: PS };
        const page = (r: number) => r;
        const inside = (r: number) => !outside.has(r);
        const kWant = appendedCacheRef(shape, load(dtype(), cache.bytes), load(dtype(), store(dtype(), ko).bytes), pos, page, inside);
        const vWant = appendedCacheRef(shape, load(dtype(), cache.bytes), load(dtype(), store(dtype(), v).bytes), pos, page, inside);
        expect(Array.from(load(dtype(), res.out.k_cache))).toEqual(Array.from(kWant));
        expect(Array.from(load(dtype(), res.out.v_cache))).toEqual(Array.from(vWant));
        for (const r of someRows(rows)) {
          const one = await m.driver.call('md_rope_append', {
            ...args,
            q: q.slice(r * heads * D, (r + 1) * heads * D),
            k: k.slice(r * kvDim, (r + 1) * kvDim),
            v: v.slice(r * kvDim, (r + 1) * kvDim),
            row_seq: seq.slice(r, r + 1),
            row_pos: pos.slice(r, r + 1),
            rows: 1,
          });
          expect(bits(f32(one.out.q))).toEqual(bits(qo.slice(r * heads * D, (r + 1) * heads * D)));
          expect(bits(f32(one.out.k))).toEqual(bits(ko.slice(r * kvDim, (r + 1) * kvDim)));
        }
      }),
      { numRuns: runs(m, 3), examples: fullBucket(m) },
    );
  });

  it('exports the manifest, the status names and the workspace size', async () => {
    const m = mod();
    expect(await m.driver.manifest()).toBe(manifestText(m.plan));
    for (const s of STATUS_CODES) expect(await m.driver.statusString(s.value)).toBe(s.text);
    const { heads, headDim } = m.plan.dims;
    expect(await m.driver.workspaceFloats(5)).toBe(5 * heads * m.plan.maxChunks * (headDim + 2));
  });
});

describe('emulated CUDA dense kernels: no result depends on the order threads and blocks run in', () => {
  it.each(['reverse', 'shuffle:7'])('schedule %s gives the forward schedule bits for every kernel', async (schedule) => {
    for (const name of ['gqaBf16', 'tailF16'] as const) {
      const m = modules.get(name)!;
      const other = m.withSchedule(schedule);
      const { hidden: H, vocab: V, intermediate: I } = m.plan.dims;
      const rnd = mulberry32(11);
      const rows = maxRows(m, large(m));
      const x = rand(rnd, rows * H, 2);
      const same = async (what: string, call: (d: KernelDriver) => ReturnType<KernelDriver['call']>) => {
        const [a, b] = [await call(m.driver), await call(other)];
        expect(a.status, what).toBe(0);
        for (const k of Object.keys(a.out)) expect(Array.from(b.out[k]), `${name} ${what}.${k} under ${schedule}`).toEqual(Array.from(a.out[k]));
      };
      const w = store(m.plan.deployment.dtype, rand(rnd, H, 1)).bytes;
      await same('rmsnorm', (d) => d.call('md_rmsnorm', { x, w, y: { out: rows * H * 4 }, rows }));
      const [gate, up] = [rand(rnd, rows * I, 4), rand(rnd, rows * I, 1)];
      await same('swiglu', (d) => d.call('md_swiglu', { gate, up, out: { out: rows * I * 4 }, rows }));
      for (const { role, n: N, k: K } of m.plan.gemms) {
        const wg = store(m.plan.deployment.dtype, rand(rnd, N * K, 0.5)).bytes;
        const xs = rand(rnd, rows * K, 1);
        await same(`gemm_${role}`, (d) => d.call(`md_gemm_${role}_b${large(m)}`, { x: xs, w: wg, bias: null, y: { out: rows * N * 4 }, rows }));
      }
      const lm = store(m.plan.deployment.dtype, rand(rnd, V * H, 0.5)).bytes;
      await same('lm_head_argmax', (d) => d.call(`md_lm_head_argmax_b${large(m)}`, { x, w: lm, logits: { out: rows * V * 4 }, tokens: { out: rows * 4 }, rows }));
      const logits = rand(rnd, rows * V, 1);
      await same('argmax', (d) => d.call('md_argmax', { logits, tokens: { out: rows * 4 }, rows }));
    }
  });
});
