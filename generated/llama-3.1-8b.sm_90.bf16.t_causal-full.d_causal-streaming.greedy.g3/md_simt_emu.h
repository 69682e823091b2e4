// The SIMT emulator: what a generated CUDA module needs to build as host C++ (g++ -x c++ -DMD_SIMT_EMU)
// and run its very kernel bodies on the CPU, deterministically, with the GPU's synchronisation semantics.
// md_cuda.cuh includes it instead of the CUDA headers when MD_SIMT_EMU is defined; nothing else does.
// docs/ARCHITECTURE.md, "The SIMT emulator", states what it models and what it does not.
//
// Execution model. A launch runs its CTAs one after another on the calling thread. Each thread of a CTA is
// a fiber with a stack of its own; a scheduler resumes the CTA's runnable fibers round robin, and a fiber
// runs until it reaches a collective (__syncthreads, a warp shuffle/vote/__syncwarp) or exits:
//  - a CTA barrier releases when every thread of the CTA waits at it, at the same call site;
//  - a warp collective completes when every lane named in its mask has reached the same collective (same
//    call site, same mask and width), and then computes all lanes' results at once, as one exchange;
//  - anything else is reported as the bug it is on a GPU (a hang or undefined behaviour there): a barrier
//    some thread of the CTA never reaches (it exited, or waits at another barrier or a warp collective),
//    lanes of one mask at different collectives, a mask without the caller's lane or naming an exited
//    lane or one past the block, a shuffle from a lane outside the mask.
// Between two collectives threads run in a configurable order (MD_SIMT_EMU_SCHEDULE: `forward`, the
// default, `reverse` or `shuffle[:seed]`, which also permutes the order of CTAs), so a result that
// depends on the order of unsynchronised threads (a race) shows as a difference between schedules.
// Atomics are plain read-modify-writes: nothing interleaves a fiber between two collectives. Host threads
// take turns: one launch runs at a time in a process.
//
// Memory. Device memory is host memory (cudaMalloc poisons new memory with 0xff bytes: NaN as float).
// `__shared__` variables are `static thread_local`: one instance per OS thread, and the emulator fills
// this library's whole thread-local block with 0xff before every CTA, so a CTA never sees a previous
// CTA's values and a read before any write is NaN; nothing else in an emulated module may be
// thread_local. Dynamic shared memory (md_dynamic_smem in md_cuda.cuh) is a per-launch buffer, poisoned
// the same way before every CTA. cp.async copies (md_cp_async16) land only at the md_cp_async_wait that
// covers their commit group, as the PTX ISA allows at the latest, so a read before the wait sees poison.
// `__ldg` checks alignment (UBSan, in sanitized builds, every misaligned vector access). mma.sync
// (md_mma_16816_bf16) is a warp collective that computes the tile from the lanes' fragments in the PTX
// ISA's documented layouts.
//
// Numerics. f32 arithmetic is IEEE single precision as on the GPU (build with -ffp-contract=off: the
// __f*_rn intrinsics round each op, and nothing may fuse them); __fmaf_rn is fmaf. libm's expf, logf,
// tanhf, ... are the host's, so results agree with a GPU's to a few ulp, not bitwise. The fast
// intrinsics (__expf, __logf, __fdividef) keep their GPU formulas' dominant error (e.g. __expf(x) is
// exp2f of x * log2(e) rounded to f32). bf16 and fp16 conversions are bit-exact with cuda_bf16.h and
// cuda_fp16.h (round to nearest even, NaN to the canonical 0x7fff).
#pragma once
#ifndef MD_SIMT_EMU
#error "md_simt_emu.h emulates CUDA on the host: build with -DMD_SIMT_EMU (and g++ -x c++), never under nvcc"
#endif
#ifdef __CUDACC__
#error "md_simt_emu.h is for host compilers; nvcc builds the real kernels"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <dlfcn.h>
#include <link.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "md_abi.h"  // md_emu_queue: the stream an emulated module is handed

#if defined(__x86_64__)
#define MD_EMU_X86_64 1
#else
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define MD_EMU_ASAN 1
extern "C" void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
extern "C" void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, size_t* size_old);
extern "C" void __asan_unpoison_memory_region(void const volatile* addr, size_t size);
#endif

// ------------------------------------------------------------------------------------ CUDA qualifiers

#define __global__ __attribute__((unused)) /* a kernel a unit does not launch is no warning under nvcc */
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local

// ------------------------------------------------------------------------------------- vector types

struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct __attribute__((aligned(16))) uint4 { unsigned int x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned int x, y; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(8))) int2 { int x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(4))) ushort2 { unsigned short x, y; };
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return int2{x, y}; }

// Built-in variables: the scheduler sets them before it resumes a thread.
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
constexpr int warpSize = 32;

// ------------------------------------------------------------------------------------ the emulator

namespace md_emu {

enum Kind : uint8_t {
  K_BAR, K_BAR_COUNT, K_BAR_AND, K_BAR_OR,  // CTA barriers
  K_SYNCWARP, K_SHFL_IDX, K_SHFL_UP, K_SHFL_DOWN, K_SHFL_XOR, K_BALLOT, K_ANY, K_ALL, K_RED_ADD, K_RED_MIN, K_RED_MAX, K_RED_UMIN,
  K_RED_UMAX, K_MMA,
};
inline bool is_barrier(Kind k) { return k <= K_BAR_OR; }
inline const char* kind_name(Kind k) {
  static const char* const names[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_and", "__syncthreads_or", "__syncwarp",
                                      "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync", "__ballot_sync",
                                      "__any_sync", "__all_sync", "__reduce_add_sync", "__reduce_min_sync", "__reduce_max_sync",
                                      "__reduce_min_sync", "__reduce_max_sync", "mma.sync.m16n8k16"};
  return names[k];
}

enum State : uint8_t { S_RUN, S_WAIT, S_DONE };

struct AsyncCopy {
  void* dst;
  const void* src;
  size_t bytes;
};

struct Thread {
  void* sp = nullptr;  // saved stack pointer (x86-64 switch)
#ifndef MD_EMU_X86_64
  ucontext_t uc;
#endif
  char* stack = nullptr;
  bool abandoned = false;  // left mid-kernel by a failed launch
  uint3 idx{0, 0, 0};
  int linear = 0;
  State state = S_DONE;
  // The collective this thread waits at.
  Kind kind = K_BAR;
  const char* file = "";
  int line = 0;
  unsigned mask = 0;
  int width = 32;
  int arg = 0;
  int vsize = 0;
  uint64_t val = 0;
  uint64_t result = 0;
  void* wide = nullptr;  // a collective's operands wider than 8 bytes (mma fragments), on the thread's stack
  // cp.async: issued copies, and the end (in `pending`) of each committed group.
  std::vector<AsyncCopy> pending;
  std::vector<size_t> groups;
};

enum Schedule { FORWARD, REVERSE, SHUFFLE };

/** cudaError_t values the emulator produces (the CUDA runtime's numbers). */
enum Error : int { OK = 0, INVALID_VALUE = 1, MEMORY_ALLOCATION = 2, INVALID_CONFIGURATION = 9, LAUNCH_FAILURE = 719, CAPTURE_UNSUPPORTED = 900 };

struct Emu {
  bool configured = false;
  Schedule schedule = FORWARD;
  uint64_t seed = 0;
  bool abort_on_error = true;
  bool host_waits_fail = false;  // MD_SIMT_EMU_HOST_WAITS=fail

  std::vector<Thread> threads;
  int nthreads = 0;
  Thread* cur = nullptr;
  void* sched_sp = nullptr;
#ifndef MD_EMU_X86_64
  ucontext_t sched_uc;
#endif
#ifdef MD_EMU_ASAN
  const void* sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;
#endif
  bool in_kernel = false;
  std::thread::id launch_thread;  // the host thread running the current launch
  const char* kernel = "";
  uint3 block{0, 0, 0};
  void (*body)(void*) = nullptr;
  void* body_ctx = nullptr;
  int exited = 0;
  std::vector<uint32_t> warp_waiting;  // per warp: lanes waiting at a warp collective
  std::vector<uint32_t> warp_exited;   // per warp: lanes that have exited

