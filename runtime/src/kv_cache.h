// The paged KV cache shared by the target and the draft pass (docs/ARCHITECTURE.md, invariant 2). A fixed pool of pages
// per layer; a page index means the same page in every layer, so one page table per slot serves them all.
// Layout per layer (codegen/abi.ts): [num_pages, num_kv_heads, page_size, head_dim] in storage dtype.
// The pools live in device memory; the page table is kept on the host (admission edits it) and mirrored
// to the device before a forward pass reads it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "device.h"
#include "dtype.h"

namespace md {

struct KvCacheShape {
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int page_size = 0;
  int num_pages = 0;
  int num_slots = 0;
  int pages_per_seq = 0;  // the page table's row stride: ceil(max_seq / page_size)
  DType dtype = DType::F32;
};

class KvCache {
 public:
  /** Pools in `device`'s memory. Throws md::Error on a bad shape or when the pool cannot be allocated. */
  KvCache(const KvCacheShape& shape, Device& device);

  const KvCacheShape& shape() const { return shape_; }
  void* k_layer(int layer) { return k_.get() + layer_bytes() * size_t(layer); }
  void* v_layer(int layer) { return v_.get() + layer_bytes() * size_t(layer); }
  /** [num_slots, pages_per_seq] on the host; entries past a slot's allocated pages are 0 and never read. */
  const int32_t* page_table() const { return page_table_.data(); }
  /** The device's copy of page_table(), uploaded first (in stream order) if reserve/release changed it. */
  const int32_t* device_page_table();

  /** Pages needed to hold `tokens` positions. */
  int pages_for(int64_t tokens) const { return int((tokens + shape_.page_size - 1) / shape_.page_size); }
  int free_pages() const { return int(free_.size()); }
  int slot_pages(int slot) const { return int(owned_.at(size_t(slot)).size()); }

  /**
   * Ensures `slot` has pages for positions [0, tokens). All or nothing: on failure nothing changes and the
   * return is false (out of pages). Throws md::Error for a bad slot or more than pages_per_seq pages.
   */
  bool reserve(int slot, int64_t tokens);
  /** Returns all of `slot`'s pages to the pool. */
  void release(int slot);

 private:
  size_t layer_bytes() const;
  void check_slot(int slot, const char* what) const;

  KvCacheShape shape_;
  Device* device_;
  DeviceBuffer<uint8_t> k_, v_;
  std::vector<int32_t> page_table_;
  DeviceBuffer<int32_t> device_table_;
  bool table_dirty_ = true;
  std::vector<int32_t> free_;                 // a stack of free page indices
  std::vector<std::vector<int32_t>> owned_;   // per slot, in logical order
};

}  // namespace md
