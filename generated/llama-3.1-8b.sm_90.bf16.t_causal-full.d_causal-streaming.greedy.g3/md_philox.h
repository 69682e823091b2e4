// Philox4x32-10, the counter-based generator of Random123 (Salmon, Moraes, Dror and Shaw, "Parallel random
// numbers: as easy as 1, 2, 3", SC 2011), and the noise every sampling kernel draws from it; one definition
// for host C++ and CUDA (MD_FN is __host__ __device__ under nvcc). model/philox.ts is the TypeScript
// reference, bit for bit; test/kernels/philox.test.ts checks both against the paper's known-answer vectors.
//
// Noise is a pure function of (request seed, absolute position, stream, draw index) (docs/ARCHITECTURE.md,
// invariant 3): draw d of (seed, position, stream) is word d % 4 of Philox4x32-10 at counter
// (d / 4, position, stream, 0) under key (seed & 0xffffffff, seed >> 32). Nothing is carried between
// draws, so a position's noise never depends on the batch, the bucket, gamma or the round.
#pragma once
#include <stdint.h>

#include "md_expr.h"

/** Counter word 2: what a draw is for (model/philox.ts NOISE_STREAM). */
#define MD_NOISE_GUMBEL 0u   /* Gumbel noise of token `draw` (the target's and the draft's samples) */
#define MD_NOISE_ACCEPT 1u   /* the uniform of an acceptance test */
#define MD_NOISE_RESIDUAL 2u /* Gumbel noise for resampling from a residual distribution */

typedef struct md_philox4 {
  uint32_t v[4];
} md_philox4;

/** Philox4x32-10 of counter `c` under key (k0, k1). */
MD_FN md_philox4 md_philox4x32_10(md_philox4 c, uint32_t k0, uint32_t k1) {
  for (int i = 0; i < 10; ++i) {
    if (i > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint64_t p0 = (uint64_t)0xD2511F53u * c.v[0];
    const uint64_t p1 = (uint64_t)0xCD9E8D57u * c.v[2];
    md_philox4 n;
    n.v[0] = (uint32_t)(p1 >> 32) ^ c.v[1] ^ k0;
    n.v[1] = (uint32_t)p1;
    n.v[2] = (uint32_t)(p0 >> 32) ^ c.v[3] ^ k1;
    n.v[3] = (uint32_t)p0;
    c = n;
  }
  return c;
}

/** Block `block` of (seed, position, stream): draws 4 * block .. 4 * block + 3. */
MD_FN md_philox4 md_philox_block(uint64_t seed, int32_t position, uint32_t stream, uint32_t block) {
  md_philox4 c;
  c.v[0] = block;
  c.v[1] = (uint32_t)position;
  c.v[2] = stream;
  c.v[3] = 0u;
  return md_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/** Draw `draw` of (seed, position, stream). */
MD_FN uint32_t md_philox_draw(uint64_t seed, int32_t position, uint32_t stream, uint32_t draw) {
  return md_philox_block(seed, position, stream, draw >> 2).v[draw & 3u];
}

/** A uint32 as a float in [0, 1): its top 24 bits times 2^-24 (exact). */
MD_FN float md_uniform01(uint32_t x) { return (float)(x >> 8) * 5.9604644775390625e-8f; }

/**
 * A uint32 as a float in the open interval (0, 1): (2 * (top 23 bits) + 1) * 2^-24, exact, from 2^-24 to
 * 1 - 2^-24, so log(u) and log(-log(u)) are finite: the form Gumbel noise takes (md_sampling.h).
 */
MD_FN float md_uniform_open01(uint32_t x) { return (float)((x >> 9) * 2u + 1u) * 5.9604644775390625e-8f; }