  bool failed = false;
  std::string message;
  int last_error = OK;    // cudaGetLastError
  int sticky_error = OK;  // a failed kernel: every later call fails, as a CUDA context after a fault

  std::vector<unsigned char> dyn_smem;
  size_t dyn_bytes = 0;

  // The thread-local block (the __shared__ variables) of the last launch's library and OS thread.
  std::thread::id tls_thread;
  const void* tls_library = nullptr;
  void* tls_block = nullptr;
  size_t tls_bytes = 0;

  // Counters, for tests and curiosity.
  uint64_t launches = 0, ctas = 0, switches = 0;
};

inline Emu& emu() {
  static Emu e;
  return e;
}

inline const char* env_or(const char* name, const char* dflt) {
  const char* v = getenv(name);
  return v && *v ? v : dflt;
}

/** Reads MD_SIMT_EMU_SCHEDULE, MD_SIMT_EMU_ON_ERROR and MD_SIMT_EMU_HOST_WAITS once; a bad value is a one-line error and exit 2. */
inline void configure() {
  Emu& e = emu();
  if (e.configured) return;
  e.configured = true;
  const char* s = env_or("MD_SIMT_EMU_SCHEDULE", "forward");
  if (!strcmp(s, "forward")) e.schedule = FORWARD;
  else if (!strcmp(s, "reverse")) e.schedule = REVERSE;
  else if (!strncmp(s, "shuffle", 7) && (s[7] == 0 || s[7] == ':')) {
    e.schedule = SHUFFLE;
    char* end = nullptr;
    e.seed = s[7] ? strtoull(s + 8, &end, 0) : 1;
    if (s[7] && (end == s + 8 || *end)) {
      fprintf(stderr, "md-simt-emu: MD_SIMT_EMU_SCHEDULE=%s: the seed must be an integer (shuffle:<seed>)\n", s);
      exit(2);
    }
  } else {
    fprintf(stderr, "md-simt-emu: MD_SIMT_EMU_SCHEDULE=%s: expected forward, reverse or shuffle[:seed]\n", s);
    exit(2);
  }
  const char* o = env_or("MD_SIMT_EMU_ON_ERROR", "abort");
  if (!strcmp(o, "abort")) e.abort_on_error = true;
  else if (!strcmp(o, "status")) e.abort_on_error = false;
  else {
    fprintf(stderr, "md-simt-emu: MD_SIMT_EMU_ON_ERROR=%s: expected abort or status\n", o);
    exit(2);
  }
  const char* w = env_or("MD_SIMT_EMU_HOST_WAITS", "allow");
  if (!strcmp(w, "allow")) e.host_waits_fail = false;
  else if (!strcmp(w, "fail")) e.host_waits_fail = true;
  else {
    fprintf(stderr, "md-simt-emu: MD_SIMT_EMU_HOST_WAITS=%s: expected allow or fail\n", w);
    exit(2);
  }
}

/** Tests: choose the schedule and the error mode, and forget a previous failure (a fresh context). */
inline void set_schedule(Schedule s, uint64_t seed = 1) {
  configure();
  emu().schedule = s;
  emu().seed = seed;
}
inline void set_abort_on_error(bool abort_on_error) {
  configure();
  emu().abort_on_error = abort_on_error;
}
inline void reset_error() {
  Emu& e = emu();
  e.failed = false;
  e.message.clear();
  e.last_error = e.sticky_error = OK;
}
inline const std::string& last_message() { return emu().message; }

inline uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/** 0..n-1 in the configured order; `salt` varies a shuffle between CTAs. */
inline void order(std::vector<int>& out, int n, uint64_t salt) {
  Emu& e = emu();
  out.resize(n);
  for (int i = 0; i < n; ++i) out[i] = e.schedule == REVERSE ? n - 1 - i : i;
  if (e.schedule == SHUFFLE) {
    uint64_t s = e.seed * 0x2545f4914f6cdd1dull + salt;
    for (int i = n - 1; i > 0; --i) {
      const int j = (int)(splitmix64(s) % (uint64_t)(i + 1));
      std::swap(out[i], out[j]);
    }
  }
}

// -------------------------------------------------------------------------------- fibers

#ifdef MD_EMU_X86_64
/**
 * Saves the callee-saved registers, MXCSR and the x87 control word on the current stack, stores the stack
 * pointer in *save and continues on the stack `to` (which holds the same frame, pushed by an earlier swap
 * or by init_stack). No system call, unlike swapcontext.
 */
extern "C" __attribute__((naked, noinline)) inline void md_emu_swap(void** /*save*/, void* /*to*/) {
  __asm__ volatile(
      "pushq %rbp\n\tpushq %rbx\n\tpushq %r12\n\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n\t"
      "subq $16, %rsp\n\tstmxcsr 8(%rsp)\n\tfnstcw (%rsp)\n\t"
      "movq %rsp, (%rdi)\n\tmovq %rsi, %rsp\n\t"
      "ldmxcsr 8(%rsp)\n\tfldcw (%rsp)\n\taddq $16, %rsp\n\t"
      "popq %r15\n\tpopq %r14\n\tpopq %r13\n\tpopq %r12\n\tpopq %rbx\n\tpopq %rbp\n\tret\n");
}
#endif

constexpr size_t STACK_BYTES = 256 * 1024;

[[noreturn]] void fiber_main();

/** A fresh stack for a thread's fiber: STACK_BYTES plus a PROT_NONE guard page below it. */
inline char* stack_for(Thread& t) {
  if (!t.stack) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void* p = mmap(nullptr, STACK_BYTES + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      fprintf(stderr, "md-simt-emu: cannot map a thread stack\n");
      abort();
    }
    mprotect(p, page, PROT_NONE);
    t.stack = (char*)p + page;
  }
  return t.stack;
}

inline void start_fiber(Thread& t) {
  char* base = stack_for(t);
#ifdef MD_EMU_ASAN
  // ASan's stack redzones of frames never unwound: fiber_main's (it never returns), and every frame of a
  // fiber a failed launch abandoned.
  const size_t top = 16 * 1024;
  if (t.abandoned) __asan_unpoison_memory_region(base, STACK_BYTES);
  else __asan_unpoison_memory_region(base + STACK_BYTES - top, top);
  t.abandoned = false;
#endif
#ifdef MD_EMU_X86_64
  uint64_t* sp = (uint64_t*)(((uintptr_t)(base + STACK_BYTES)) & ~(uintptr_t)15);
  *--sp = 0;                          // fiber_main's return address: it never returns
  *--sp = (uint64_t)(uintptr_t)&fiber_main;  // md_emu_swap's `ret` enters fiber_main
  for (int i = 0; i < 6; ++i) *--sp = 0;     // rbp, rbx, r12-r15
  sp -= 2;
  uint32_t mxcsr;
  uint16_t fpucw;
  __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(fpucw));
  memcpy((char*)sp + 8, &mxcsr, 4);
  memcpy((char*)sp, &fpucw, 2);
  t.sp = sp;
#else
  getcontext(&t.uc);
  t.uc.uc_stack.ss_sp = base;
  t.uc.uc_stack.ss_size = STACK_BYTES;
  t.uc.uc_link = nullptr;
  makecontext(&t.uc, (void (*)())fiber_main, 0);
#endif
}

/** Scheduler -> thread t, until it waits or exits. */
inline void resume(Thread& t) {
  Emu& e = emu();
  e.cur = &t;
  threadIdx = t.idx;
  ++e.switches;
#ifdef MD_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, t.stack, STACK_BYTES);
#endif
#ifdef MD_EMU_X86_64
  md_emu_swap(&e.sched_sp, t.sp);
#else
  swapcontext(&e.sched_uc, &t.uc);
#endif
#ifdef MD_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  e.cur = nullptr;
}

