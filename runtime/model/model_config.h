// Hyperparameters of a LLaMA-family model, read from a GGUF file's `llama.*`
// metadata (LLaMA-2/3, Mistral and SmolLM2 all use architecture "llama").
#ifndef SPIKESERVE_RUNTIME_MODEL_MODEL_CONFIG_H_
#define SPIKESERVE_RUNTIME_MODEL_MODEL_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "runtime/gguf/gguf_reader.h"

namespace spikeserve {

struct ModelConfig {
  std::string architecture;  // "llama"
  std::string name;          // general.name, informational
  int n_layers = 0;
  int hidden = 0;      // embedding width (d_model)
  int ffn = 0;         // SwiGLU inner width
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // key/value heads (GQA when < n_heads)
  int head_dim = 0;    // per-head width of q, k and v
  int rope_dims = 0;   // leading dims of each head that RoPE rotates
  float rope_base = 10000.f;
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
