#include "runtime/linear/fixed_order_gemm.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "runtime/linear/cpu_dispatch.h"

#define SPIKESERVE_AVX2_FMA __attribute__((target("avx2,fma")))

namespace spikeserve {
namespace {

constexpr int kLanes = 8;  // the 8 interleaved fma chains of every output
// Row tile (x rows) and column tile (W rows read together) of the AVX2
// kernel: 4 x 3 accumulators, 3 weight vectors and one of x fill the 16
// registers, and 12 chains in flight cover the FMA latency of two pipes
// (Zen 3, linear_bench, 576x3072 at 512 rows: 134 GOPS; 2 x 4 tiles 92).
// A single row (decode) takes 8 columns at a time instead: 8 chains, the
// weights read straight from memory by the FMAs.
constexpr int kTileRows = 4;
constexpr int kTileCols = 3;
constexpr int kRowCols = 8;
// Columns are shared out between threads in whole units of this many
// (a multiple of both column tiles).
constexpr int kUnitCols = 24;
// Rows of x per pass over the weights: 32 rows of K = 4096 floats (512
// KiB) stay in L2 while every column tile of this thread reads them.
constexpr int kBlockRows = 32;
// Multiply-adds below which a call stays on the calling thread.
constexpr long kParallelMacs = 1L << 18;

float WeightAt(const float* w, int k) { return w[k]; }
float WeightAt(const uint16_t* w, int k) {
  const uint32_t bits = uint32_t(w[k]) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// The fixed reduction of the 8 lanes (the header's tree).
float ReduceLanes(const float* a) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

template <typename W>
void ScalarRows(const float* x, int r0, int r1, const W* w, int ldy, int k,
                int c0, int c1, float* y) {
  for (int r = r0; r < r1; ++r) {
    const float* xr = x + size_t(r) * k;
    for (int c = c0; c < c1; ++c) {
      const W* wc = w + size_t(c) * k;
      float a[kLanes] = {};
      for (int k0 = 0; k0 < k; k0 += kLanes) {
        for (int j = 0; j < kLanes; ++j) {
          const int i = k0 + j;
          const float xv = i < k ? xr[i] : 0.0f;
          const float wv = i < k ? WeightAt(wc, i) : 0.0f;
          a[j] = std::fma(xv, wv, a[j]);
        }
      }
      y[size_t(r) * ldy + c] = ReduceLanes(a);
    }
  }
}

SPIKESERVE_AVX2_FMA inline __m256 Load8(const float* w) {
  return _mm256_loadu_ps(w);
}
SPIKESERVE_AVX2_FMA inline __m256 Load8(const uint16_t* w) {
  const __m256i v = _mm256_cvtepu16_epi32(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

// The first `live` (< 8) values, zeros after them (never reading past).
SPIKESERVE_AVX2_FMA inline __m256 LoadPart(const float* p, __m256i mask,
                                           int /*live*/) {
  return _mm256_maskload_ps(p, mask);
}
SPIKESERVE_AVX2_FMA inline __m256 LoadPart(const uint16_t* p, __m256i /*mask*/,
                                           int live) {
  uint16_t part[kLanes] = {};
  std::memcpy(part, p, sizeof(uint16_t) * live);
  return Load8(part);
}

SPIKESERVE_AVX2_FMA inline float Reduce(__m256 a) {
  // (a0+a4, a1+a5, a2+a6, a3+a7), then (s0+s2, s1+s3), then their sum.
  const __m128 s =
      _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

// R rows from x (k apart) times C weight rows from w (k apart) into y
// (ldy apart).
template <int R, int C, typename W>
SPIKESERVE_AVX2_FMA void TileAvx2(const float* x, const W* w, int k, float* y,
                                  int ldy) {
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  int k0 = 0;
  for (; k0 + kLanes <= k; k0 += kLanes) {
    __m256 wv[C];
    for (int c = 0; c < C; ++c) wv[c] = Load8(w + size_t(c) * k + k0);
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_loadu_ps(x + size_t(r) * k + k0);
      for (int c = 0; c < C; ++c) {
        acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
      }
    }
  }
  if (k0 < k) {
    const int live = k - k0;
    const __m256i mask = _mm256_cmpgt_epi32(
        _mm256_set1_epi32(live), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 wv[C];
    for (int c = 0; c < C; ++c) {
      wv[c] = LoadPart(w + size_t(c) * k + k0, mask, live);
    }
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_maskload_ps(x + size_t(r) * k + k0, mask);
      for (int c = 0; c < C; ++c) {
        acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) y[size_t(r) * ldy + c] = Reduce(acc[r][c]);
  }
}

template <int R, typename W>
SPIKESERVE_AVX2_FMA void ColumnTilesAvx2(const float* x, const W* w, int ldy,
                                         int k, int c0, int c1, float* y) {
  constexpr int C = R == 1 ? kRowCols : kTileCols;
  int c = c0;
  for (; c + C <= c1; c += C) {
    TileAvx2<R, C>(x, w + size_t(c) * k, k, y + c, ldy);
  }
  for (; c < c1; ++c) TileAvx2<R, 1>(x, w + size_t(c) * k, k, y + c, ldy);
}

template <typename W>
SPIKESERVE_AVX2_FMA void Avx2Rows(const float* x, int r0, int r1, const W* w,
                                  int ldy, int k, int c0, int c1, float* y) {
  int r = r0;
  for (; r + kTileRows <= r1; r += kTileRows) {
    ColumnTilesAvx2<kTileRows>(x + size_t(r) * k, w, ldy, k, c0, c1,
                               y + size_t(r) * ldy);
  }
  for (; r < r1; ++r) {
    ColumnTilesAvx2<1>(x + size_t(r) * k, w, ldy, k, c0, c1,
                       y + size_t(r) * ldy);
  }
}

// y[r * ldy + c] for r < m, c < n.
template <typename W>
void Gemm(const float* x, int m, const W* w, int n, int k, float* y, int ldy,
          FixedOrderIsa isa) {
  if (m <= 0 || n <= 0) return;
  auto rows = [&](int r0, int r1, int c0, int c1) {
    if (isa == FixedOrderIsa::kAvx2) {
      Avx2Rows(x, r0, r1, w, ldy, k, c0, c1, y);
    } else {
      ScalarRows(x, r0, r1, w, ldy, k, c0, c1, y);
    }
  };
  const int units = (n + kUnitCols - 1) / kUnitCols;
  if (long(m) * n * std::max(k, 1) < kParallelMacs) {
    // On this thread, without entering OpenMP (parallel_rows.h says why).
    for (int r0 = 0; r0 < m; r0 += kBlockRows) {
      rows(r0, std::min(m, r0 + kBlockRows), 0, n);
    }
    return;
  }
  // Each thread takes a contiguous share of the columns, and each output
  // is computed whole by one thread; which one never matters.
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int c0 = int(int64_t(units) * t / nt) * kUnitCols;
    const int c1 = std::min(n, int(int64_t(units) * (t + 1) / nt) * kUnitCols);
    for (int r0 = 0; c0 < c1 && r0 < m; r0 += kBlockRows) {
      rows(r0, std::min(m, r0 + kBlockRows), c0, c1);
    }
  }
}

}  // namespace

FixedOrderIsa BestFixedOrderIsa() {
  return CpuHasAvx2Fma() ? FixedOrderIsa::kAvx2 : FixedOrderIsa::kScalar;
}

bool FixedOrderIsaSupported(FixedOrderIsa isa) {
  return isa == FixedOrderIsa::kScalar || CpuHasAvx2Fma();
}

const char* FixedOrderIsaName(FixedOrderIsa isa) {
  return isa == FixedOrderIsa::kAvx2 ? "avx2" : "scalar";
}

void FixedOrderGemm(const float* x, int m, const float* w, int n, int k,
                    float* y, FixedOrderIsa isa) {
  Gemm(x, m, w, n, k, y, n, isa);
}

void FixedOrderGemm(const float* x, int m, const uint16_t* w, int n, int k,
                    float* y, FixedOrderIsa isa) {
  Gemm(x, m, w, n, k, y, n, isa);
}

void FixedOrderGemmStrided(const float* x, int m, const float* w, int n, int k,
                           float* y, int ldy) {
  Gemm(x, m, w, n, k, y, ldy, BestFixedOrderIsa());
}

}  // namespace spikeserve