/** The current thread -> the scheduler; returns when the scheduler resumes it. */
inline void yield() {
  Emu& e = emu();
  Thread& t = *e.cur;
#ifdef MD_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(t.state == S_DONE ? nullptr : &fake, e.sched_stack_bottom, e.sched_stack_size);
#endif
#ifdef MD_EMU_X86_64
  md_emu_swap(&t.sp, e.sched_sp);
#else
  swapcontext(&t.uc, &e.sched_uc);
#endif
#ifdef MD_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

// --------------------------------------------------------------------------------------- errors

inline std::string where(const Thread& t) {
  char b[160];
  const Emu& e = emu();
  snprintf(b, sizeof b, "block (%u,%u,%u) thread (%u,%u,%u) [warp %d lane %d]", e.block.x, e.block.y, e.block.z, t.idx.x, t.idx.y,
           t.idx.z, t.linear >> 5, t.linear & 31);
  return b;
}

/** "__shfl_xor_sync at md_cuda.cuh:120 (mask ffffffff, width 32)"; barriers without mask and width. */
inline std::string site(const Thread& t) {
  char b[512];
  if (t.kind <= K_BAR_OR) snprintf(b, sizeof b, "%s at %s:%d", kind_name(t.kind), t.file, t.line);
  else snprintf(b, sizeof b, "%s at %s:%d (mask %08x, width %d)", kind_name(t.kind), t.file, t.line, t.mask, t.width);
  return b;
}

/** The kernel in a launcher's __PRETTY_FUNCTION__: "md_gemm_kernel<float, 64, ...>". */
inline std::string kernel_name(const char* pretty) {
  const char* k = strstr(pretty, "(P ...) = ");
  if (!k) return pretty;
  std::string s(k + 10);
  if (!s.empty() && s.back() == ']') s.pop_back();
  return s;
}

/**
 * A bug the GPU would hang on or leave undefined. Aborts (MD_SIMT_EMU_ON_ERROR=abort, the default) or,
 * with `status`, abandons the launch and makes it and every later call fail with cudaErrorLaunchFailure.
 * Called on a thread's fiber, it never returns to the kernel.
 */
inline void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline void fail(const char* fmt, ...) {
  Emu& e = emu();
  char b[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b, sizeof b, fmt, ap);
  va_end(ap);
  if (!e.failed) {
    e.failed = true;
    e.message = std::string("md-simt-emu: kernel ") + kernel_name(e.kernel) + ": " + b;
    fprintf(stderr, "%s\n", e.message.c_str());
    if (e.abort_on_error) abort();
  }
  if (e.cur) {
    e.cur->state = S_DONE;
    for (;;) yield();  // the scheduler abandons the launch and never resumes this fiber
  }
}

// -------------------------------------------------------------------------------- collectives

/** A CTA barrier: returns the barrier's value (count, and, or of `pred` over the CTA). */
inline int barrier(Kind k, int pred, const char* file, int line) {
  Emu& e = emu();
  if (!e.in_kernel || !e.cur) {
    fprintf(stderr, "md-simt-emu: %s called outside a kernel (%s:%d)\n", kind_name(k), file, line);
    abort();
  }
  Thread& t = *e.cur;
  t.kind = k;
  t.file = file;
  t.line = line;
  t.val = pred != 0;
  if (e.exited > 0)
    for (int i = 0; i < e.nthreads; ++i)
      if (e.threads[i].state == S_DONE)
        fail("%s reached %s:%d, which %s never reaches: it has exited (every thread of the block must reach each barrier)", where(t).c_str(),
             file, line, where(e.threads[i]).c_str());
  t.state = S_WAIT;
  yield();
  return (int)t.result;
}

inline bool same_site(const Thread& a, const Thread& b) {
  return a.kind == b.kind && a.line == b.line && (a.file == b.file || !strcmp(a.file, b.file));
}
/** Two lanes wait at the same warp collective: same intrinsic, call site, mask, width and value size. */
inline bool same_collective(const Thread& a, const Thread& b) {
  return same_site(a, b) && a.mask == b.mask && a.width == b.width && a.vsize == b.vsize;
}

/**
 * Every thread waits and none runs: release a barrier all of them wait at, or report why the CTA is stuck
 * (on a GPU: a hang, or undefined results).
 */
inline void resolve_stuck() {
  Emu& e = emu();
  // A warp collective still waiting now never completes: some lane of its mask waits elsewhere.
  for (int i = 0; i < e.nthreads; ++i) {
    const Thread& t = e.threads[i];
    if (t.state != S_WAIT || is_barrier(t.kind)) continue;
    for (int l = 0; l < 32; ++l) {
      if (!(t.mask >> l & 1)) continue;
      const Thread& o = e.threads[(t.linear & ~31) + l];
      if (o.state == S_WAIT && !same_collective(o, t))
        return fail("divergent warp collective: %s waits at %s while lane %d of its mask waits at %s", where(t).c_str(), site(t).c_str(), l,
                    site(o).c_str());
    }
    return fail("deadlock: %s waits at %s, which the lanes of its mask never reach", where(t).c_str(), site(t).c_str());
  }
  Thread* first = nullptr;
  const Thread* gone = nullptr;
  for (int i = 0; i < e.nthreads; ++i) {
    Thread& t = e.threads[i];
    if (t.state == S_DONE) {
      gone = gone ? gone : &t;
      continue;
    }
    if (!first) first = &t;
    else if (!same_site(*first, t))
      return fail("threads of one block wait at different barriers: %s at %s, %s at %s", where(*first).c_str(), site(*first).c_str(),
                  where(t).c_str(), site(t).c_str());
  }
  if (!first) return;
  if (gone)
    return fail("%s waits at %s, which %s never reaches: it has exited (every thread of the block must reach each barrier)",
                where(*first).c_str(), site(*first).c_str(), where(*gone).c_str());
  int count = 0, n = 0;
  for (int i = 0; i < e.nthreads; ++i) count += (int)e.threads[i].val, ++n;
  const uint64_t r = first->kind == K_BAR_COUNT ? (uint64_t)count : first->kind == K_BAR_AND ? (count == n) : first->kind == K_BAR_OR ? (count > 0) : 0;
  for (int i = 0; i < e.nthreads; ++i) e.threads[i].result = r, e.threads[i].state = S_RUN;
}

inline bool lanes_valid(const Thread& t, unsigned mask, int width) {
  const Emu& e = emu();
  const int lane = t.linear & 31, base = t.linear & ~31;
  const int lanes = e.nthreads - base < 32 ? e.nthreads - base : 32;
  if (!(mask >> lane & 1)) {
    fail("%s: %s: mask %08x does not name the calling lane %d", where(t).c_str(), site(t).c_str(), mask, lane);
    return false;
  }
  if (lanes < 32 && (mask >> lanes) != 0) {
    fail("%s: %s: mask %08x names lanes past the block's last thread (this warp has %d)", where(t).c_str(), site(t).c_str(), mask, lanes);
    return false;
  }
  if (width < 1 || width > 32 || (width & (width - 1))) {
    fail("%s: %s: width %d is not a power of two in [1, 32]", where(t).c_str(), site(t).c_str(), width);
    return false;
  }
  return true;
}

// ------------------------------------------------------------------------------------ mma.sync

/**
 * mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32 for the current lane: a warp collective of all 32
 * lanes (the .aligned form: every lane, converged, at the same instruction). Fragments in the PTX ISA's
 * layouts ("Matrix Fragments for mma.m16n8k16 with floating point type"); group = lane / 4, t = lane % 4:
 *   A 16x16, a[j] holds elements 2j (low 16 bits) and 2j + 1: element i at row group + 8 * ((i / 2) % 2),
 *     column 2 t + i % 2 + 8 * (i / 4);
 *   B 16x8, b[j] holds elements 2j, 2j + 1: element i at row 2 t + i % 2 + 8 * (i / 2), column group;
 *   C, D 16x8 f32: element i at row group + 8 * (i / 2), column 2 t + i % 2.
 * The bf16 and f16 forms share these layouts (16-bit elements both); only the decoding differs.
 * Each output is one fp32 fma chain over k ascending from C: bf16 and f16 products are exact in fp32 (8 x 8
 * and 11 x 11 significant bits) as in the tensor cores, whose accumulation order and rounding are their
 * own (emulated and GPU sums of many terms agree to a few ulp, not bitwise).
 */
inline float bf16_to_f32(uint16_t h);
inline float f16_to_f32(uint16_t h);

struct MmaFragments {
  uint32_t a[4], b[2];
  float c[4], d[4];
  bool f16;  // the operands are IEEE halves, not bf16 (the same on every lane: one instruction)
};

inline void complete_mma(Thread** lanes) {
  float A[16][16], B[16][8], C[16][8];
  for (int l = 0; l < 32; ++l) {
    const MmaFragments& f = *static_cast<const MmaFragments*>(lanes[l]->wide);
    const int g = l >> 2, t = l & 3;
    const auto decode = [&f](uint32_t word, int half) {
      const uint16_t h = (uint16_t)(word >> (16 * half));
      return f.f16 ? f16_to_f32(h) : bf16_to_f32(h);
    };
    for (int i = 0; i < 8; ++i) A[g + 8 * ((i >> 1) & 1)][2 * t + (i & 1) + 8 * (i >> 2)] = decode(f.a[i >> 1], i & 1);
    for (int i = 0; i < 4; ++i) B[2 * t + (i & 1) + 8 * (i >> 1)][g] = decode(f.b[i >> 1], i & 1);
    for (int i = 0; i < 4; ++i) C[g + 8 * (i >> 1)][2 * t + (i & 1)] = f.c[i];
  }
  for (int l = 0; l < 32; ++l) {
    MmaFragments& f = *static_cast<MmaFragments*>(lanes[l]->wide);
    const int g = l >> 2, t = l & 3;
    for (int i = 0; i < 4; ++i) {
      const int m = g + 8 * (i >> 1), n = 2 * t + (i & 1);
      float acc = C[m][n];
      for (int k = 0; k < 16; ++k) acc = fmaf(A[m][k], B[k][n], acc);
      f.d[i] = acc;
    }
  }
}

/** Results of a completed warp collective for every lane of its mask. */
inline void complete_warp(Thread** lanes, unsigned mask) {
  Thread& any = *lanes[__builtin_ctz(mask)];
  const Kind k = any.kind;
  if (k == K_MMA) {
    complete_mma(lanes);
    for (int l = 0; l < 32; ++l) lanes[l]->state = S_RUN;
    emu().warp_waiting[any.linear >> 5] = 0;
    return;
  }
  unsigned votes = 0;
  for (int l = 0; l < 32; ++l)
    if (mask >> l & 1) votes |= (lanes[l]->val != 0 ? 1u : 0u) << l;
  for (int l = 0; l < 32; ++l) {
    if (!(mask >> l & 1)) continue;
    Thread& t = *lanes[l];
    const int w = t.width, base = l & ~(w - 1);
    int src = l;
    switch (k) {
      case K_SHFL_IDX: src = base + (t.arg & (w - 1)); break;
      case K_SHFL_UP: src = l - t.arg >= base ? l - t.arg : l; break;
      case K_SHFL_DOWN: src = l + t.arg < base + w ? l + t.arg : l; break;
      case K_SHFL_XOR: src = (l ^ t.arg) < base + w ? (l ^ t.arg) : l; break;
      default: break;
    }
    if (k >= K_SHFL_IDX && k <= K_SHFL_XOR) {
      if (src < 0 || src > 31 || !(mask >> src & 1))
        return fail("%s: %s reads lane %d, which is not in the mask (undefined on a GPU)", where(t).c_str(), site(t).c_str(), src);
      t.result = lanes[src]->val;
    } else if (k == K_BALLOT) {
      t.result = votes;
    } else if (k == K_ANY) {
      t.result = votes != 0;
    } else if (k == K_ALL) {
      t.result = votes == mask;
    } else if (k >= K_RED_ADD) {
      uint64_t acc = 0;
      bool first = true;
      for (int m = 0; m < 32; ++m) {
        if (!(mask >> m & 1)) continue;
        const uint32_t v = (uint32_t)lanes[m]->val;
        if (first) acc = v, first = false;
        else if (k == K_RED_ADD) acc = (uint32_t)(acc + v);
        else if (k == K_RED_MIN) acc = (uint32_t)((int32_t)v < (int32_t)acc ? v : acc);
        else if (k == K_RED_MAX) acc = (uint32_t)((int32_t)v > (int32_t)acc ? v : acc);
        else if (k == K_RED_UMIN) acc = v < acc ? v : acc;
        else acc = v > acc ? v : acc;
      }
      t.result = acc;
    }
  }
  for (int l = 0; l < 32; ++l)
    if (mask >> l & 1) lanes[l]->state = S_RUN;
  emu().warp_waiting[any.linear >> 5] &= ~mask;
}

/**
 * A warp collective by the current thread: waits until every lane of `mask` waits at the same collective
 * (in any order, other collectives of other masks in between), returns this lane's result.
 */
inline uint64_t warp_op(Kind k, const char* file, int line, unsigned mask, uint64_t val, int arg, int width, int vsize) {
  Emu& e = emu();
  if (!e.in_kernel || !e.cur) {
    fprintf(stderr, "md-simt-emu: %s called outside a kernel (%s:%d)\n", kind_name(k), file, line);
    abort();
  }
  Thread& t = *e.cur;
  t.kind = k;
  t.file = file;
  t.line = line;
  t.mask = mask;
  t.width = width;
  t.arg = arg;
  t.val = val;
  t.vsize = vsize;
  if (!lanes_valid(t, mask, width)) return 0;
  const int base = t.linear & ~31, lane = t.linear & 31, w = t.linear >> 5;
  if (const uint32_t gone = e.warp_exited[w] & mask)
    fail("%s: %s names lane %d, which has exited", where(t).c_str(), site(t).c_str(), __builtin_ctz(gone));
  e.warp_waiting[w] |= 1u << lane;
  // Complete once every lane of the mask waits, each at this very collective.
  bool complete = (e.warp_waiting[w] & mask) == mask;
  for (uint32_t m = mask & ~(1u << lane); m && complete; m &= m - 1)
    if (!same_collective(e.threads[base + __builtin_ctz(m)], t)) complete = false;
  t.state = S_WAIT;
  if (complete) {
    Thread* warp[32];
    for (uint32_t m = mask; m; m &= m - 1) warp[__builtin_ctz(m)] = &e.threads[base + __builtin_ctz(m)];
    complete_warp(warp, mask);
  }
  if (e.failed) return 0;
  if (t.state == S_WAIT) yield();
  return t.result;
}

template <typename T>
inline uint64_t to_bits(T v) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "warp exchange of a type wider than 8 bytes");
  uint64_t b = 0;
  memcpy(&b, &v, sizeof v);
  return b;
}
template <typename T>
inline T from_bits(uint64_t b) {
  T v;
  memcpy(&v, &b, sizeof v);
  return v;
}

