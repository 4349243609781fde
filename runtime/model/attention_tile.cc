#include "runtime/model/attention_tile.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

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

// ---- AVX2 + FMA: up to 8 rows, 8 positions or 8 dimensions per pass,
// scalar FMA tails (the same single rounding as a vector lane). ----

constexpr int kRowsAvx2 = 8;

SPIKESERVE_AVX2_FMA inline float Fma(float a, float b, float c) {
  return _mm_cvtss_f32(
      _mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

template <int R>
SPIKESERVE_AVX2_FMA void ScoresAvx2R(const float* kt, int kt_stride, int n,
                                     const float* q, int q_stride, int hd,
                                     float scale, float* s, int s_stride) {
  const __m256 vscale = _mm256_set1_ps(scale);
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int d = 0; d < hd; ++d) {
      const __m256 k = _mm256_loadu_ps(kt + d * kt_stride + j);
      for (int r = 0; r < R; ++r) {
        acc[r] =
            _mm256_fmadd_ps(_mm256_set1_ps(q[r * q_stride + d]), k, acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm256_storeu_ps(s + r * s_stride + j, _mm256_mul_ps(acc[r], vscale));
    }
  }
  for (; j < n; ++j) {
    for (int r = 0; r < R; ++r) {
      float acc = 0.0f;
      for (int d = 0; d < hd; ++d) {
        acc = Fma(q[r * q_stride + d], kt[d * kt_stride + j], acc);
      }
      s[r * s_stride + j] = acc * scale;
    }
  }
}

template <int R>
SPIKESERVE_AVX2_FMA void AccumulateAvx2R(const float* v, int v_stride, int n,
                                         const float* p, int p_stride, int hd,
                                         float* o, int o_stride) {
  int d = 0;
  for (; d + 8 <= hd; d += 8) {
    __m256 a[R];
    for (int r = 0; r < R; ++r) a[r] = _mm256_loadu_ps(o + r * o_stride + d);
    for (int i = 0; i < n; ++i) {
      const __m256 vi = _mm256_loadu_ps(v + i * v_stride + d);
      for (int r = 0; r < R; ++r) {
        a[r] = _mm256_fmadd_ps(_mm256_set1_ps(p[r * p_stride + i]), vi, a[r]);
      }
    }
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(o + r * o_stride + d, a[r]);
  }
  for (; d < hd; ++d) {
    for (int r = 0; r < R; ++r) {
      float acc = o[r * o_stride + d];
      for (int i = 0; i < n; ++i) {
        acc = Fma(p[r * p_stride + i], v[i * v_stride + d], acc);
      }
      o[r * o_stride + d] = acc;
    }
  }
}

// Row counts 1..kRowsAvx2 to the templates.
#define SPIKESERVE_ROWS_SWITCH(FN, ...) \
  switch (rows) {                       \
    case 1:                             \
      return FN<1>(__VA_ARGS__);        \
    case 2:                             \
      return FN<2>(__VA_ARGS__);        \
    case 3:                             \
      return FN<3>(__VA_ARGS__);        \
    case 4:                             \
      return FN<4>(__VA_ARGS__);        \
    case 5:                             \
      return FN<5>(__VA_ARGS__);        \
    case 6:                             \
      return FN<6>(__VA_ARGS__);        \
    case 7:                             \
      return FN<7>(__VA_ARGS__);        \
    default:                            \
      return FN<8>(__VA_ARGS__);        \
  }

void ScoresAvx2Rows(const float* kt, int kt_stride, int n, const float* q,
                    int q_stride, int rows, int hd, float scale, float* s,
                    int s_stride) {
  SPIKESERVE_ROWS_SWITCH(ScoresAvx2R, kt, kt_stride, n, q, q_stride, hd, scale,
                         s, s_stride)
}
void AccumulateAvx2Rows(const float* v, int v_stride, int n, const float* p,
                        int p_stride, int rows, int hd, float* o,
                        int o_stride) {
  SPIKESERVE_ROWS_SWITCH(AccumulateAvx2R, v, v_stride, n, p, p_stride, hd, o,
                         o_stride)
}
#undef SPIKESERVE_ROWS_SWITCH

void ScoresAvx2(const KvRun* runs, int n_runs, const float* q, int q_stride,
                int rows, int hd, float scale, float* s, int s_stride) {
  for (int i = 0, j0 = 0; i < n_runs; j0 += runs[i++].n) {
    for (int r = 0; r < rows; r += kRowsAvx2) {
      ScoresAvx2Rows(runs[i].data, runs[i].stride, runs[i].n, q + r * q_stride,
                     q_stride, std::min(kRowsAvx2, rows - r), hd, scale,
                     s + r * s_stride + j0, s_stride);
    }
  }
}

// Per run: the positions every row sees for all rows together, then each
// further position for the rows that see it (a suffix: vis is
// non-decreasing).
void AccumulateAvx2(const KvRun* runs, int n_runs, const float* p, int p_stride,
                    const int* vis, int rows, int hd, float* o, int o_stride) {
  auto rows_from = [&](int r0, const float* v, int v_stride, int n, int j) {
    for (int r = r0; r < rows; r += kRowsAvx2) {
      AccumulateAvx2Rows(v, v_stride, n, p + r * p_stride + j, p_stride,
                         std::min(kRowsAvx2, rows - r), hd, o + r * o_stride,
                         o_stride);
    }
  };
  for (int i = 0, j0 = 0; i < n_runs && j0 < vis[rows - 1]; j0 += runs[i++].n) {
    const KvRun& v = runs[i];
    const int all = std::max(0, std::min(v.n, vis[0] - j0));
    if (all > 0) rows_from(0, v.data, v.stride, all, j0);
    for (int t = all, r0 = 0; t < v.n; ++t) {
      while (r0 < rows && vis[r0] <= j0 + t) ++r0;
      if (r0 == rows) break;
      rows_from(r0, v.data + t * v.stride, v.stride, 1, j0 + t);
    }
  }
}

constexpr AttentionTileKernels kScalar = {"scalar", ScoresScalar,
                                          AccumulateScalar};
constexpr AttentionTileKernels kAvx2 = {"avx2", ScoresAvx2, AccumulateAvx2};
constexpr AttentionTileKernels kAvx512 = {"avx512", ScoresAvx512,
                                          AccumulateAvx512};

bool HasAvx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
bool HasAvx512() { return HasAvx2() && __builtin_cpu_supports("avx512f"); }

}  // namespace

const AttentionTileKernels& BestAttentionTileKernels() {
  static const AttentionTileKernels& best =
      HasAvx512() ? kAvx512 : (HasAvx2() ? kAvx2 : kScalar);
  return best;
}

int AttentionTileVariants(const AttentionTileKernels** out) {
  int n = 0;
  out[n++] = &kScalar;
  if (HasAvx2()) out[n++] = &kAvx2;
  if (HasAvx512()) out[n++] = &kAvx512;
  return n;
}

}  // namespace spikeserve
