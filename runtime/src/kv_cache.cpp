#include "kv_cache.h"

#include <algorithm>
#include <cstdlib>

#include "error.h"

namespace md {

KvCache::KvCache(const KvCacheShape& s) : shape_(s) {
  if (s.num_layers < 1 || s.num_kv_heads < 1 || s.head_dim < 1 || s.page_size < 1 || s.num_pages < 1 ||
      s.num_slots < 1 || s.pages_per_seq < 1)
    throw Error("kv cache: every dimension must be positive (layers " + std::to_string(s.num_layers) + ", pages " +
                std::to_string(s.num_pages) + ", slots " + std::to_string(s.num_slots) + ", page size " +
                std::to_string(s.page_size) + ")");
  size_t total = layer_bytes() * size_t(s.num_layers);
  // calloc: a fresh cache reads as zeros, and large pools get lazily-mapped zero pages instead of a memset.
  k_.reset(static_cast<uint8_t*>(std::calloc(total, 1)));
  v_.reset(static_cast<uint8_t*>(std::calloc(total, 1)));
  if (!k_ || !v_) {
    throw Error("kv cache: cannot allocate " + std::to_string(2 * total >> 20) + " MiB for " +
                std::to_string(s.num_pages) + " pages (lower kv_pages)");
  }
  page_table_.assign(size_t(s.num_slots) * size_t(s.pages_per_seq), 0);
  owned_.resize(size_t(s.num_slots));
  for (int p = s.num_pages - 1; p >= 0; --p) free_.push_back(p);
}

void KvCache::Free::operator()(uint8_t* p) const { std::free(p); }

size_t KvCache::layer_bytes() const {
  return size_t(shape_.num_pages) * size_t(shape_.page_size) * size_t(shape_.num_kv_heads) *
         size_t(shape_.head_dim) * dtype_size(shape_.dtype);
}

void KvCache::check_slot(int slot, const char* what) const {
  if (slot < 0 || slot >= shape_.num_slots)
    throw Error(std::string("kv cache ") + what + ": slot " + std::to_string(slot) + " outside [0, " +
                std::to_string(shape_.num_slots) + ")");
}

bool KvCache::reserve(int slot, int64_t tokens) {
  check_slot(slot, "reserve");
  if (tokens < 0) throw Error("kv cache reserve: negative length " + std::to_string(tokens));
  int need = pages_for(tokens);
  if (need > shape_.pages_per_seq)
    throw Error("kv cache reserve: " + std::to_string(tokens) + " positions need " + std::to_string(need) +
                " pages, more than a sequence may hold (" + std::to_string(shape_.pages_per_seq) + ")");
  auto& own = owned_[size_t(slot)];
  int more = need - int(own.size());
  if (more <= 0) return true;
  if (more > int(free_.size())) return false;
  for (int i = 0; i < more; ++i) {
    int32_t page = free_.back();
    free_.pop_back();
    page_table_[size_t(slot) * size_t(shape_.pages_per_seq) + own.size()] = page;
    own.push_back(page);
  }
  return true;
}

void KvCache::release(int slot) {
  check_slot(slot, "release");
  auto& own = owned_[size_t(slot)];
  // Pushed in reverse so a slot that re-reserves gets its pages back in the same order.
  for (auto it = own.rbegin(); it != own.rend(); ++it) free_.push_back(*it);
  own.clear();
  std::fill_n(page_table_.begin() + ptrdiff_t(size_t(slot) * size_t(shape_.pages_per_seq)), shape_.pages_per_seq, 0);
}

}  // namespace md
