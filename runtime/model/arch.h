// The model architectures the runtime runs, as data (in the spirit of
// llama.cpp's llama-arch.cpp): what differs between LLaMA-family
// architectures is a few switches, not a forward pass of its own.
#ifndef SPIKESERVE_RUNTIME_MODEL_ARCH_H_
#define SPIKESERVE_RUNTIME_MODEL_ARCH_H_

#include <string>

#include "absl/strings/string_view.h"

namespace spikeserve {

struct ArchInfo {
  const char* name;  // general.architecture; also the metadata key prefix
  // attn_q/k/v.bias tensors (Qwen2).
  bool qkv_bias;
  // RoPE rotates pairs (i, i + dims/2) ("NeoX" order, Qwen2's checkpoints)
  // instead of adjacent pairs (2i, 2i+1): llama.cpp's converter permutes
  // LLaMA's q/k rows into the adjacent order but leaves Qwen2's as trained.
  bool rope_neox;
};

// nullptr for an architecture the runtime does not run.
const ArchInfo* FindArch(absl::string_view name);
// "llama, qwen2" (messages).
std::string SupportedArchNames();

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_MODEL_ARCH_H_
