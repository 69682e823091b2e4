// Adaptive gamma: how many tokens the next speculative round drafts, from what earlier rounds measured.
//
// MagicDec's cost model: a round that drafts g tokens per sequence costs g draft steps plus one
// verification of g + 1 rows per sequence, and emits (1 - a^(g+1)) / (1 - a) tokens per sequence when each
// drafted token is accepted with probability a (independently, until the first rejection). The best g grows
// as drafting gets cheaper relative to verifying (large batches, long contexts: the draft's KV budget is
// fixed, the target's is the whole cache) and as acceptance rises. The tuner keeps
// - a: an exponentially weighted count of accepted drafts over tested drafts (a round that accepts k of g
//   tested k + 1 of them, or g when it accepted all), with one accept and one reject as a prior;
// - per batch size, an exponentially weighted time of one draft step and of the verification at each gamma
//   it has run; a gamma not run yet at that size is interpolated linearly between the nearest run ones and
//   held flat beyond them (an optimistic guess for larger gammas, so they get tried and then measured);
//   a batch size not run yet borrows the nearest one's times.
// and picks the g with the most expected tokens per second among the gammas up to the largest one run,
// or the next one (at most gamma_max) when even its flat guess beats that by kExploreMargin: exploration
// climbs a gamma at a time, so a compute-bound verification costs one round at the next gamma to learn
// about, never a round at gamma_max, and none at all where the next gamma could gain next to nothing.
// Any gamma is lossless (the kernels are row-invariant), so the choice only moves throughput.
#pragma once
#include <cstdint>
#include <map>
#include <vector>

namespace md {

class GammaTuner {
 public:
  explicit GammaTuner(int gamma_max);

  /** The gamma for a round of `seqs` sequences: 1 with nothing measured yet, then as the head comment says. */
  int choose(int seqs) const;
  /** Records a round of `seqs` sequences that drafted `gamma` tokens each and accepted accepted[0..seqs). */
  void record(int seqs, int gamma, const int32_t* accepted, double draft_s, double verify_s);

  /** The per-token acceptance estimate a, in (0, 1). */
  double acceptance() const { return (accepts_ + 1) / (tests_ + 2); }
  /** Tokens a sequence is expected to emit in a round that drafts g at per-token acceptance a. */
  static double expected_tokens(double a, int g);
  /** Estimated seconds of a round of `seqs` sequences drafting g; negative when nothing is measured. */
  double round_seconds(int seqs, int g) const;
  int gamma_max() const { return gamma_max_; }

  /** Per round, the acceptance counts decay by this factor (a memory of about ten rounds)... */
  static constexpr double kAcceptanceDecay = 0.9;
  /** ...and a measured time moves its average by this fraction of the difference. */
  static constexpr double kTimeWeight = 0.25;
  /** An unmeasured gamma is tried only if its flat guess beats the best estimate by this fraction. */
  static constexpr double kExploreMargin = 0.02;

 private:
  struct Costs {
    double draft_step = 0;       // seconds per draft step
    std::vector<double> verify;  // [g] seconds per verification at gamma g; < 0: not run
  };
  const Costs* costs_for(int seqs) const;

  int gamma_max_;
  double accepts_ = 0, tests_ = 0;
  std::map<int, Costs> costs_;  // by batch size
};

}  // namespace md
