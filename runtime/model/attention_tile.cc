#include "runtime/model/attention_tile.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "runtime/linear/cpu_dispatch.h"

namespace spikeserve {
namespace {

#define SPIKESERVE_AVX2_FMA __attribute__((target("avx2,fma")))
#define SPIKESERVE_AVX512 __attribute__((target("avx512f,avx2,fma")))

// ---- Scalar reference (any x86-64; std::fma is correctly rounded) ----

void ScoresScalar(const KvRun* runs, int n_runs, const float* q, int q_stride,
                  int rows, int hd, float scale, float* s, int s_stride) {
  for (int i = 0, j0 = 0; i < n_runs; j0 += runs[i++].n) {
    const KvRun& k = runs[i];
    for (int r = 0; r < rows; ++r) {
      for (int j = 0; j < k.n; ++j) {
        float acc = 0.0f;
        for (int d = 0; d < hd; ++d) {
          acc = std::fma(q[r * q_stride + d], k.data[d * k.stride + j], acc);
        }
        s[r * s_stride + j0 + j] = acc * scale;
      }
    }
  }
}

void AccumulateScalar(const KvRun* runs, int n_runs, const float* p,
                      int p_stride, const int* vis, int rows, int hd, float* o,
                      int o_stride) {
  for (int r = 0; r < rows; ++r) {
    for (int d = 0; d < hd; ++d) {
      float acc = o[r * o_stride + d];
      for (int i = 0, j0 = 0; i < n_runs && j0 < vis[r]; j0 += runs[i++].n) {
        const KvRun& v = runs[i];
        for (int j = 0; j < v.n && j0 + j < vis[r]; ++j) {
          acc =
              std::fma(p[r * p_stride + j0 + j], v.data[j * v.stride + d], acc);
        }
      }
      o[r * o_stride + d] = acc;
    }
  }
}

// ---- AVX-512: register tiles of up to kRowsAvx512 rows x 4 vectors (64
// positions of 4 K runs, or 64 dimensions of V), masked tails. The tile's
// rows pass over each K or V piece while it is in L1. ----

constexpr int kRowsAvx512 = 6;  // 24 accumulators + 4 loads + 1 broadcast
constexpr int kVecsAvx512 = 4;
// Positions of V one pass of the rows covers (a 64-dimension slice of them
// is 16 KiB for 64 positions: L1-resident while the rows pass).
constexpr int kVChunkPositions = 64;

inline __mmask16 Mask16(int n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
}

// Scores of R rows for the V runs at runs (masks m, output columns off).
template <int R, int V>
SPIKESERVE_AVX512 void ScoresTile(const KvRun* runs, const __mmask16* m,
                                  const int* off, const float* q, int q_stride,
                                  int hd, float scale, float* s, int s_stride) {
  __m512 acc[R * V];  // [r * V + v]
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) acc[r * V + v] = _mm512_setzero_ps();
  }
  // The runs' pointers, strides and masks in locals (registers).
  const float* kp[V];
  size_t ks[V];
  __mmask16 mk[V];
  for (int v = 0; v < V; ++v) {
    kp[v] = runs[v].data;
    ks[v] = size_t(runs[v].stride);
    mk[v] = m[v];
  }
  // A do-while (hd >= 1): with a loop that may run zero times, GCC 12
  // stored all 24 accumulators to the stack on every iteration.
  int d = 0;
  do {
    __m512 x[V];
    for (int v = 0; v < V; ++v) {
      x[v] = _mm512_maskz_loadu_ps(mk[v], kp[v]);
      kp[v] += ks[v];
    }
    for (int r = 0; r < R; ++r) {
      const __m512 w = _mm512_set1_ps(q[r * q_stride + d]);
      for (int v = 0; v < V; ++v) {
        acc[r * V + v] = _mm512_fmadd_ps(w, x[v], acc[r * V + v]);
      }
    }
  } while (++d < hd);
  const __m512 vscale = _mm512_set1_ps(scale);
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) {
      _mm512_mask_storeu_ps(s + r * s_stride + off[v], m[v],
                            _mm512_mul_ps(acc[r * V + v], vscale));
    }
  }
}

