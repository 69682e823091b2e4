#include "kv_cache.h"

#include <algorithm>
#include <cstdlib>

#include "error.h"

namespace md {

KvCache::KvCache(const KvCacheShape& s, Device& device) : shape_(s), device_(&device) {
  if (s.num_layers < 1 || s.num_kv_heads < 1 || s.head_dim < 1 || s.page_size < 1 || s.num_pages < 1 ||
      s.num_slots < 1 || s.pages_per_seq < 1)
    throw Error("kv cache: every dimension must be positive (layers " + std::to_string(s.num_layers) + ", pages " +
                std::to_string(s.num_pages) + ", slots " + std::to_string(s.num_slots) + ", page size " +
                std::to_string(s.page_size) + ")");
  size_t total = layer_bytes() * size_t(s.num_layers);
  const std::string what = "the KV cache's " + std::to_string(s.num_pages) + " pages (lower kv_pages)";
  // Zeroed: a fresh cache reads as zeros.
  k_ = DeviceBuffer<uint8_t>(device, total, "K of " + what, true);
  v_ = DeviceBuffer<uint8_t>(device, total, "V of " + what, true);
  page_table_.assign(size_t(s.num_slots) * size_t(s.pages_per_seq), 0);
  device_table_ = DeviceBuffer<int32_t>(device, page_table_.size(), "the KV page table");
  owned_.resize(size_t(s.num_slots));
  for (int p = s.num_pages - 1; p >= 0; --p) free_.push_back(p);
}

const int32_t* KvCache::device_page_table() {
  if (table_dirty_) device_->upload(device_table_.get(), page_table_.data(), page_table_.size() * sizeof(int32_t));
  table_dirty_ = false;
  return device_table_.get();
}

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
  table_dirty_ = true;
  return true;
}

void KvCache::release(int slot) {
  check_slot(slot, "release");
  auto& own = owned_[size_t(slot)];
  // Pushed in reverse so a slot that re-reserves gets its pages back in the same order.
  for (auto it = own.rbegin(); it != own.rend(); ++it) free_.push_back(*it);
  own.clear();
  table_dirty_ = true;
  std::fill_n(page_table_.begin() + ptrdiff_t(size_t(slot) * size_t(shape_.pages_per_seq)), shape_.pages_per_seq, 0);
}

}  // namespace md
