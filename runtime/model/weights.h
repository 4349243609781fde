// The weights of a LLaMA-family model: where they are (WeightSources: GGUF
// tensors in the mapping, read row by row) and the FP32 copies that FP32
// kernels read (ModelWeights). Serving copies are made by the kernels from
// the sources (linear/weight_rows.h); they live in ordinary anonymous memory
// (not the mmap: page-out of cold mapped weights made decode slow and
// unsteady on these VMs, see toolchain.md).
#ifndef SPIKESERVE_RUNTIME_MODEL_WEIGHTS_H_
#define SPIKESERVE_RUNTIME_MODEL_WEIGHTS_H_

#include <array>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/gguf/gguf_reader.h"
#include "runtime/linear/weight_rows.h"
#include "runtime/model/model_config.h"
#include "runtime/model/site.h"

namespace spikeserve {

struct LayerWeights {
  std::vector<float> attn_norm;  // [hidden] RMSNorm gain before attention
  // [q_dim + 2 * kv_dim][hidden]: rows of Wq, then Wk, then Wv. Fused
  // because q, k and v read the same input (the `qkv` site).
  Matrix wqkv;
  // [q_dim + 2 * kv_dim]: q, k and v biases (Qwen2); empty when none.
  std::vector<float> bqkv;
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

// Every matrix of a model as rows on demand.
struct WeightSources {
  std::unique_ptr<WeightRows> token_embd;  // [vocab][hidden]
  std::unique_ptr<WeightRows> output;      // [vocab][hidden]; null when tied
  // [layer][site]: the site's matrix (q, k, v and gate, up stacked).
  std::vector<std::array<std::unique_ptr<WeightRows>, kNumSites>> sites;

  const WeightRows& lm_head() const { return output ? *output : *token_embd; }
};

// Checks every tensor's presence, type and shape (errors name the tensor and
// what was expected), reads the norm gains into `norms` (its matrices stay
// empty) and returns the matrices as sources in the mapping of `file`, which
// must outlive them, except token_embd: copied as stored (a Q4_K embedding
// stays Q4_K, a few bytes per row; the embedding reads a few rows a step).
absl::StatusOr<WeightSources> ViewWeights(const GgufFile& file,
                                          const ModelConfig& config,
                                          ModelWeights* norms);

// Sources over the FP32 matrices of `w`, which must outlive them.
WeightSources MatrixSources(const ModelWeights& w);

// The whole model as FP32 (tests and fixtures that edit weights).
absl::StatusOr<ModelWeights> LoadWeights(const GgufFile& file,
                                         const ModelConfig& config);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_MODEL_WEIGHTS_H_