// o (R rows, V vectors of dimensions under masks m, from o's column 0)
// continued over positions t = t0 .. t1 - 1 (t1 > t0) of a chunk (V rows
// at rowp[t], weights p[r * p_stride + t]): every row, or each row up to
// its vis (counted in the chunk's positions). The accumulators are loaded
// and stored around one do-while: GCC 12 stored every accumulator to the
// stack on each iteration when the position loop could run zero times or
// shared a function with a second one.
template <int R, int V, bool kEvery>
SPIKESERVE_AVX512 void AccumulateSpan(const float* const* rowp, int t0, int t1,
                                      const float* p, int p_stride,
                                      const int* vis, const __mmask16* m,
                                      float* o, int o_stride) {
  __m512 acc[R * V];  // [r * V + v]
  __mmask16 mk[V];
  for (int v = 0; v < V; ++v) mk[v] = m[v];
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) {
      acc[r * V + v] = _mm512_maskz_loadu_ps(mk[v], o + r * o_stride + 16 * v);
    }
  }
  int t = t0;
  do {
    __m512 x[V];
    for (int v = 0; v < V; ++v) {
      x[v] = _mm512_maskz_loadu_ps(mk[v], rowp[t] + 16 * v);
    }
    for (int r = 0; r < R; ++r) {
      if (!kEvery && t >= vis[r]) continue;
      const __m512 w = _mm512_set1_ps(p[r * p_stride + t]);
      for (int v = 0; v < V; ++v) {
        acc[r * V + v] = _mm512_fmadd_ps(w, x[v], acc[r * V + v]);
      }
    }
  } while (++t < t1);
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) {
      _mm512_mask_storeu_ps(o + r * o_stride + 16 * v, mk[v], acc[r * V + v]);
    }
  }
}

// The chunk's n positions for R rows: those every row sees, then the
// rest row by row (vis relative to the chunk, non-decreasing).
template <int R, int V>
SPIKESERVE_AVX512 void AccumulateTile(const float* const* rowp, int n,
                                      const float* p, int p_stride,
                                      const int* vis, const __mmask16* m,
                                      float* o, int o_stride) {
  const int all = std::max(0, std::min(n, vis[0]));
  const int last = std::max(0, std::min(n, vis[R - 1]));
  if (all > 0) {
    AccumulateSpan<R, V, true>(rowp, 0, all, p, p_stride, vis, m, o, o_stride);
  }
  if (last > all) {
    AccumulateSpan<R, V, false>(rowp, all, last, p, p_stride, vis, m, o,
                                o_stride);
  }
}

// Every tile shape, [(R - 1) * kVecsAvx512 + V - 1] for R rows and V
// vectors.
using ScoresTileFn = void (*)(const KvRun*, const __mmask16*, const int*,
                              const float*, int, int, float, float*, int);
using AccumulateTileFn = void (*)(const float* const*, int, const float*, int,
                                  const int*, const __mmask16*, float*, int);
template <int... I>
constexpr std::array<ScoresTileFn, sizeof...(I)> ScoresTiles(
    std::integer_sequence<int, I...>) {
  return {&ScoresTile<I / kVecsAvx512 + 1, I % kVecsAvx512 + 1>...};
}
template <int... I>
constexpr std::array<AccumulateTileFn, sizeof...(I)> AccumulateTiles(
    std::integer_sequence<int, I...>) {
  return {&AccumulateTile<I / kVecsAvx512 + 1, I % kVecsAvx512 + 1>...};
}
constexpr auto kTileShapes =
    std::make_integer_sequence<int, kRowsAvx512 * kVecsAvx512>();
constexpr auto kScoresTiles = ScoresTiles(kTileShapes);
constexpr auto kAccumulateTiles = AccumulateTiles(kTileShapes);

