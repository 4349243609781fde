// A loaded LLaMA-family model and its batched forward pass.
//
// The Model is immutable after Load (weights, config, linear kernels); all
// per-sequence state lives in SequenceKv objects owned by the caller, in the
// spirit of gemma.cpp's Gemma/KVCache and llama.cpp's model/context split.
#ifndef SPIKESERVE_RUNTIME_MODEL_H_
#define SPIKESERVE_RUNTIME_MODEL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/gguf_reader.h"
#include "runtime/kv_cache.h"
#include "runtime/linear.h"
#include "runtime/model_config.h"
#include "runtime/weights.h"

namespace spikeserve {

// One sequence's share of a batch: the new tokens to run, appended after the
// positions already in `kv`.
struct BatchEntry {
  SequenceKv* kv = nullptr;
  absl::Span<const int32_t> tokens;
  // Logits for every new token (scoring, goldens), else for the last only.
  bool all_logits = false;
};

class Model {
 public:
  static absl::StatusOr<std::unique_ptr<Model>> Load(const GgufFile& file);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }

  // A KV pool shaped for this model.
  absl::StatusOr<std::unique_ptr<KvPool>> NewKvPool(int num_blocks,
                                                    int block_tokens = 16) const;

  // Runs every entry's new tokens through the model (all rows of the batch
  // share each linear layer call), writes their K/V into the entries'
  // caches and advances their lengths. `logits` receives, entry after entry,
  // one [vocab] row per requested position. Errors (bad token id, no KV
  // room, context overflow) leave every cache unchanged.
  // Not thread-safe per call's scratch: one caller at a time.
  absl::Status Forward(absl::Span<const BatchEntry> batch,
                       std::vector<float>* logits) const;

 private:
  Model() = default;

  struct LayerKernels {
    std::unique_ptr<Linear> qkv, o, gate_up, down;
  };

  ModelConfig config_;
  ModelWeights weights_;
  std::vector<LayerKernels> kernels_;
  std::unique_ptr<Linear> lm_head_;
};

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_MODEL_H_