template <Kind K, typename T>
inline T shfl(const char* file, int line, unsigned mask, T var, int arg, int width = warpSize) {
  return from_bits<T>(warp_op(K, file, line, mask, to_bits(var), arg, width, (int)sizeof(T)));
}

/** The current lane's part of mma.sync.m16n8k16 (bf16 x bf16 + f32, or f16 x f16 + f32): see MmaFragments. */
inline void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4], bool f16, const char* file, int line) {
  MmaFragments f;
  f.f16 = f16;
  memcpy(f.a, a, sizeof f.a);
  memcpy(f.b, b, sizeof f.b);
  memcpy(f.c, c, sizeof f.c);
  Emu& e = emu();
  if (e.cur) e.cur->wide = &f;
  warp_op(K_MMA, file, line, 0xffffffffu, 0, 0, 32, (int)sizeof f);
  memcpy(d, f.d, sizeof f.d);
}

// ------------------------------------------------------------------------------------ cp.async

inline void cp_async(void* dst, const void* src, size_t bytes) {
  Emu& e = emu();
  if (!e.cur) {
    fprintf(stderr, "md-simt-emu: cp.async outside a kernel\n");
    abort();
  }
  if (((uintptr_t)dst | (uintptr_t)src) % bytes != 0)
    fail("%s: cp.async of %zu bytes from %p to %p is misaligned", where(*e.cur).c_str(), bytes, src, dst);
  e.cur->pending.push_back(AsyncCopy{dst, src, bytes});
}
inline void cp_async_commit() {
  Thread& t = *emu().cur;
  t.groups.push_back(t.pending.size());
}
/** cp.async.wait_group n: every committed group but the n most recent has landed. */
inline void cp_async_wait(int n) {
  Thread& t = *emu().cur;
  if ((int)t.groups.size() <= n) return;
  const size_t done = t.groups[t.groups.size() - 1 - n];
  for (size_t i = 0; i < done; ++i) memcpy(t.pending[i].dst, t.pending[i].src, t.pending[i].bytes);
  t.pending.erase(t.pending.begin(), t.pending.begin() + (long)done);
  t.groups.erase(t.groups.begin(), t.groups.end() - n);
  for (size_t& g : t.groups) g -= done;
}