SPIKESERVE_AVX512 void ScoresAvx512(const KvRun* runs, int n_runs,
                                    const float* q, int q_stride, int rows,
                                    int hd, float scale, float* s,
                                    int s_stride) {
  for (int i = 0, j0 = 0; i < n_runs; i += kVecsAvx512) {
    const int nv = std::min(kVecsAvx512, n_runs - i);
    __mmask16 m[kVecsAvx512];
    int off[kVecsAvx512];
    for (int v = 0; v < nv; ++v) {
      m[v] = Mask16(runs[i + v].n);
      off[v] = j0;
      j0 += runs[i + v].n;
    }
    for (int r = 0; r < rows; r += kRowsAvx512) {
      const int nr = std::min(kRowsAvx512, rows - r);
      kScoresTiles[(nr - 1) * kVecsAvx512 + nv - 1](
          runs + i, m, off, q + r * q_stride, q_stride, hd, scale,
          s + r * s_stride, s_stride);
    }
  }
}
SPIKESERVE_AVX512 void AccumulateAvx512(const KvRun* runs, int n_runs,
                                        const float* p, int p_stride,
                                        const int* vis, int rows, int hd,
                                        float* o, int o_stride) {
  for (int d0 = 0; d0 < hd; d0 += 16 * kVecsAvx512) {
    const int nv = std::min(kVecsAvx512, (hd - d0 + 15) / 16);
    __mmask16 m[kVecsAvx512];
    for (int v = 0; v < nv; ++v) m[v] = Mask16(hd - d0 - 16 * v);
    // Chunks of kVChunkPositions positions, for all rows in turn.
    const int n_all = vis[rows - 1];  // positions any row sees
    int i = 0, t = 0;                 // the next position: run i, its t-th
    for (int j0 = 0; j0 < n_all;) {
      const float* rowp[kVChunkPositions];
      int n = 0;
      for (; n < kVChunkPositions && j0 + n < n_all; ++n, ++t) {
        while (t == runs[i].n) {
          ++i;
          t = 0;
        }
        rowp[n] = runs[i].data + size_t(t) * runs[i].stride + d0;
      }
      int cvis[kAttentionTileRows];  // vis relative to the chunk
      for (int r = 0; r < rows; ++r) cvis[r] = vis[r] - j0;
      for (int r = 0; r < rows; r += kRowsAvx512) {
        const int nr = std::min(kRowsAvx512, rows - r);
        if (cvis[r + nr - 1] <= 0) continue;  // none of these rows sees it
        kAccumulateTiles[(nr - 1) * kVecsAvx512 + nv - 1](
            rowp, n, p + r * p_stride + j0, p_stride, cvis + r, m,
            o + r * o_stride + d0, o_stride);
      }
      j0 += n;
    }
  }
}

// ---- AVX2 + FMA: register tiles of up to kRowsAvx2 rows x kVecsAvx2
// vectors of 8 lanes (positions of up to two K runs, or 32 dimensions of
// V), lanes past a run's end or past head_dim masked. A decode step's tile
// is one KV group's heads (3 rows on SmolLM2): with one vector per row
// each FMA waited on the previous one of its chain (3 chains for two
// 4-cycle FMA pipes), and a run's last positions took scalar chains. ----

constexpr int kRowsAvx2 = 3;  // 12 accumulators, 4 loads and 1 broadcast
constexpr int kVecsAvx2 = 4;

// 8 lanes of K (positions j .. j + 7 of a run: lane i of dimension d at
// p + d·stride + i; scores go to column off + i) with n of them live.
struct KLanes {
  const float* p;
  size_t stride;
  int off;
  int n;
};

SPIKESERVE_AVX2_FMA inline __m256i Mask8(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
template <bool kMasked>
SPIKESERVE_AVX2_FMA inline __m256 Load8(const float* p, __m256i m) {
  return kMasked ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p);
}
template <bool kMasked>
SPIKESERVE_AVX2_FMA inline void Store8(float* p, __m256i m, __m256 v) {
  if (kMasked) {
    _mm256_maskstore_ps(p, m, v);
  } else {
    _mm256_storeu_ps(p, v);
  }
}

