#include "runtime/model/kv_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/gguf/dequantize.h"
#include "runtime/linear/bf16_linear.h"

namespace spikeserve {

absl::StatusOr<std::unique_ptr<KvPool>> KvPool::Create(const Options& o) {
  if (o.n_layers <= 0 || o.kv_dim <= 0 || o.block_tokens <= 0 ||
      o.num_blocks <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv pool: layers, kv_dim, block_tokens and num_blocks must be "
        "positive (got ",
        o.n_layers, ", ", o.kv_dim, ", ", o.block_tokens, ", ", o.num_blocks,
        ")"));
  }
  const double bytes = double(o.num_blocks) * o.n_layers * 2 * o.block_tokens *
                       o.kv_dim * (o.bf16 ? 2 : 4);
  if (bytes > double(uint64_t{1} << 40)) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv pool: ", bytes, " bytes requested"));
  }
  std::unique_ptr<KvPool> pool(new KvPool(o));
  if (pool->storage_ == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "kv pool: cannot map ", bytes, " bytes (", o.num_blocks, " blocks)"));
  }
  return pool;
}

KvPool::KvPool(const Options& o)
    : options_(o),
      row_bytes_(size_t(o.block_tokens) * o.kv_dim * (o.bf16 ? 2 : 4)),
      storage_bytes_(size_t(o.num_blocks) * o.n_layers * 2 * row_bytes_),
      storage_(nullptr, Unmap{storage_bytes_}),
      refs_(o.num_blocks, 0) {
  void* p = mmap(nullptr, storage_bytes_, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p != MAP_FAILED) storage_.reset(static_cast<uint8_t*>(p));
  free_.reserve(o.num_blocks);
  for (int b = o.num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

void KvPool::Unmap::operator()(uint8_t* p) const {
  if (p != nullptr) munmap(p, bytes);
}

absl::StatusOr<int> KvPool::Allocate() {
  if (free_.empty()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("kv pool: all ", num_blocks(), " blocks are in use"));
  }
  const int b = free_.back();
  free_.pop_back();
  refs_[b] = 1;
  return b;
}

void KvPool::Ref(int block) { ++refs_[block]; }

void KvPool::Unref(int block) {
  if (--refs_[block] == 0) free_.push_back(block);
}

absl::Status SequenceKv::AttachPrefix(absl::Span<const int> blocks,
                                      int tokens) {
  if (length_ != 0 || !prefix_blocks_.empty() || !blocks_.empty()) {
    return absl::FailedPreconditionError(
        "kv: a prefix can only be attached to an empty sequence");
  }
  const int bt = pool_->block_tokens();
  if (tokens <= 0 || int(blocks.size()) != (tokens + bt - 1) / bt) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv: prefix of ", tokens, " tokens needs ",
                     (tokens + bt - 1) / bt, " blocks, got ", blocks.size()));
  }
  for (int b : blocks) pool_->Ref(b);
  prefix_blocks_.assign(blocks.begin(), blocks.end());
  prefix_len_ = tokens;
  length_ = tokens;
  return absl::OkStatus();
}

absl::Status SequenceKv::AppendSharedBlocks(absl::Span<const int> blocks) {
  const int bt = pool_->block_tokens();
  const int own = length_ - prefix_len_;
  if (own % bt != 0 || int(blocks_.size()) * bt != own) {
    return absl::FailedPreconditionError(
        "kv: shared blocks must start at an own-block boundary");
  }
  for (int b : blocks) {
    pool_->Ref(b);
    blocks_.push_back(b);
  }
  length_ += int(blocks.size()) * bt;
  return absl::OkStatus();
}

int SequenceKv::capacity() const {
  return prefix_len_ + int(blocks_.size()) * pool_->block_tokens();
}

int SequenceKv::MissingBlocks(int total_tokens) const {
  const int bt = pool_->block_tokens();
  const int need_own = total_tokens - prefix_len_;
  const int need_blocks = need_own <= 0 ? 0 : (need_own + bt - 1) / bt;
  return std::max(0, need_blocks - int(blocks_.size()));
}

