// Paged KV cache: a pool of fixed-size, refcounted blocks, and per-sequence
// block tables over it.
//
// A block holds `block_tokens` consecutive positions of one sequence for
// every layer: per layer, K (after RoPE) as [kv_dim][block_tokens] floats,
// dimension-major, then V as [block_tokens][kv_dim]. K is stored transposed
// so that attention scores run along positions (one vector of positions
// per dimension, a plain FMA chain over the dimensions per score: the same
// arithmetic for one query row or a tile of them, attention.h).
// Blocks are refcounted so that full blocks can be shared read-only by many
// sequences (the QFeP prefix, cached prompt prefixes).
//
// The pool holds FP32 (the default) or BF16 (opt-in, half the bytes:
// values rounded to nearest even when written, widened exactly when read).
#ifndef SPIKESERVE_RUNTIME_MODEL_KV_CACHE_H_
#define SPIKESERVE_RUNTIME_MODEL_KV_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace spikeserve {

// Owns the KV memory. Not thread-safe: used only by the thread that runs the
// model (the engine thread).
class KvPool {
 public:
  struct Options {
    int n_layers = 0;
    int kv_dim = 0;  // n_kv_heads * head_dim
    int block_tokens = 16;
    int num_blocks = 0;
    bool bf16 = false;  // store K and V as bfloat16
  };
  static absl::StatusOr<std::unique_ptr<KvPool>> Create(const Options& o);

  int num_blocks() const { return options_.num_blocks; }
  int block_tokens() const { return options_.block_tokens; }
  int kv_dim() const { return options_.kv_dim; }
  int n_layers() const { return options_.n_layers; }
  int free_blocks() const { return static_cast<int>(free_.size()); }
  int used_blocks() const { return num_blocks() - free_blocks(); }
  size_t bytes() const { return storage_bytes_; }
  bool bf16() const { return options_.bf16; }
  // Bytes one position takes in every layer (K and V).
  size_t bytes_per_token() const {
    return size_t(options_.n_layers) * 2 * options_.kv_dim *
           (options_.bf16 ? 2 : 4);
  }

  // A fresh block with refcount 1; ResourceExhausted when none is free.
  absl::StatusOr<int> Allocate();
  void Ref(int block);
  // Returns the block to the free list when its count reaches zero.
  void Unref(int block);
  int refcount(int block) const { return refs_[block]; }

  // K of layer `layer` in `block`: [kv_dim][block_tokens] (transposed).
  // V: [block_tokens][kv_dim] rows. FP32 pools: k, v; BF16 pools: k16, v16.
  float* k(int block, int layer) {
    return reinterpret_cast<float*>(data(block, layer, 0));
  }
  float* v(int block, int layer) {
    return reinterpret_cast<float*>(data(block, layer, 1));
  }
  const float* k(int block, int layer) const {
    return const_cast<KvPool*>(this)->k(block, layer);
  }
  const float* v(int block, int layer) const {
    return const_cast<KvPool*>(this)->v(block, layer);
  }
  uint16_t* k16(int block, int layer) {
    return reinterpret_cast<uint16_t*>(data(block, layer, 0));
  }
  uint16_t* v16(int block, int layer) {
    return reinterpret_cast<uint16_t*>(data(block, layer, 1));
  }
  const uint16_t* k16(int block, int layer) const {
    return const_cast<KvPool*>(this)->k16(block, layer);
  }
  const uint16_t* v16(int block, int layer) const {
    return const_cast<KvPool*>(this)->v16(block, layer);
  }

 private:
  explicit KvPool(const Options& o);
  uint8_t* data(int block, int layer, int kv) {
    return storage_.get() +
           ((size_t(block) * options_.n_layers + layer) * 2 + kv) * row_bytes_;
  }

  Options options_;
  size_t row_bytes_;  // block_tokens * kv_dim elements
  // Anonymous mapping: zero pages that become resident only when a block is
  // first written, so an idle server does not pay for its whole pool.
  struct Unmap {
    size_t bytes;
    void operator()(uint8_t* p) const;
  };
  size_t storage_bytes_;
  std::unique_ptr<uint8_t, Unmap> storage_;
  std::vector<int> refs_;
  std::vector<int> free_;  // LIFO: recently freed blocks are cache-warm
};

// The KV state of one sequence: an optional shared, read-only prefix (whole
// blocks plus a partial last block, e.g. the QFeP prefix of P tokens), then
// the sequence's own blocks. Position p < prefix_len lives in the prefix;
// position p >= prefix_len in own block (p - prefix_len) / block_tokens.
// Owned by the engine thread; releases its references on destruction.
class SequenceKv {
 public:
  explicit SequenceKv(KvPool* pool) : pool_(pool) {}
  ~SequenceKv() { Release(); }
  SequenceKv(const SequenceKv&) = delete;
  SequenceKv& operator=(const SequenceKv&) = delete;

  // Attaches a shared prefix of `tokens` positions stored in `blocks` (takes
  // a reference on each). Only valid on an empty sequence.
  absl::Status AttachPrefix(absl::Span<const int> blocks, int tokens);
  // Appends shared full blocks after the current length (prefix-cache reuse;
  // takes a reference on each). The length must be at an own-block boundary.
  absl::Status AppendSharedBlocks(absl::Span<const int> blocks);

  // Makes room for `total_tokens` positions, allocating own blocks. On
  // ResourceExhausted nothing is allocated.
  absl::Status Reserve(int total_tokens);
  // The own blocks Reserve(total_tokens) would allocate.
  int MissingBlocks(int total_tokens) const;
  // Capacity in positions with the blocks held now.
  int capacity() const;

  int length() const { return length_; }
  void set_length(int n) { length_ = n; }
  int prefix_length() const { return prefix_len_; }
  const std::vector<int>& own_blocks() const { return blocks_; }
  const std::vector<int>& prefix_blocks() const { return prefix_blocks_; }

  // K of position `pos` in layer `layer`: written from / read into a
  // [kv_dim] row (the pool stores K transposed).
  void WriteK(int layer, int pos, const float* k);
  void ReadK(int layer, int pos, float* k) const;
  // V of position `pos` from / into a [kv_dim] row (any pool).
  void WriteV(int layer, int pos, const float* v);
  void ReadV(int layer, int pos, float* v) const;
  // V row of position `pos`: [kv_dim] floats in an FP32 pool.
  float* v_row(int layer, int pos);
  const float* v_row(int layer, int pos) const {
    return const_cast<SequenceKv*>(this)->v_row(layer, pos);
  }

  // Positions [0, n_pos) as runs that lie in one block each, in order.
  struct Segment {
    int block;  // pool block
    int slot0;  // first slot of the run in the block
    int pos0;   // its position in the sequence
    int n;      // positions in the run
  };
  void Segments(int n_pos, std::vector<Segment>* out) const;
  const KvPool& pool() const { return *pool_; }

  // Drops every reference and resets to empty.
  void Release();

 private:
  // (block, slot) of a position.
  std::pair<int, int> Locate(int pos) const;

  KvPool* pool_;
  std::vector<int> prefix_blocks_;
  int prefix_len_ = 0;
  std::vector<int> blocks_;
  int length_ = 0;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_MODEL_KV_CACHE_H_