// Scores of R rows for the V lane sets l (hd >= 1).
template <int R, int V, bool kMasked>
SPIKESERVE_AVX2_FMA void ScoresTileAvx2(const KLanes* l, const float* q,
                                        int q_stride, int hd, float scale,
                                        float* s, int s_stride) {
  __m256 acc[R * V];  // [r * V + v]
#pragma GCC unroll 16
  for (int i = 0; i < R * V; ++i) acc[i] = _mm256_setzero_ps();
  const float* kp[V];
  size_t ks[V];
  __m256i mk[V];
#pragma GCC unroll 16
  for (int v = 0; v < V; ++v) {
    kp[v] = l[v].p;
    ks[v] = l[v].stride;
    mk[v] = kMasked ? Mask8(l[v].n) : _mm256_setzero_si256();
  }
  int d = 0;
  do {
    __m256 x[V];
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) {
      x[v] = Load8<kMasked>(kp[v], mk[v]);
      kp[v] += ks[v];
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256 w = _mm256_broadcast_ss(q + r * q_stride + d);
#pragma GCC unroll 16
      for (int v = 0; v < V; ++v) {
        acc[r * V + v] = _mm256_fmadd_ps(w, x[v], acc[r * V + v]);
      }
    }
  } while (++d < hd);
  const __m256 vscale = _mm256_set1_ps(scale);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) {
      Store8<kMasked>(s + r * s_stride + l[v].off, mk[v],
                      _mm256_mul_ps(acc[r * V + v], vscale));
    }
  }
}

// o (R rows, V vectors of the `dims` dimensions from o's column 0)
// continued over positions 0 .. n - 1 (n >= 1; position t's V row at
// v + t·v_stride, its weights p[r * p_stride + t]).
template <int R, int V, bool kMasked>
SPIKESERVE_AVX2_FMA void AccumulateTileAvx2(const float* v, int v_stride, int n,
                                            const float* p, int p_stride,
                                            int dims, float* o, int o_stride) {
  __m256i mk[V];
  __m256 acc[R * V];  // [r * V + u]
#pragma GCC unroll 16
  for (int u = 0; u < V; ++u) {
    mk[u] = kMasked ? Mask8(dims - 8 * u) : _mm256_setzero_si256();
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int u = 0; u < V; ++u) {
      acc[r * V + u] = Load8<kMasked>(o + r * o_stride + 8 * u, mk[u]);
    }
  }
  int t = 0;
  do {
    const float* vt = v + size_t(t) * v_stride;
    __m256 x[V];
#pragma GCC unroll 16
    for (int u = 0; u < V; ++u) x[u] = Load8<kMasked>(vt + 8 * u, mk[u]);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256 w = _mm256_broadcast_ss(p + r * p_stride + t);
#pragma GCC unroll 16
      for (int u = 0; u < V; ++u) {
        acc[r * V + u] = _mm256_fmadd_ps(w, x[u], acc[r * V + u]);
      }
    }
  } while (++t < n);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int u = 0; u < V; ++u) {
      Store8<kMasked>(o + r * o_stride + 8 * u, mk[u], acc[r * V + u]);
    }
  }
}

// Every tile shape, [(R - 1) * kVecsAvx2 + V - 1], unmasked and masked.
using ScoresAvx2Fn = void (*)(const KLanes*, const float*, int, int, float,
                              float*, int);
using AccumulateAvx2Fn = void (*)(const float*, int, int, const float*, int,
                                  int, float*, int);
template <bool kMasked, int... I>
constexpr std::array<ScoresAvx2Fn, sizeof...(I)> ScoresAvx2Tiles(
    std::integer_sequence<int, I...>) {
  return {&ScoresTileAvx2<I / kVecsAvx2 + 1, I % kVecsAvx2 + 1, kMasked>...};
}
template <bool kMasked, int... I>
constexpr std::array<AccumulateAvx2Fn, sizeof...(I)> AccumulateAvx2Tiles(
    std::integer_sequence<int, I...>) {
  return {
      &AccumulateTileAvx2<I / kVecsAvx2 + 1, I % kVecsAvx2 + 1, kMasked>...};
}
constexpr auto kAvx2Shapes =
    std::make_integer_sequence<int, kRowsAvx2 * kVecsAvx2>();
constexpr int kAvx2TileShapes = kRowsAvx2 * kVecsAvx2;
constexpr std::array<ScoresAvx2Fn, kAvx2TileShapes> kScoresAvx2[2] = {
    ScoresAvx2Tiles<false>(kAvx2Shapes), ScoresAvx2Tiles<true>(kAvx2Shapes)};
constexpr std::array<AccumulateAvx2Fn, kAvx2TileShapes> kAccumulateAvx2[2] = {
    AccumulateAvx2Tiles<false>(kAvx2Shapes),
    AccumulateAvx2Tiles<true>(kAvx2Shapes)};