// --------------------------------------------------------------------------------- the launch

/** Where a thread's fiber starts: the kernel body, then exit. */
[[noreturn]] inline void fiber_main() {
  Emu& e = emu();
#ifdef MD_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &e.sched_stack_bottom, &e.sched_stack_size);
#endif
  e.body(e.body_ctx);
  Thread& t = *e.cur;
  // Copies still in flight land (a GPU completes them too); nothing could read them.
  for (const AsyncCopy& c : t.pending) memcpy(c.dst, c.src, c.bytes);
  t.pending.clear();
  t.groups.clear();
  t.state = S_DONE;
  ++e.exited;
  const int base = t.linear & ~31, lane = t.linear & 31;
  e.warp_exited[t.linear >> 5] |= 1u << lane;
  for (uint32_t waiting = e.warp_waiting[t.linear >> 5]; waiting; waiting &= waiting - 1) {
    const int l = __builtin_ctz(waiting);
    const Thread& o = e.threads[base + l];
    if (o.mask >> lane & 1) fail("%s exited while lane %d waits for it at %s", where(t).c_str(), l, site(o).c_str());
  }
  for (;;) yield();
}

/**
 * This library's own thread-local byte: touching it makes the dynamic linker allocate the library's block
 * for the calling thread. Internal linkage on purpose: a function-local static of an inline function is
 * one STB_GNU_UNIQUE object for every emulated module in a process, so a second module's block would
 * never be allocated (the engine loads several modules into one process).
 */
static thread_local unsigned char tls_anchor;

/**
 * The thread-local block, for the calling OS thread, of the library that holds `kernel` (where its
 * __shared__ variables live): found once per (thread, library) and cached.
 */
static inline void locate_tls(const void* kernel) {
  Emu& e = emu();
  *(volatile unsigned char*)&tls_anchor = 1;
  Dl_info self;
  if (!dladdr(kernel, &self)) {
    fprintf(stderr, "md-simt-emu: dladdr cannot find the library of a kernel\n");
    abort();
  }
  if (e.tls_block && e.tls_thread == std::this_thread::get_id() && e.tls_library == self.dli_fbase) return;
  struct Query {
    const void* base;
    void* block;
    size_t bytes;
  } q{self.dli_fbase, nullptr, 0};
  dl_iterate_phdr(
      [](struct dl_phdr_info* info, size_t, void* data) -> int {
        Query& q = *(Query*)data;
        for (int i = 0; i < info->dlpi_phnum; ++i)
          if (info->dlpi_phdr[i].p_type == PT_LOAD && info->dlpi_phdr[i].p_offset == 0 && (const void*)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr) == q.base) {
            for (int j = 0; j < info->dlpi_phnum; ++j)
              if (info->dlpi_phdr[j].p_type == PT_TLS) q.bytes = info->dlpi_phdr[j].p_memsz;
            q.block = info->dlpi_tls_data;
            return 1;
          }
        return 0;
      },
      &q);
  if (!q.block || !q.bytes) {
    fprintf(stderr, "md-simt-emu: cannot locate the module's thread-local block (its __shared__ memory)\n");
    abort();
  }
  e.tls_block = q.block;
  e.tls_bytes = q.bytes;
  e.tls_thread = std::this_thread::get_id();
  e.tls_library = self.dli_fbase;
}

/** One CTA, to completion or failure. */
inline void run_cta(uint3 b, uint64_t salt) {
  Emu& e = emu();
  memset(e.tls_block, 0xff, e.tls_bytes);
  if (e.dyn_bytes) memset(e.dyn_smem.data(), 0xff, e.dyn_bytes);
  e.block = b;
  blockIdx = b;
  e.exited = 0;
  e.warp_waiting.assign((e.nthreads + 31) / 32, 0u);
  e.warp_exited.assign((e.nthreads + 31) / 32, 0u);
  ++e.ctas;
  for (int i = 0; i < e.nthreads; ++i) {
    Thread& t = e.threads[i];
    t.linear = i;
    t.idx = uint3{i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y)};
    t.state = S_RUN;
    t.pending.clear();
    t.groups.clear();
    start_fiber(t);
  }
  std::vector<int> ord;
  order(ord, e.nthreads, salt);
  for (;;) {
    bool any = false;
    for (int k = 0; k < e.nthreads; ++k) {
      Thread& t = e.threads[ord[k]];
      if (t.state != S_RUN) continue;
      any = true;
      resume(t);
      if (e.failed) return;
    }
    if (any) continue;
    if (e.exited == e.nthreads) return;
    resolve_stuck();
    if (e.failed) return;
  }
}

/** cudaFuncSetAttribute(MaxDynamicSharedMemorySize) per kernel; 48 KiB without it, as on the GPU. */
inline std::vector<std::pair<const void*, int>>& smem_optins() {
  static std::vector<std::pair<const void*, int>> v;
  return v;
}
constexpr size_t SMEM_DEFAULT = 48 * 1024, SMEM_MAX = 227 * 1024;

/** Whether a launch's configuration is one the GPU accepts (the launch itself reports it, before it runs). */
inline bool launch_config_ok(const void* fn, dim3 grid, dim3 block, size_t smem) {
  size_t smem_limit = SMEM_DEFAULT;
  for (auto& o : smem_optins())
    if (o.first == fn) smem_limit = (size_t)o.second;
  const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
  return !(threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu ||
           grid.y > 65535 || grid.z > 65535 || smem > smem_limit);
}

inline void run_grid(const char* name, const void* fn, dim3 grid, dim3 block, size_t smem, void (*body)(void*), void* ctx) {
  Emu& e = emu();
  if (e.in_kernel && e.launch_thread == std::this_thread::get_id()) {
    fprintf(stderr, "md-simt-emu: kernel %s launched from a kernel (dynamic parallelism is not emulated)\n", name);
    abort();
  }
  static std::mutex one_launch_at_a_time;  // the emulator's state is one launch's: host threads take turns
  std::lock_guard<std::mutex> guard(one_launch_at_a_time);
  configure();
  e.launch_thread = std::this_thread::get_id();
  if (e.sticky_error) {
    e.last_error = e.sticky_error;
    return;
  }
  if (!launch_config_ok(fn, grid, block, smem)) {
    e.last_error = INVALID_CONFIGURATION;
    return;
  }
  ++e.launches;
  locate_tls(fn);
  e.kernel = name;
  e.nthreads = (int)(block.x * block.y * block.z);
  if ((int)e.threads.size() < e.nthreads) e.threads.resize(e.nthreads);
  e.dyn_bytes = smem;
  if (e.dyn_smem.size() < smem) e.dyn_smem.resize(smem);
  e.body = body;
  e.body_ctx = ctx;
  const dim3 saved_dim = blockDim, saved_grid = gridDim;
  const uint3 saved_block = blockIdx, saved_thread = threadIdx;
  blockDim = block;
  gridDim = grid;
  e.in_kernel = true;
  const uint64_t ctas = (uint64_t)grid.x * grid.y * grid.z;
  std::vector<uint64_t> ids;
  if (e.schedule != FORWARD) {
    std::vector<int> o;
    if (ctas <= 0x7fffffff) {
      order(o, (int)ctas, 0x5eedull);
      ids.assign(o.begin(), o.end());
    }
  }
  for (uint64_t i = 0; i < ctas && !e.failed; ++i) {
    const uint64_t c = ids.empty() ? i : ids[i];
    run_cta(uint3{(unsigned)(c % grid.x), (unsigned)(c / grid.x % grid.y), (unsigned)(c / ((uint64_t)grid.x * grid.y))}, c + 1);
  }
  e.in_kernel = false;
  e.cur = nullptr;
  if (e.failed)
    for (Thread& t : e.threads) t.abandoned = true;
  blockDim = saved_dim;
  gridDim = saved_grid;
  blockIdx = saved_block;
  threadIdx = saved_thread;
  if (e.failed) e.last_error = e.sticky_error = LAUNCH_FAILURE;
}

