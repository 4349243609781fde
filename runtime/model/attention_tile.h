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

// Rows of one tile at most (register blocking of the kernels).
inline constexpr int kAttentionTileRows = 8;

// s[r * s_stride + j] = scale · Σ_d q[r * q_stride + d] · kt[d * kt_stride
// + j] (as an fma chain over d) for r < rows, j < n. kt is K transposed:
// [head_dim] runs of positions, kt_stride apart (the KV block layout).
using ScoresFn = void (*)(const float* kt, int kt_stride, int n, const float* q,
                          int q_stride, int rows, int head_dim, float scale,
                          float* s, int s_stride);
// o[r * o_stride + d] = fma(p[r * p_stride + i], v[i * v_stride + d], o[..])
// for i = 0..n-1 in order, r < rows, d < head_dim: continues the chains
// held in o.
using AccumulateFn = void (*)(const float* v, int v_stride, int n,
                              const float* p, int p_stride, int rows,
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