// The runs' positions in sets of up to kVecsAvx2 vectors of 8 (a run of 16
// is two), every row over each set in tiles of kRowsAvx2.
void ScoresAvx2(const KvRun* runs, int n_runs, const float* q, int q_stride,
                int rows, int hd, float scale, float* s, int s_stride) {
  KLanes l[kVecsAvx2];
  int nl = 0;
  bool masked = false;
  auto flush = [&] {
    for (int r = 0; r < rows; r += kRowsAvx2) {
      const int nr = std::min(kRowsAvx2, rows - r);
      kScoresAvx2[masked][(nr - 1) * kVecsAvx2 + nl - 1](
          l, q + r * q_stride, q_stride, hd, scale, s + r * s_stride, s_stride);
    }
    nl = 0;
    masked = false;
  };
  for (int i = 0, j0 = 0; i < n_runs; j0 += runs[i++].n) {
    const KvRun& k = runs[i];
    for (int j = 0; j < k.n; j += 8) {
      l[nl++] = {k.data + j, size_t(k.stride), j0 + j, std::min(8, k.n - j)};
      masked |= k.n - j < 8;
      if (nl == kVecsAvx2) flush();
    }
  }
  if (nl > 0) flush();
}

// n >= 1 positions of V (rows v_stride apart) into `rows` rows of o, in
// slices of kVecsAvx2 vectors of dimensions and tiles of kRowsAvx2 rows.
void AccumulateAvx2Rows(const float* v, int v_stride, int n, const float* p,
                        int p_stride, int rows, int hd, float* o,
                        int o_stride) {
  for (int d0 = 0; d0 < hd; d0 += 8 * kVecsAvx2) {
    const int dims = hd - d0;
    const int nv = std::min(kVecsAvx2, (dims + 7) / 8);
    const bool masked = dims < 8 * nv;
    for (int r = 0; r < rows; r += kRowsAvx2) {
      const int nr = std::min(kRowsAvx2, rows - r);
      kAccumulateAvx2[masked][(nr - 1) * kVecsAvx2 + nv - 1](
          v + d0, v_stride, n, p + r * p_stride, p_stride, dims,
          o + r * o_stride + d0, o_stride);
    }
  }
}

// Per run: the positions every row sees for all rows together, then each
// further position for the rows that see it (a suffix: vis is
// non-decreasing).
void AccumulateAvx2(const KvRun* runs, int n_runs, const float* p, int p_stride,
                    const int* vis, int rows, int hd, float* o, int o_stride) {
  for (int i = 0, j0 = 0; i < n_runs && j0 < vis[rows - 1]; j0 += runs[i++].n) {
    const KvRun& v = runs[i];
    const int all = std::max(0, std::min(v.n, vis[0] - j0));
    if (all > 0) {
      AccumulateAvx2Rows(v.data, v.stride, all, p + j0, p_stride, rows, hd, o,
                         o_stride);
    }
    for (int t = all, r0 = 0; t < v.n; ++t) {
      while (r0 < rows && vis[r0] <= j0 + t) ++r0;
      if (r0 == rows) break;
      AccumulateAvx2Rows(v.data + t * v.stride, v.stride, 1,
                         p + r0 * p_stride + j0 + t, p_stride, rows - r0, hd,
                         o + r0 * o_stride, o_stride);
    }
  }
}

constexpr AttentionTileKernels kScalar = {"scalar", ScoresScalar,
                                          AccumulateScalar};
constexpr AttentionTileKernels kAvx2 = {"avx2", ScoresAvx2, AccumulateAvx2};
constexpr AttentionTileKernels kAvx512 = {"avx512", ScoresAvx512,
                                          AccumulateAvx512};

bool HasAvx512() { return CpuHasAvx2Fma() && CpuHasAvx512F(); }

}  // namespace

const AttentionTileKernels& BestAttentionTileKernels() {
  static const AttentionTileKernels& best =
      HasAvx512() ? kAvx512 : (CpuHasAvx2Fma() ? kAvx2 : kScalar);
  return best;
}

int AttentionTileVariants(const AttentionTileKernels** out) {
  int n = 0;
  out[n++] = &kScalar;
  if (CpuHasAvx2Fma()) out[n++] = &kAvx2;
  if (HasAvx512()) out[n++] = &kAvx512;
  return n;
}

}  // namespace spikeserve