/**
 * Stream work: op(arg) runs at once on a null stream (the test drivers'), else goes to the stream's queue
 * (md_abi.h md_emu_queue: the runtime's host device), which runs it at once or, while it captures, records
 * it for its replays; drop(arg) follows the last run. Arguments are taken by value when submitted, as a
 * CUDA graph takes a kernel's parameters when it is captured.
 */
inline void submit(md_emu_queue* q, void (*op)(void*), void* arg, void (*drop)(void*)) {
  if (!q) {
    op(arg);
    drop(arg);
    return;
  }
  if (q->magic != MD_EMU_QUEUE_MAGIC) {
    fprintf(stderr, "md-simt-emu: work submitted to a stream that is not an emulated device's queue (md_emu_queue)\n");
    abort();
  }
  q->submit(q->ctx, op, arg, drop);
}
inline bool capturing(md_emu_queue* q) { return q && q->magic == MD_EMU_QUEUE_MAGIC && q->capturing(q->ctx); }

/** kernel<<<grid, block, smem, stream>>>(args...) as launcher<kernel>(grid, block, smem, stream)(args...). */
template <auto K>
struct launcher;
template <class... P, void (*K)(P...)>
struct launcher<K> {
  dim3 grid, block;
  size_t smem;
  md_emu_queue* stream;
  launcher(dim3 g, dim3 b, size_t s = 0, md_emu_queue* q = nullptr) : grid(g), block(b), smem(s), stream(q) {}
  static const char* name() { return __PRETTY_FUNCTION__; }
  template <class... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    typedef std::tuple<typename std::decay<P>::type...> Params;
    struct Launch {
      dim3 grid, block;
      size_t smem;
      Params params;
    };
    // A bad configuration fails the launch itself, captured or not (cudaGetLastError after it says so).
    if (!launch_config_ok((const void*)K, grid, block, smem)) {
      configure();
      Emu& e = emu();
      e.last_error = e.sticky_error ? e.sticky_error : INVALID_CONFIGURATION;
      return;
    }
    submit(
        stream,
        [](void* p) {
          Launch& l = *static_cast<Launch*>(p);
          run_grid(name(), (const void*)K, l.grid, l.block, l.smem, [](void* ctx) { std::apply(K, *static_cast<Params*>(ctx)); }, &l.params);
        },
        new Launch{grid, block, smem, Params(std::forward<A>(args)...)}, [](void* p) { delete static_cast<Launch*>(p); });
  }
};

inline void* dynamic_smem() {
  Emu& e = emu();
  return e.dyn_smem.data();
}

// ------------------------------------------------------------------------------ dtype conversions

inline uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
/** cuda_bf16.h's __float2bfloat16_rn: round to nearest even, NaN to 0x7fff. */
inline uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }
/** cuda_fp16.h's __float2half_rn: round to nearest even (subnormals, overflow to inf), NaN to 0x7fff. */
inline uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7fffu;
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds to >= 65520: infinity
  if (a < 0x33000001u) return (uint16_t)sign;                // at most 2^-25: rounds to zero
  const int exp = (int)(a >> 23);
  uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  if (exp < 113) {  // a half subnormal: value = mant * 2^(exp - 150), unit 2^-24
    const int shift = 126 - exp;
    const uint32_t keep = mant >> shift, rest = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    const uint32_t r = keep + (rest > half || (rest == half && (keep & 1)));
    return (uint16_t)(sign | r);
  }
  const uint32_t keep = mant >> 13, rest = mant & 0x1fffu;
  uint32_t r = ((uint32_t)(exp - 112) << 10) + (keep & 0x3ffu);
  r += rest > 0x1000u || (rest == 0x1000u && (keep & 1));
  return (uint16_t)(sign | r);
}
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    const float v = (float)m * 5.9604644775390625e-8f;  // m * 2^-24, exact
    return sign ? -v : v;
  }
  if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
  return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

}  // namespace md_emu

// ------------------------------------------------------------------------------- bf16 and fp16

struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : __x(md_emu::f32_to_bf16(f)) {}
  operator float() const { return md_emu::bf16_to_f32(__x); }
};
struct __half {
  unsigned short __x;
  __half() = default;
  __half(float f) : __x(md_emu::f32_to_f16(f)) {}
  operator float() const { return md_emu::f16_to_f32(__x); }
};
typedef __nv_bfloat16 nv_bfloat16;
typedef __half half;
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
static inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
static inline float __bfloat162float(__nv_bfloat16 h) { return (float)h; }
static inline __half __float2half_rn(float f) { return __half(f); }
static inline __half __float2half(float f) { return __half(f); }
static inline float __half2float(__half h) { return (float)h; }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
static inline unsigned short __half_as_ushort(__half h) { return h.__x; }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short x) {
  __nv_bfloat16 h;
  h.__x = x;
  return h;
}
static inline __half __ushort_as_half(unsigned short x) {
  __half h;
  h.__x = x;
  return h;
}

// ---------------------------------------------------------------------------------- intrinsics

static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
static inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }
static inline float __saturatef(float a) { return a != a ? 0.0f : a < 0.0f ? 0.0f : a > 1.0f ? 1.0f : a; }
// The fast intrinsics keep their GPU formulas (ex2.approx / lg2.approx of a rounded product). glibc's
// math.h declares __expf & co. as its own internal names, so these are macros onto md_emu_ functions.
static inline float md_emu_expf(float x) { return exp2f(x * 1.4426950408889634f); }
static inline float md_emu_exp10f(float x) { return exp2f(x * 3.3219280948873622f); }
static inline float md_emu_logf(float x) { return log2f(x) * 0.6931471805599453f; }
static inline float md_emu_log2f(float x) { return log2f(x); }
static inline float md_emu_log10f(float x) { return log2f(x) * 0.3010299956639812f; }
static inline float md_emu_sinf(float x) { return sinf(x); }
static inline float md_emu_cosf(float x) { return cosf(x); }
static inline float md_emu_tanf(float x) { return sinf(x) / cosf(x); }
static inline float md_emu_powf(float x, float y) { return exp2f(y * log2f(x)); }
static inline void md_emu_sincosf(float x, float* s, float* c) { *s = sinf(x), *c = cosf(x); }
#define __expf md_emu_expf
#define __exp10f md_emu_exp10f
#define __logf md_emu_logf
#define __log2f md_emu_log2f
#define __log10f md_emu_log10f
#define __sinf md_emu_sinf
#define __cosf md_emu_cosf
#define __tanf md_emu_tanf
#define __powf md_emu_powf
#define __sincosf md_emu_sincosf
/** __fdividef: a * (1 / b), and 0 for 2^126 < |b| < 2^128 (the PTX div.approx.f32 range note). */
static inline float __fdividef(float a, float b) {
  const float ab = fabsf(b);
  if (ab > 8.507059173023462e37f && ab < INFINITY) return a != a ? a : 0.0f * a;
  return a * (1.0f / b);
}

