// Client of the generated kernel driver: compile it once (cached by content), start one process per
// module, and call entry points with typed buffers. Outputs the caller does not supply are allocated by
// the driver and poisoned (0xff bytes: NaN as float, -1 as int32) so an unwritten element shows.
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { KERNELS, type ExtraSpec, type KernelSpec } from '../../../codegen/abi.ts';
import { kernelKind, renderAbiHeader } from '../../../codegen/backends/header.ts';
import { driverSource, isMutable, isPointer, wireArgs } from './driver-source.ts';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '../../..');
const CACHE = join(ROOT, '.cache/kernel-driver');
const FLAGS = ['-std=c++17', '-O1', '-fopenmp', '-Wall', '-Wextra'];

/**
 * Path of the driver compiled for a kernel list, beside the md_abi.h rendered from the same list; rebuilt
 * only when its source, that header, the flags or g++ change.
 */
export function driverExecutable(kernels: readonly KernelSpec[] = KERNELS): string {
  const source = driverSource(kernels);
  const header = renderAbiHeader(kernels);
  const h = createHash('sha256').update(execFileSync('g++', ['--version'], { encoding: 'utf8' })).update(FLAGS.join(' ')).update(source).update(header);
  const dir = join(CACHE, h.digest('hex').slice(0, 16));
  const exe = join(dir, 'driver');
  if (existsSync(exe)) return exe;
  mkdirSync(dir, { recursive: true });
  const src = join(dir, `driver-${process.pid}.cpp`);
  writeFileSync(src, source);
  // Written aside and renamed: a concurrent build of the same driver may be compiling against it.
  writeFileSync(join(dir, `md_abi.h.tmp-${process.pid}`), header);
  renameSync(join(dir, `md_abi.h.tmp-${process.pid}`), join(dir, 'md_abi.h'));
  const tmp = `${exe}.tmp-${process.pid}`;
  try {
    execFileSync('g++', [...FLAGS, '-Werror', `-I${dir}`, '-o', tmp, src, '-ldl'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`g++ failed on the kernel driver ${src}:\n${(e as { stderr?: string }).stderr ?? String(e)}`);
  }
  renameSync(tmp, exe);
  return exe;
}

/**
 * Input bytes of which some byte ranges (whole OS pages, `pageBytes()`) are mapped PROT_NONE in the driver,
 * so that a kernel reading them faults: the driver dies of SIGSEGV and the call rejects.
 */
export interface Guarded {
  readonly data: ArrayBufferView;
  readonly noAccess: readonly (readonly [offset: number, length: number])[];
}

/** A pointer argument: data to send, `{ out: bytes }` for a poisoned output, guarded input, or null for NULL. */
export type Arg = ArrayBufferView | { out: number } | Guarded | null | number;

/** The OS page size, the granule of Guarded ranges. */
export function pageBytes(): number {
  return Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim());
}

export interface CallResult {
  status: number;
  /** Every non-const pointer argument that was not NULL, after the call. */
  out: Record<string, Uint8Array>;
}

export const f32 = (b: Uint8Array): Float32Array => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
export const i32 = (b: Uint8Array): Int32Array => new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
const bytesOf = (v: ArrayBufferView) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

class Encoder {
  parts: Buffer[] = [];
  i32(v: number) {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.parts.push(b);
  }
  u64(v: number) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.parts.push(b);
  }
  u8(v: number) {
    this.parts.push(Buffer.from([v]));
  }
  str(s: string) {
    this.i32(Buffer.byteLength(s));
    this.parts.push(Buffer.from(s));
  }
  bytes(v: Uint8Array) {
    this.parts.push(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
  }
}

export class KernelDriver {
  private pending: { resolve: (frame: Buffer) => void; reject: (e: Error) => void }[] = [];
  private buffered = Buffer.alloc(0);
  private stderr = '';
  private exited?: string;

