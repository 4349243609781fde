// The QFeP prefix (method.md §5): a few tokens run once through the
// unquantized model at load; their FP32 KV cache holds the activation spikes
// and is shared read-only by every sequence of every session. Real tokens
// start at position length().
#ifndef SPIKESERVE_RUNTIME_MODEL_SHARED_PREFIX_H_
#define SPIKESERVE_RUNTIME_MODEL_SHARED_PREFIX_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/kv_cache.h"
#include "runtime/model/model.h"

namespace spikeserve {

// Owns one reference to each of its blocks (pinned: never evicted while
// this object lives). Engine-thread only, like the pool.
class SharedPrefix {
 public:
  // Runs `tokens` with every site in FP32 into fresh blocks of `pool`.
  static absl::StatusOr<std::unique_ptr<SharedPrefix>> Compute(
      const Model& model, KvPool* pool, std::vector<int32_t> tokens);
  ~SharedPrefix();
  SharedPrefix(const SharedPrefix&) = delete;
  SharedPrefix& operator=(const SharedPrefix&) = delete;

  // Makes an empty sequence start after the prefix (references, no copy).
  absl::Status AttachTo(SequenceKv* seq) const;

  int length() const { return int(tokens_.size()); }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  const std::vector<int>& blocks() const { return blocks_; }

 private:
  SharedPrefix(KvPool* pool, std::vector<int32_t> tokens)
      : pool_(pool), tokens_(std::move(tokens)) {}
  KvPool* pool_;
  std::vector<int32_t> tokens_;
  std::vector<int> blocks_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_MODEL_SHARED_PREFIX_H_