static inline float __int_as_float(int x) { return md_emu::bits_f32((uint32_t)x); }
static inline int __float_as_int(float x) { return (int)md_emu::f32_bits(x); }
static inline float __uint_as_float(unsigned x) { return md_emu::bits_f32(x); }
static inline unsigned __float_as_uint(float x) { return md_emu::f32_bits(x); }
static inline double __longlong_as_double(long long x) {
  double d;
  memcpy(&d, &x, 8);
  return d;
}
static inline long long __double_as_longlong(double d) {
  long long x;
  memcpy(&x, &d, 8);
  return x;
}
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
static inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }

// CUDA's min/max overloads of the global namespace (long and unsigned long too: uint64_t is unsigned long here).
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline long min(long a, long b) { return a < b ? a : b; }
static inline long max(long a, long b) { return a > b ? a : b; }
static inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
static inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
static inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
static inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }

/** Read-only loads: plain loads that check the alignment the GPU requires of them. */
template <typename T>
static inline T __ldg(const T* p) {
  if ((uintptr_t)p % alignof(T) != 0) md_emu::fail("__ldg of %zu bytes at %p is misaligned", sizeof(T), (const void*)p);
  return *p;
}

static inline void __threadfence() {}
static inline void __threadfence_block() {}
[[noreturn]] static inline void __trap() {
  md_emu::fail("__trap()");
  abort();
}

// Collectives pass their call site: lanes (threads) must meet at the same one.
#define __syncthreads() ::md_emu::barrier(::md_emu::K_BAR, 0, __FILE__, __LINE__)
#define __syncthreads_count(p) ::md_emu::barrier(::md_emu::K_BAR_COUNT, (p), __FILE__, __LINE__)
#define __syncthreads_and(p) ::md_emu::barrier(::md_emu::K_BAR_AND, (p), __FILE__, __LINE__)
#define __syncthreads_or(p) ::md_emu::barrier(::md_emu::K_BAR_OR, (p), __FILE__, __LINE__)
#define __syncwarp(...) ::md_emu::syncwarp_at{__FILE__, __LINE__}(__VA_ARGS__)
#define __shfl_sync(...) ::md_emu::shfl<::md_emu::K_SHFL_IDX>(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::md_emu::shfl<::md_emu::K_SHFL_UP>(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) ::md_emu::shfl<::md_emu::K_SHFL_DOWN>(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::md_emu::shfl<::md_emu::K_SHFL_XOR>(__FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(mask, pred) ((unsigned)::md_emu::warp_op(::md_emu::K_BALLOT, __FILE__, __LINE__, (mask), (pred) != 0, 0, 32, 0))
#define __any_sync(mask, pred) ((int)::md_emu::warp_op(::md_emu::K_ANY, __FILE__, __LINE__, (mask), (pred) != 0, 0, 32, 0))
#define __all_sync(mask, pred) ((int)::md_emu::warp_op(::md_emu::K_ALL, __FILE__, __LINE__, (mask), (pred) != 0, 0, 32, 0))
#define __reduce_add_sync(mask, v) ::md_emu::reduce(::md_emu::K_RED_ADD, __FILE__, __LINE__, (mask), (v))
#define __reduce_min_sync(mask, v) ::md_emu::reduce(::md_emu::K_RED_MIN, __FILE__, __LINE__, (mask), (v))
#define __reduce_max_sync(mask, v) ::md_emu::reduce(::md_emu::K_RED_MAX, __FILE__, __LINE__, (mask), (v))

namespace md_emu {
struct syncwarp_at {
  const char* file;
  int line;
  void operator()(unsigned mask = 0xffffffffu) const { warp_op(K_SYNCWARP, file, line, mask, 0, 0, 32, 0); }
};
inline int reduce(Kind k, const char* file, int line, unsigned mask, int v) {
  return (int)(uint32_t)warp_op(k, file, line, mask, (uint32_t)v, 0, 32, 4);
}
inline unsigned reduce(Kind k, const char* file, int line, unsigned mask, unsigned v) {
  const Kind u = k == K_RED_MIN ? K_RED_UMIN : k == K_RED_MAX ? K_RED_UMAX : k;
  return (unsigned)warp_op(u, file, line, mask, v, 0, 32, 4);
}
}  // namespace md_emu

// ------------------------------------------------------------------------------------- atomics
// Plain read-modify-writes: a fiber is never interrupted between two collectives.

template <typename T>
static inline T md_emu_atomic_rmw(T* p, T v, int op) {
  const T old = *p;
  switch (op) {
    case 0: *p = old + v; break;
    case 1: *p = old - v; break;
    case 2: *p = v; break;
    case 3: *p = v < old ? v : old; break;
    case 4: *p = v > old ? v : old; break;
    default: break;
  }
  return old;
}
static inline int atomicAdd(int* p, int v) { return md_emu_atomic_rmw(p, v, 0); }
static inline unsigned atomicAdd(unsigned* p, unsigned v) { return md_emu_atomic_rmw(p, v, 0); }
static inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { return md_emu_atomic_rmw(p, v, 0); }
static inline float atomicAdd(float* p, float v) { return md_emu_atomic_rmw(p, v, 0); }
static inline double atomicAdd(double* p, double v) { return md_emu_atomic_rmw(p, v, 0); }
static inline int atomicSub(int* p, int v) { return md_emu_atomic_rmw(p, v, 1); }
static inline unsigned atomicSub(unsigned* p, unsigned v) { return md_emu_atomic_rmw(p, v, 1); }
static inline int atomicExch(int* p, int v) { return md_emu_atomic_rmw(p, v, 2); }
static inline unsigned atomicExch(unsigned* p, unsigned v) { return md_emu_atomic_rmw(p, v, 2); }
static inline unsigned long long atomicExch(unsigned long long* p, unsigned long long v) { return md_emu_atomic_rmw(p, v, 2); }
static inline float atomicExch(float* p, float v) { return md_emu_atomic_rmw(p, v, 2); }
static inline int atomicMin(int* p, int v) { return md_emu_atomic_rmw(p, v, 3); }
static inline unsigned atomicMin(unsigned* p, unsigned v) { return md_emu_atomic_rmw(p, v, 3); }
static inline long long atomicMin(long long* p, long long v) { return md_emu_atomic_rmw(p, v, 3); }
static inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) { return md_emu_atomic_rmw(p, v, 3); }
static inline int atomicMax(int* p, int v) { return md_emu_atomic_rmw(p, v, 4); }
static inline unsigned atomicMax(unsigned* p, unsigned v) { return md_emu_atomic_rmw(p, v, 4); }
static inline long long atomicMax(long long* p, long long v) { return md_emu_atomic_rmw(p, v, 4); }
static inline unsigned long long atomicMax(unsigned long long* p, unsigned long long v) { return md_emu_atomic_rmw(p, v, 4); }
static inline int atomicAnd(int* p, int v) { const int o = *p; *p = o & v; return o; }
static inline unsigned atomicAnd(unsigned* p, unsigned v) { const unsigned o = *p; *p = o & v; return o; }
static inline int atomicOr(int* p, int v) { const int o = *p; *p = o | v; return o; }
static inline unsigned atomicOr(unsigned* p, unsigned v) { const unsigned o = *p; *p = o | v; return o; }
static inline unsigned long long atomicOr(unsigned long long* p, unsigned long long v) { const unsigned long long o = *p; *p = o | v; return o; }
static inline int atomicXor(int* p, int v) { const int o = *p; *p = o ^ v; return o; }
static inline unsigned atomicXor(unsigned* p, unsigned v) { const unsigned o = *p; *p = o ^ v; return o; }
static inline int atomicCAS(int* p, int cmp, int v) { const int o = *p; if (o == cmp) *p = v; return o; }
static inline unsigned atomicCAS(unsigned* p, unsigned cmp, unsigned v) { const unsigned o = *p; if (o == cmp) *p = v; return o; }
static inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long cmp, unsigned long long v) {
  const unsigned long long o = *p;
  if (o == cmp) *p = v;
  return o;
}

