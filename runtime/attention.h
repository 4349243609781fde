// Causal grouped-query attention of one sequence's new rows over its paged
// KV cache, FP32.
#ifndef SPIKESERVE_RUNTIME_ATTENTION_H_
#define SPIKESERVE_RUNTIME_ATTENTION_H_

#include <vector>

#include "runtime/kv_cache.h"
#include "runtime/model_config.h"

namespace spikeserve {

// Reusable buffers, so steady-state decode does not allocate.
struct AttentionScratch {
  std::vector<float> k, v;    // gathered [n_pos][kv_dim] (prefill)
  std::vector<float> scores;  // [rows][n_pos]
  std::vector<const float*> k_rows, v_rows;  // [n_pos] in-block rows (decode)
};

// q:   [n_new][q_dim], queries of positions start .. start + n_new - 1
//      (RoPE applied); their K/V must already be in `kv` for `layer`.
// out: [n_new][q_dim]; head h reads KV head h / group_size.
// Row i attends to positions 0 .. start + i, scaled by 1/sqrt(head_dim).
void CausalAttention(const ModelConfig& c, const SequenceKv& kv, int layer,
                     const float* q, int n_new, int start, float* out,
                     AttentionScratch* scratch);

// Straightforward triple loop in double, for tests.
void ReferenceAttention(const ModelConfig& c, const SequenceKv& kv, int layer,
                        const float* q, int n_new, int start, float* out);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_ATTENTION_H_
