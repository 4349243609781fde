// The two inner loops of attention for a tile of query rows of one head,
// written so that every output float is computed by the same sequence of
// operations whatever the tile's row count, the ISA or the vector width:
//
//   score s[r][p] = scale · fma-chain over d = 0..hd-1 of q[r][d] · k[p][d]
//   out   o[r][d] = fma-chain over p = 0..visible_r-1 of P[r][p] · v[p][d]
//
// (an fma chain: acc = 0; acc = fma(a_i, b_i, acc) for i in order). Vector
// lanes only ever hold different output elements, never partial sums of
// one, so a query row's attention output does not depend on which other
// rows share its call: a decode step, a prefill chunk of 16 or of 512 rows
// and a prefix-cache hit give bit-identical results (batch invariance,
// design.md). The AVX-512 and AVX2 versions equal the scalar one bit for
// bit (tests/attention_test.cc).
#ifndef SPIKESERVE_RUNTIME_MODEL_ATTENTION_TILE_H_
#define SPIKESERVE_RUNTIME_MODEL_ATTENTION_TILE_H_

namespace spikeserve {

// Rows of one tile at most: query rows of one head, or the heads of one
// KV group for a decode row. The kernels keep up to 6 rows x 64 positions
// (or dimensions) in registers on AVX-512, 3 x 32 on AVX2, and pass the tile's
// rows over each piece of K and V while it is in L1, so a larger tile reads the
// cache less often from L2 (prefill); see attention_bench.
inline constexpr int kAttentionTileRows = 24;
// Positions of one K run at most (one AVX-512 vector).
inline constexpr int kKvRunPositions = 16;

// Consecutive positions of one KV head. K: `data` is K transposed from the
// run's first position, [head_dim] runs of n positions, `stride` floats
// apart (the KV block layout); at most kKvRunPositions positions. V: `data`
// holds n rows of head_dim, `stride` floats apart; any length.
struct KvRun {
  const float* data;
  int stride;
  int n;
};

// Both kernels take at most kAttentionTileRows rows.
// Scores of the runs' positions, in order (j counts across the runs):
// s[r * s_stride + j] = scale · Σ_d q[r * q_stride + d] · k_j[d] (an fma
// chain over d), for r < rows.
using ScoresFn = void (*)(const KvRun* runs, int n_runs, const float* q,
                          int q_stride, int rows, int head_dim, float scale,
                          float* s, int s_stride);
// o[r * o_stride + d] = fma(p[r * p_stride + j], v_j[d], o[..]) for the
// runs' positions j in order, j < vis[r] (the positions row r sees; vis is
// non-decreasing in r), d < head_dim: continues the chains held in o.
using AccumulateFn = void (*)(const KvRun* runs, int n_runs, const float* p,
                              int p_stride, const int* vis, int rows,
                              int head_dim, float* o, int o_stride);

struct AttentionTileKernels {
  const char* name;  // "avx512", "avx2" or "scalar"
  ScoresFn scores;
  AccumulateFn accumulate;
};

// The fastest kernels this CPU runs.
const AttentionTileKernels& BestAttentionTileKernels();
// Every variant this CPU can run (for tests), the scalar one first.
int AttentionTileVariants(const AttentionTileKernels** out);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_MODEL_ATTENTION_TILE_H_