  private constructor(
    private readonly proc: ChildProcessWithoutNullStreams,
    private readonly kernels: readonly KernelSpec[],
  ) {
    proc.stdout.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      for (;;) {
        if (this.buffered.length < 8) return;
        const len = Number(this.buffered.readBigUInt64LE(0));
        if (this.buffered.length < 8 + len) return;
        const frame = this.buffered.subarray(8, 8 + len);
        this.buffered = this.buffered.subarray(8 + len);
        this.pending.shift()?.resolve(Buffer.from(frame));
      }
    });
    proc.stderr.on('data', (c: Buffer) => (this.stderr += c.toString()));
    // A driver that died (a guarded read faulted) fails its calls through 'exit'; a write racing the death
    // must not become an uncaught EPIPE.
    proc.stdin.on('error', () => {});
    proc.on('exit', (code, signal) => {
      this.exited = `kernel driver exited (code ${code}, signal ${signal}): ${this.stderr}`;
      for (const p of this.pending.splice(0)) p.reject(new Error(this.exited));
    });
  }

  /** False once the process has exited (a fault in a kernel kills it). */
  get alive(): boolean {
    return this.exited === undefined;
  }

  /** One driver process serving `library`, a module of the kernel list `kernels`. */
  static open(library: string, env: Record<string, string> = {}, kernels: readonly KernelSpec[] = KERNELS): KernelDriver {
    const proc = spawn(driverExecutable(kernels), [library], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    return new KernelDriver(proc, kernels);
  }

  private request(e: Encoder): Promise<Buffer> {
    if (this.exited) return Promise.reject(new Error(this.exited));
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.proc.stdin.write(Buffer.concat(e.parts));
    });
  }

  /** Call kernel entry point `symbol` (its spec found by kernel name); `threads` > 0 sets the OpenMP team size. */
  async call(symbol: string, args: Record<string, Arg>, threads = 0): Promise<CallResult> {
    const spec = specOf(symbol, this.kernels);
    const e = new Encoder();
    e.str(kernelKind(spec));
    e.str(symbol);
    e.i32(threads);
    const wire = wireArgs(spec.args);
    for (const name of Object.keys(args))
      if (!wire.some((a) => a.name === name)) throw new Error(`${symbol} has no argument '${name}'`);
    for (const a of wire) {
      const v = args[a.name];
      if (v === undefined) throw new Error(`${symbol}: argument '${a.name}' is missing`);
      if (!isPointer(a)) {
        if (typeof v !== 'number') throw new Error(`${symbol}: argument '${a.name}' must be a number`);
        e.i32(v);
      } else if (v === null) e.u8(0);
      else if (typeof v === 'number') throw new Error(`${symbol}: argument '${a.name}' is a pointer`);
      else if ('out' in v) {
        e.u8(2);
        e.u64(v.out);
      } else if ('noAccess' in v) {
        e.u8(3);
        e.u64(v.data.byteLength);
        e.bytes(bytesOf(v.data));
        e.i32(v.noAccess.length);
        for (const [at, length] of v.noAccess) {
          e.u64(at);
          e.u64(length);
        }
      } else {
        e.u8(1);
        e.u64(v.byteLength);
        e.bytes(bytesOf(v));
      }
    }
    const frame = await this.request(e);
    const status = frame.readInt32LE(0);
    const out: Record<string, Uint8Array> = {};
    let at = 4;
    for (const a of wire.filter(isMutable)) {
      if (args[a.name] === null) continue;
      const n = Number(frame.readBigUInt64LE(at));
      out[a.name] = new Uint8Array(frame.subarray(at + 8, at + 8 + n));
      at += 8 + n;
    }
    return { status, out };
  }

  async workspaceFloats(rows: number): Promise<number> {
    const e = this.extra('attn_workspace_floats');
    e.i32(rows);
    return Number((await this.request(e)).readBigUInt64LE(0));
  }

  async manifest(): Promise<string> {
    return this.text(this.extra('module_manifest'));
  }

  async statusString(status: number): Promise<string> {
    const e = this.extra('status_string');
    e.i32(status);
    return this.text(e);
  }

  private extra(name: ExtraSpec['name']): Encoder {
    const e = new Encoder();
    e.str(name);
    e.str(`md_${name}`);
    e.i32(0);
    return e;
  }

  private async text(e: Encoder): Promise<string> {
    const f = await this.request(e);
    return f.subarray(8, 8 + Number(f.readBigUInt64LE(0))).toString('utf8');
  }

  close(): void {
    this.proc.stdin.end();
  }
}

function specOf(symbol: string, kernels: readonly KernelSpec[]): KernelSpec {
  const name = symbol.replace(/^md_/, '').replace(/_b\d+$/, '');
  const spec = kernels.find((k) => k.name === name);
  if (!spec) throw new Error(`no kernel in the driver's kernel list for symbol ${symbol}`);
  return spec;
}