// ------------------------------------------------------------------------------ the runtime API
// The part of the CUDA runtime the modules use. Device memory is host memory. A null stream is synchronous
// (work finishes before the call returns); a runtime's stream is its device's queue (md_emu_queue), which
// runs work as it comes or records it while capturing, so that a captured CUDA graph has a twin here.

typedef int cudaError_t;
enum : int {
  cudaSuccess = md_emu::OK,
  cudaErrorInvalidValue = md_emu::INVALID_VALUE,
  cudaErrorMemoryAllocation = md_emu::MEMORY_ALLOCATION,
  cudaErrorInvalidConfiguration = md_emu::INVALID_CONFIGURATION,
  cudaErrorLaunchFailure = md_emu::LAUNCH_FAILURE,
};
typedef md_emu_queue* cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
struct cudaDeviceProp {
  char name[256];
  int major, minor, multiProcessorCount, warpSize;
  size_t sharedMemPerBlock, sharedMemPerBlockOptin;
};

static inline cudaError_t md_emu_status(cudaError_t e) {
  if (md_emu::emu().sticky_error) return md_emu::emu().sticky_error;
  return e;
}
static inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure (md-simt-emu: see its message)";
    case md_emu::CAPTURE_UNSUPPORTED: return "operation not permitted when stream is capturing (md-simt-emu: a host wait)";
    default: return "unknown error";
  }
}
static inline cudaError_t cudaGetLastError() {
  md_emu::Emu& e = md_emu::emu();
  const cudaError_t r = e.last_error;
  e.last_error = e.sticky_error;
  return r;
}
static inline cudaError_t cudaPeekAtLastError() { return md_emu::emu().last_error; }
/**
 * A call that makes the host wait for the device (a synchronisation, a blocking or device-to-host copy).
 * With MD_SIMT_EMU_HOST_WAITS=fail, set where only kernel entry points call the runtime API (the test
 * drivers), it is an error: an entry point must not wait, or a step could not be captured as a CUDA graph
 * (where such a call fails with cudaErrorStreamCaptureUnsupported). Aborts, or returns that error with
 * MD_SIMT_EMU_ON_ERROR=status.
 */
static inline cudaError_t md_emu_host_wait(const char* call) {
  md_emu::configure();
  md_emu::Emu& e = md_emu::emu();
  if (!e.host_waits_fail) return md_emu_status(cudaSuccess);
  e.message = std::string("md-simt-emu: ") + call + " waits for the device inside an entry point (MD_SIMT_EMU_HOST_WAITS=fail)";
  fprintf(stderr, "%s\n", e.message.c_str());
  if (e.abort_on_error) abort();
  return md_emu::CAPTURE_UNSUPPORTED;
}
/** A host wait on a stream that is capturing fails as it does in CUDA (the capture is then invalid). */
static inline cudaError_t md_emu_stream_wait(cudaStream_t s, const char* call) {
  if (!md_emu::capturing(s)) return md_emu_host_wait(call);
  md_emu::Emu& e = md_emu::emu();
  e.message = std::string("md-simt-emu: ") + call + " on a stream that is capturing";
  fprintf(stderr, "%s\n", e.message.c_str());
  return e.last_error = md_emu::CAPTURE_UNSUPPORTED;
}
static inline cudaError_t cudaDeviceSynchronize() { return md_emu_host_wait("cudaDeviceSynchronize"); }
static inline cudaError_t cudaStreamSynchronize(cudaStream_t s) { return md_emu_stream_wait(s, "cudaStreamSynchronize"); }
static inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return md_emu_status(cudaSuccess);
}
static inline cudaError_t cudaSetDevice(int d) { return md_emu_status(d == 0 ? cudaSuccess : cudaErrorInvalidValue); }
static inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return cudaErrorInvalidValue;
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "md-simt-emu (host emulation)");
  p->major = 9, p->minor = 0, p->multiProcessorCount = 1, p->warpSize = 32;
  p->sharedMemPerBlock = md_emu::SMEM_DEFAULT, p->sharedMemPerBlockOptin = md_emu::SMEM_MAX;
  return md_emu_status(cudaSuccess);
}
/** Device memory: 256-byte aligned host memory, poisoned with 0xff (a GPU's is uninitialised). */
static inline cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = aligned_alloc(256, bytes ? (bytes + 255) / 256 * 256 : 256);
  if (!*p) return cudaErrorMemoryAllocation;
  memset(*p, 0xff, bytes);
  return md_emu_status(cudaSuccess);
}
template <typename T>
static inline cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc((void**)p, bytes);
}
static inline cudaError_t cudaFree(void* p) {
  free(p);
  return md_emu_status(cudaSuccess);
}
static inline cudaError_t md_emu_copy(void* d, const void* s, size_t n) {
  if (md_emu::emu().sticky_error) return md_emu::emu().sticky_error;
  if (n) memmove(d, s, n);
  return cudaSuccess;
}
static inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) {
  const cudaError_t w = md_emu_host_wait("cudaMemcpy");
  return w != cudaSuccess ? w : md_emu_copy(d, s, n);
}
static inline cudaError_t cudaMemset(void* d, int v, size_t n) {
  if (md_emu::emu().sticky_error) return md_emu::emu().sticky_error;
  if (n) memset(d, v, n);
  return cudaSuccess;
}
/** An async copy (byte < 0) or fill on stream q: run, or recorded, as md_emu_copy / cudaMemset. */
struct md_emu_copy_op {
  void* d;
  const void* s;
  size_t n;
  int byte;
};
static inline cudaError_t md_emu_submit_copy(cudaStream_t q, md_emu_copy_op op) {
  if (md_emu::emu().sticky_error) return md_emu::emu().sticky_error;  // a launch failed before: reported now
  md_emu::submit(
      q,
      [](void* a) {
        const md_emu_copy_op& o = *static_cast<md_emu_copy_op*>(a);
        if (o.byte < 0) md_emu_copy(o.d, o.s, o.n);
        else cudaMemset(o.d, o.byte, o.n);
      },
      new md_emu_copy_op(op), [](void* a) { delete static_cast<md_emu_copy_op*>(a); });
  return cudaSuccess;
}
static inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind k, cudaStream_t q) {
  if (k == cudaMemcpyDeviceToHost) {  // pageable: the host waits for it
    const cudaError_t w = md_emu_stream_wait(q, "cudaMemcpyAsync(DeviceToHost)");
    return w != cudaSuccess ? w : md_emu_copy(d, s, n);
  }
  return md_emu_submit_copy(q, {d, s, n, -1});
}
static inline cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t q) { return md_emu_submit_copy(q, {d, nullptr, n, v & 0xff}); }
/**
 * Stream-ordered allocation. Captured, it is the graph's (a CUDA graph's allocation node): the memory stays
 * at its address until the graph is released, and every replay finds it poisoned again (a recorded fill),
 * as a replay finds a graph allocation's contents undefined.
 */
static inline cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t s) {
  const cudaError_t e = cudaMalloc(p, bytes);
  return e != cudaSuccess || !md_emu::capturing(s) ? e : cudaMemsetAsync(*p, 0xff, bytes, s);
}
static inline cudaError_t cudaFreeAsync(void* p, cudaStream_t s) {
  md_emu::submit(s, [](void*) {}, p, [](void* a) { free(a); });
  return md_emu_status(cudaSuccess);
}
template <typename T>
static inline cudaError_t cudaGetSymbolAddress(void** p, const T& symbol) {
  *p = (void*)&symbol;
  return md_emu_status(cudaSuccess);
}
template <typename F>
static inline cudaError_t cudaFuncSetAttribute(F* fn, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || (size_t)value > md_emu::SMEM_MAX) return cudaErrorInvalidValue;
  for (auto& o : md_emu::smem_optins())
    if (o.first == (const void*)fn) return o.second = value, md_emu_status(cudaSuccess);
  md_emu::smem_optins().emplace_back((const void*)fn, value);
  return md_emu_status(cudaSuccess);
}
