// A built attention case with its K/V caches laid out for fault-on-read: every KV page gets OS pages of its
// own, and the OS pages of every KV page that no row of its sequence sees (and of every unused page) are
// PROT_NONE in the kernel driver. NaN poison shows a skipped position that is *used*; this shows one that
// is merely *read*, which poison cannot (a loaded-then-masked value never reaches the arithmetic).
import { STORAGE } from '../../../codegen/backends/common.ts';
import type { ModulePlan, PassPlan } from '../../../codegen/plan.ts';
import { visibleRef } from '../../reference/kernels.ts';
import type { BuiltAttention } from './attention-case.ts';
import type { Arg, Guarded } from './driver.ts';

export interface GuardedAttention {
  /** Driver arguments (except workspace and out): the caches guarded, the page table remapped. */
  readonly args: Record<string, Arg>;
  /** KV pages within some sequence's length that no row of that sequence sees, hence unreadable. */
  readonly skippedPages: number;
  /** KV pages within some sequence's length that some row sees. */
  readonly keptPages: number;
  /** Guard one more kept page (the first), for a check that the guard itself faults. */
  withKeptPageGuarded(): Record<string, Arg>;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

export function guardAttention(plan: ModulePlan, pass: PassPlan, c: BuiltAttention, osPage: number): GuardedAttention {
  const PS = plan.pageSize;
  const pageBytes = PS * plan.dims.kvDim * STORAGE[plan.deployment.dtype].bytes;
  // Physical page p moves to p * stride: every page then starts on an OS page and shares none with another.
  const stride = osPage / gcd(pageBytes, osPage);
  const table = c.ref.pageTable as Int32Array;
  const seqLen = c.ref.seqLen as Int32Array;
  const rowSeq = c.ref.rowSeq as readonly number[];
  const rowPos = c.ref.rowPos as readonly number[];
  const dense = { k: c.args.k_cache as Uint8Array, v: c.args.v_cache as Uint8Array };
  const physicalPages = dense.k.byteLength / pageBytes;

  const kept = new Set<number>(); // physical pages (dense numbering) some row of their sequence sees
  let skippedPages = 0;
  for (let slot = 0; slot * plan.pagesPerSeq < table.length; slot++) {
    const rows = rowSeq.flatMap((s, r) => (s === slot ? [rowPos[r]] : []));
    for (let i = 0; i * PS < seqLen[slot]; i++) {
      const physical = table[slot * plan.pagesPerSeq + i];
      let seen = false;
      for (let t = i * PS; t < Math.min((i + 1) * PS, seqLen[slot]) && !seen; t++) seen = rows.some((q) => visibleRef(pass, c.ref.params, q, t));
      if (seen) kept.add(physical);
      else skippedPages++;
    }
  }

  const spread = (bytes: Uint8Array) => {
    const out = new Uint8Array(physicalPages * stride * pageBytes);
    for (let p = 0; p < physicalPages; p++) out.set(bytes.subarray(p * pageBytes, (p + 1) * pageBytes), p * stride * pageBytes);
    return out;
  };
  const k = spread(dense.k);
  const v = spread(dense.v);
  const regionBytes = stride * pageBytes;
  const noAccessFor = (readable: (p: number) => boolean) => {
    const ranges: [number, number][] = [];
    for (let p = 0; p < physicalPages; p++) {
      // A readable page keeps the OS pages its bytes touch; the rest of its region stays guarded.
      const open = readable(p) ? Math.ceil(pageBytes / osPage) * osPage : 0;
      if (open < regionBytes) ranges.push([p * regionBytes + open, regionBytes - open]);
    }
    return ranges;
  };
  const argsFor = (readable: (p: number) => boolean): Record<string, Arg> => {
    const noAccess = noAccessFor(readable);
    const guard = (data: Uint8Array): Guarded => ({ data, noAccess });
    return { ...c.args, k_cache: guard(k), v_cache: guard(v), page_table: Int32Array.from(table, (p) => (p < 0 ? p : p * stride)) };
  };
  const firstKept = Math.min(...kept);
  return {
    args: argsFor((p) => kept.has(p)),
    skippedPages,
    keptPages: kept.size,
    withKeptPageGuarded: () => argsFor((p) => kept.has(p) && p !== firstKept),
  };
}
