// FP32 weights of a LLaMA-family model, dequantized from GGUF at load and
// held in ordinary anonymous memory (not the mmap: page-out of cold mapped
// weights made decode slow and unsteady on these VMs, see toolchain.md).
#ifndef SPIKESERVE_RUNTIME_MODEL_WEIGHTS_H_
#define SPIKESERVE_RUNTIME_MODEL_WEIGHTS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "runtime/gguf/gguf_reader.h"
#include "runtime/model/model_config.h"

namespace spikeserve {

// Row-major FP32 matrix [rows][cols]. For a linear layer y = x·Wᵀ,
// rows = output features and cols = input features (GGUF's own layout).
struct Matrix {
  int rows = 0;
  int cols = 0;
  std::vector<float> data;  // rows * cols

  const float* row(int r) const { return data.data() + size_t(r) * cols; }
};

struct LayerWeights {
  std::vector<float> attn_norm;  // [hidden] RMSNorm gain before attention
  // [q_dim + 2 * kv_dim][hidden]: rows of Wq, then Wk, then Wv. Fused
  // because q, k and v read the same input (the `qkv` site).
  Matrix wqkv;
  Matrix wo;                    // [hidden][q_dim]
  std::vector<float> ffn_norm;  // [hidden] RMSNorm gain before the FFN
  // [2 * ffn][hidden]: rows of Wgate, then Wup (the `gate_up` site).
  Matrix w_gate_up;
  Matrix w_down;  // [hidden][ffn]
};

struct ModelWeights {
  Matrix token_embd;                 // [vocab][hidden]
  std::vector<LayerWeights> layers;  // [n_layers]
  std::vector<float> output_norm;    // [hidden]
  Matrix output;                     // [vocab][hidden]; empty when tied

  const Matrix& lm_head() const { return output.rows ? output : token_embd; }
};

// Loads and checks every tensor's presence, type and shape; errors name the
// tensor and what was expected.
absl::StatusOr<ModelWeights> LoadWeights(const GgufFile& file,
                                         const ModelConfig& config);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_MODEL_WEIGHTS_H_
