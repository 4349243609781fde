// Causal grouped-query attention of one sequence's new rows over its paged
// KV cache, FP32.
#ifndef SPIKESERVE_RUNTIME_MODEL_ATTENTION_H_
#define SPIKESERVE_RUNTIME_MODEL_ATTENTION_H_

#include <vector>

#include "absl/types/span.h"
#include "runtime/model/attention_tile.h"
#include "runtime/model/kv_cache.h"
#include "runtime/model/model_config.h"

namespace spikeserve {

// Reusable buffers, so steady-state decode does not allocate.
struct AttentionScratch {
  // Per query: its KV runs, from seg0[i] (prefix sums, [queries + 1]).
  std::vector<SequenceKv::Segment> segments;
  std::vector<size_t> seg0;
  std::vector<SequenceKv::Segment> one;  // one query's runs
  // Work items: (query, first row, rows, first head, heads): up to
  // kAttentionTileRows rows of one head, or the heads of one KV group (up
  // to kAttentionTileRows) for one row.
  struct Item {
    int query, row0, rows, head, heads;
  };
  std::vector<Item> items;
};

// The new rows of one sequence: q [n_new][q_dim] (RoPE applied) of
// positions start .. start + n_new - 1, whose K/V are already in `kv`;
// out [n_new][q_dim]. Row i attends to positions 0 .. start + i, scaled by
// 1/sqrt(head_dim); head h reads KV head h / group_size.
struct AttentionQuery {
  const SequenceKv* kv;
  const float* q;
  int n_new, start;
  float* out;
};

// Causal grouped-query attention of a whole batch (prefill chunks and
// decode rows alike) in one pass over the OpenMP team: tiles of up to
// kAttentionTileRows rows of one head, or of a decode row's heads that
// share a KV head, share each K and V load (attention_tile.h). Every output row
// is bit-identical whatever the other rows of the call: how a prompt is
// chunked, whether its prefix came from the prefix cache, or which sequences
// share the step.
void Attention(const ModelConfig& c, int layer,
               absl::Span<const AttentionQuery> queries,
               AttentionScratch* scratch);

// Attention in pieces, for threads that split the work themselves (a
// decode step in one parallel region, model_team.cc): one thread plans the
// work items into `scratch` (returns the multiply-adds of the call); then
// any threads run disjoint ranges [i0, i1) of scratch.items.
int64_t PlanAttention(const ModelConfig& c,
                      absl::Span<const AttentionQuery> queries,
                      AttentionScratch* scratch);
// Whether a call of `macs` multiply-adds (PlanAttention's) pays for
// splitting its items over two or more threads.
bool SplitAttention(int64_t macs);
void RunAttentionItems(const ModelConfig& c, int layer,
                       absl::Span<const AttentionQuery> queries,
                       const AttentionScratch& scratch, int i0, int i1);

// Attention of one sequence's rows (the same computation).
void CausalAttention(const ModelConfig& c, const SequenceKv& kv, int layer,
                     const float* q, int n_new, int start, float* out,
                     AttentionScratch* scratch);

// The kernels Attention runs on this CPU ("avx512", "avx2" or "scalar").
const char* AttentionKernelName();

// Straightforward triple loop in double, for tests.
void ReferenceAttention(const ModelConfig& c, const SequenceKv& kv, int layer,
                        const float* q, int n_new, int start, float* out);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_MODEL_ATTENTION_H_
