// Causal grouped-query attention of one sequence's new rows over its paged
// KV cache, FP32.
#ifndef SPIKESERVE_RUNTIME_ATTENTION_H_
#define SPIKESERVE_RUNTIME_ATTENTION_H_

#include <vector>

#include "absl/types/span.h"
#include "runtime/kv_cache.h"
#include "runtime/model_config.h"

namespace spikeserve {

// Reusable buffers, so steady-state decode does not allocate.
struct AttentionScratch {
  std::vector<float> k, v;    // gathered [n_pos][kv_dim] (prefill)
  std::vector<float> scores;  // [rows][n_pos]
  // In-block row addresses (decode): [Σ n_pos] over a batch's queries.
  std::vector<const float*> k_rows, v_rows;
  // Per decode query i of a batch, its first row address, score and
  // (row, head) pair: [queries + 1] prefix sums.
  std::vector<size_t> row0, score0;
  std::vector<int> pair0;
};

// Rows below this count attend by per-row dot products (DecodeAttention);
// from it on, by per-head GEMMs: below it, launching 2 x n_heads small
// GEMMs costs more than the dot products (decode and short chunks).
inline constexpr int kAttentionGemmMinRows = 8;

// The new rows of one sequence in a decode step (n_new <
// kAttentionGemmMinRows), laid out as for CausalAttention.
struct DecodeQuery {
  const SequenceKv* kv;
  const float* q;  // [n_new][q_dim]
  int n_new, start;
  float* out;  // [n_new][q_dim]
};
// CausalAttention of several sequences' decode rows in one pass: their
// (row, head) pairs are split over the OpenMP team together once the whole
// batch's work pays for the fork, where one sequence alone would not.
void DecodeAttention(const ModelConfig& c, int layer,
                     absl::Span<const DecodeQuery> queries,
                     AttentionScratch* scratch);

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
