// Hyperparameters of a LLaMA-family model, read from a GGUF file's
// `<arch>.*` metadata (LLaMA-2/3, Mistral and SmolLM2 are "llama"; Qwen2 is
// "qwen2"; see arch.h).
#ifndef SPIKESERVE_RUNTIME_MODEL_MODEL_CONFIG_H_
#define SPIKESERVE_RUNTIME_MODEL_MODEL_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/gguf/gguf_reader.h"

namespace spikeserve {

struct ModelConfig {
  std::string architecture;  // "llama" or "qwen2" (arch.h)
  std::string name;          // general.name, informational
  int n_layers = 0;
  int hidden = 0;      // embedding width (d_model)
  int ffn = 0;         // SwiGLU inner width
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // key/value heads (GQA when < n_heads)
  int head_dim = 0;    // per-head width of q, k and v
  int rope_dims = 0;   // leading dims of each head that RoPE rotates
  float rope_base = 10000.f;
  // RoPE angle of frequency i at position p (as llama.cpp computes it):
  //   rope_freq_scale * (p * rope_base^(-2i/rope_dims)) / factor[i]
  // freq_scale is 1 / rope.scaling.factor for "linear" scaling; the factors
  // (rope_freqs.weight, [rope_dims / 2]) are LLaMA 3.1's "llama3" scaling,
  // empty when absent.
  float rope_freq_scale = 1.f;
  std::vector<float> rope_freq_factors;
  bool rope_neox = false;  // pairs (i, i + dims/2) instead of (2i, 2i+1)
  bool qkv_bias = false;   // attn_q/k/v.bias tensors
  // Mistral's attention window (0: none). The served context is capped at
  // it, so that no position ever attends past the window: exact.
  int sliding_window = 0;
  float rms_eps = 1e-5f;
  int context_length = 0;  // trained context, the server's maximum
  int vocab_size = 0;
  bool tied_output = false;  // lm_head shares token_embd

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  int group_size() const { return n_heads / n_kv_heads; }
};

// Reads and validates the config. `vocab_size` comes from the token list
// length when llama.vocab_size is absent. Errors name the key.
absl::StatusOr<ModelConfig> ReadModelConfig(const GgufFile& file);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_MODEL_MODEL_CONFIG_H_