absl::Status SequenceKv::Reserve(int total_tokens) {
  const int missing = MissingBlocks(total_tokens);
  if (missing == 0) return absl::OkStatus();
  if (missing > pool_->free_blocks()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("kv: sequence needs ", missing, " more blocks, ",
                     pool_->free_blocks(), " free"));
  }
  for (int i = 0; i < missing; ++i) blocks_.push_back(*pool_->Allocate());
  return absl::OkStatus();
}

std::pair<int, int> SequenceKv::Locate(int pos) const {
  const int bt = pool_->block_tokens();
  if (pos < prefix_len_) return {prefix_blocks_[pos / bt], pos % bt};
  const int q = pos - prefix_len_;
  return {blocks_[q / bt], q % bt};
}

void SequenceKv::WriteK(int layer, int pos, const float* k) {
  auto [b, slot] = Locate(pos);
  const int bt = pool_->block_tokens();
  if (pool_->bf16()) {
    uint16_t* dst = pool_->k16(b, layer) + slot;
    for (int d = 0; d < pool_->kv_dim(); ++d) {
      dst[size_t(d) * bt] = FloatToBf16(k[d]);
    }
    return;
  }
  float* dst = pool_->k(b, layer) + slot;
  for (int d = 0; d < pool_->kv_dim(); ++d) dst[size_t(d) * bt] = k[d];
}

void SequenceKv::ReadK(int layer, int pos, float* k) const {
  auto [b, slot] = Locate(pos);
  const int bt = pool_->block_tokens();
  if (pool_->bf16()) {
    const uint16_t* src = pool_->k16(b, layer) + slot;
    for (int d = 0; d < pool_->kv_dim(); ++d) {
      k[d] = Bf16ToFloat(src[size_t(d) * bt]);
    }
    return;
  }
  const float* src = pool_->k(b, layer) + slot;
  for (int d = 0; d < pool_->kv_dim(); ++d) k[d] = src[size_t(d) * bt];
}

void SequenceKv::WriteV(int layer, int pos, const float* v) {
  auto [b, slot] = Locate(pos);
  const int kv_dim = pool_->kv_dim();
  if (pool_->bf16()) {
    uint16_t* dst = pool_->v16(b, layer) + size_t(slot) * kv_dim;
    for (int d = 0; d < kv_dim; ++d) dst[d] = FloatToBf16(v[d]);
    return;
  }
  std::memcpy(pool_->v(b, layer) + size_t(slot) * kv_dim, v,
              sizeof(float) * kv_dim);
}

void SequenceKv::ReadV(int layer, int pos, float* v) const {
  auto [b, slot] = Locate(pos);
  const int kv_dim = pool_->kv_dim();
  if (pool_->bf16()) {
    const uint16_t* src = pool_->v16(b, layer) + size_t(slot) * kv_dim;
    for (int d = 0; d < kv_dim; ++d) v[d] = Bf16ToFloat(src[d]);
    return;
  }
  std::memcpy(v, pool_->v(b, layer) + size_t(slot) * kv_dim,
              sizeof(float) * kv_dim);
}

void SequenceKv::Segments(int n_pos, std::vector<Segment>* out) const {
  out->clear();
  const int bt = pool_->block_tokens();
  for (int pos = 0; pos < n_pos;) {
    auto [b, slot] = Locate(pos);
    // A run ends at the block's end, or where the prefix's partial last
    // block hands over to the sequence's own blocks.
    int end = pos + (bt - slot);
    if (pos < prefix_len_) end = std::min(end, prefix_len_);
    end = std::min(end, n_pos);
    out->push_back({b, slot, pos, end - pos});
    pos = end;
  }
}

float* SequenceKv::v_row(int layer, int pos) {
  auto [b, slot] = Locate(pos);
  return pool_->v(b, layer) + size_t(slot) * pool_->kv_dim();
}

void SequenceKv::Release() {
  for (int b : prefix_blocks_) pool_->Unref(b);
  for (int b : blocks_) pool_->Unref(b);
  prefix_blocks_.clear();
  blocks_.clear();
  prefix_len_ = 0;
  length_ = 0;
}

}  // namespace spikeserve
