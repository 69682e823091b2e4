#include "gamma.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>

#include "error.h"

namespace md {

GammaTuner::GammaTuner(int gamma_max) : gamma_max_(gamma_max) {
  if (gamma_max < 1) throw Error("GammaTuner: gamma_max must be at least 1, got " + std::to_string(gamma_max));
}

double GammaTuner::expected_tokens(double a, int g) {
  // (1 - a^(g+1)) / (1 - a) = 1 + a + ... + a^g, summed directly: exact at a = 1 and stable near it.
  double sum = 0, term = 1;
  for (int i = 0; i <= g; ++i, term *= a) sum += term;
  return sum;
}

const GammaTuner::Costs* GammaTuner::costs_for(int seqs) const {
  if (costs_.empty()) return nullptr;
  auto above = costs_.lower_bound(seqs);
  if (above != costs_.end() && above->first == seqs) return &above->second;
  if (above == costs_.begin()) return &above->second;
  auto below = std::prev(above);
  if (above == costs_.end()) return &below->second;
  return seqs - below->first <= above->first - seqs ? &below->second : &above->second;
}

double GammaTuner::round_seconds(int seqs, int g) const {
  const Costs* c = costs_for(seqs);
  if (!c || g < 1 || g > gamma_max_) return -1;
  int lo = g, hi = g;
  while (lo >= 1 && c->verify[size_t(lo)] < 0) --lo;
  while (hi <= gamma_max_ && c->verify[size_t(hi)] < 0) ++hi;
  double verify;
  if (lo >= 1 && hi <= gamma_max_)
    verify = lo == hi ? c->verify[size_t(g)]
                      : c->verify[size_t(lo)] + (c->verify[size_t(hi)] - c->verify[size_t(lo)]) * (g - lo) / double(hi - lo);
  else if (lo >= 1)
    verify = c->verify[size_t(lo)];
  else
    verify = c->verify[size_t(hi)];  // some gamma was run: record() measures one with every draft step
  return g * c->draft_step + verify;
}

int GammaTuner::choose(int seqs) const {
  const Costs* c = costs_for(seqs);
  if (!c) return 1;
  int run = 1;  // the largest gamma run at this size
  for (int g = 1; g <= gamma_max_; ++g)
    if (c->verify[size_t(g)] >= 0) run = g;
  const double a = acceptance();
  const auto rate = [&](int g) {
    const double t = round_seconds(seqs, g);
    // A round measured at zero seconds (a coarse clock) says nothing about the ratio: prefer the larger gamma.
    return t > 0 ? expected_tokens(a, g) / t : INFINITY;
  };
  int best = 1;
  double best_rate = -1;
  for (int g = 1; g <= run; ++g) {
    const double r = rate(g);
    if (r >= best_rate) {
      best_rate = r;
      best = g;
    }
  }
  // Exploration climbs one gamma past the largest one run, and only where even the flat guess (the most
  // that gamma could give) beats the best estimate by kExploreMargin: jumping to gamma_max on the flat
  // guess, or trying a gamma that could gain a fraction of a percent, costs a dear round where
  // verification is compute-bound.
  if (run < gamma_max_) {
    const double r = rate(run + 1);
    if (r == INFINITY || r > best_rate * (1 + kExploreMargin)) best = run + 1;
  }
  return best;
}

void GammaTuner::record(int seqs, int gamma, const int32_t* accepted, double draft_s, double verify_s) {
  if (seqs < 1 || gamma < 1 || gamma > gamma_max_) return;
  double accepts = 0, tests = 0;
  for (int i = 0; i < seqs; ++i) {
    accepts += accepted[i];
    tests += accepted[i] + (accepted[i] < gamma ? 1 : 0);  // the first rejected draft was tested too
  }
  accepts_ = accepts_ * kAcceptanceDecay + accepts;
  tests_ = tests_ * kAcceptanceDecay + tests;

  auto [it, fresh] = costs_.try_emplace(seqs);
  Costs& c = it->second;
  if (fresh) c.verify.assign(size_t(gamma_max_) + 1, -1.0);
  const double step = draft_s / gamma;
  c.draft_step = fresh ? step : c.draft_step + kTimeWeight * (step - c.draft_step);
  double& v = c.verify[size_t(gamma)];
  v = v < 0 ? verify_s : v + kTimeWeight * (verify_s - v);
}

}  // namespace md
