// The DSL surface: plain, typed descriptor constructors. Nothing here runs at compile time — the front
// end reads these calls statically (codegen/frontend) — but the descriptors also work as ordinary JS
// values, so the user's functions can be executed directly as an oracle in tests.

/** Named numeric parameters of a mask, score or policy. Runtime kernel arguments unless `const: true`. */
export type Params = Readonly<Record<string, number>>;

/** `mask(q, kv, p)`: may query position `q` attend to cached position `kv`? (absolute positions) */
export type MaskFn<P extends Params> = (q: number, kv: number, p: P) => boolean;
/** `score(s, q, kv, head, p)`: rewrite the scaled logit `s` of query `q` against key `kv` for query head `head`. */
export type ScoreFn<P extends Params> = (s: number, q: number, kv: number, head: number, p: P) => number;
/** `keep(kv, len, p)`: does a pass read cached position `kv` when the sequence (as seen by the row) has `len` tokens? */
export type KeepFn<P extends Params> = (kv: number, len: number, p: P) => boolean;
/**
 * `accept(p, q, u, h)`: accept a drafted token with target prob `p`, draft prob `q`, uniform noise `u` and
 * `h`, the entropy (nats) of the target's whole distribution at the position (after temperature and filters).
 */
export type AcceptFn = (p: number, q: number, u: number, h: number) => boolean;
/** `residual(p, q)`: unnormalised distribution to resample from after a rejection. */
export type ResidualFn = (p: number, q: number) => number;

export interface Attention<P extends Params = Params> {
  readonly kind: 'attention';
  readonly name: string;
  readonly params: P;
  readonly const: boolean;
  readonly mask?: MaskFn<P>;
  readonly score?: ScoreFn<P>;
}

export interface KvPolicy<P extends Params = Params> {
  readonly kind: 'kvPolicy';
  readonly name: string;
  readonly params: P;
  readonly const: boolean;
  readonly keep: KeepFn<P>;
}

export interface Verifier {
  readonly kind: 'verifier';
  readonly name: string;
  /**
   * greedy: accept while the drafted token is the target's argmax. match: the target and the draft each
   * sample their token with the position's shared noise, accept while they agree (exact for a seed).
   * sample: the accept/residual rule (speculative rejection sampling; exact in distribution unless lossy).
   */
  readonly mode: 'greedy' | 'match' | 'sample';
  readonly accept?: AcceptFn;
  readonly residual?: ResidualFn;
  /** A 'sample' rule that does not keep the target's distribution (e.g. typical): `magicdec check` reports it as lossy. */
  readonly lossy?: boolean;
}

export interface AttentionDef<P extends Params> {
  name: string;
  params?: P;
  /** Bake the params into the kernel as constants (a new value recompiles). */
  const?: boolean;
  mask?: MaskFn<P>;
  score?: ScoreFn<P>;
}

export interface KvPolicyDef<P extends Params> {
  name: string;
  params?: P;
  const?: boolean;
  keep: KeepFn<P>;
}

export type VerifierDef =
  | { name: string; mode: 'greedy' }
  | { name: string; mode: 'match' }
  | { name: string; mode: 'sample'; accept: AcceptFn; residual: ResidualFn; lossy?: boolean };

const NAME = /^[a-z][a-z0-9_]*$/;

function checkName(kind: string, name: string): void {
  if (!NAME.test(name)) throw new Error(`${kind} name '${name}' must match ${NAME} (it becomes part of kernel names)`);
}

export function attention<P extends Params = {}>(def: AttentionDef<P>): Attention<P> {
  checkName('attention', def.name);
  return { kind: 'attention', name: def.name, params: (def.params ?? {}) as P, const: def.const ?? false, mask: def.mask, score: def.score };
}

export function kvPolicy<P extends Params = {}>(def: KvPolicyDef<P>): KvPolicy<P> {
  checkName('kvPolicy', def.name);
  return { kind: 'kvPolicy', name: def.name, params: (def.params ?? {}) as P, const: def.const ?? false, keep: def.keep };
}

export function verifier(def: VerifierDef): Verifier {
  checkName('verifier', def.name);
  return def.mode === 'sample'
    ? { kind: 'verifier', name: def.name, mode: 'sample', accept: def.accept, residual: def.residual, ...(def.lossy ? { lossy: true } : {}) }
    : { kind: 'verifier', name: def.name, mode: def.mode };
}
