#include "runtime/linear/hadamard.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/linear/cpu_dispatch.h"
#include "runtime/linear/parallel_rows.h"

namespace spikeserve {
namespace {

// Stages h = 1, 2, 4 of the butterfly inside each group of 8 floats, in
// registers: the portable loop runs them with inner loops of 1, 2 and 4
// elements, scalar, and they were most of a 1536-wide transform's time
// (Fwht was 5% of a 512-token prefill). In each stage a lane meets its
// partner (a permute): the lower lane keeps a + b, the upper b' - a' with
// the permuted value first, i.e. a - b as in the portable loop.
__attribute__((target("avx2"))) void FirstStagesAvx2(float* x, int n) {
  for (int i = 0; i < n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 p = _mm256_permute_ps(v, 0xB1);  // h = 1: swap neighbours
    v = _mm256_blend_ps(_mm256_add_ps(v, p), _mm256_sub_ps(p, v), 0xAA);
    p = _mm256_permute_ps(v, 0x4E);  // h = 2: swap pairs
    v = _mm256_blend_ps(_mm256_add_ps(v, p), _mm256_sub_ps(p, v), 0xCC);
    p = _mm256_permute2f128_ps(v, v, 1);  // h = 4: swap halves
    v = _mm256_blend_ps(_mm256_add_ps(v, p), _mm256_sub_ps(p, v), 0xF0);
    _mm256_storeu_ps(x + i, v);
  }
}

// Stages h = 1, 2, 4, 8 inside each group of 16 floats in registers, as
// above, then each later stage in whole vectors: the portable loop left
// the stage h = 8 scalar (one 8-float ymm per pair) and ran the rest at
// about one element per cycle (Fwht + Mix were 9% of a 512-token prefill
// of the 135M model with both rotations). The same additions in the same
// stage order: bit-identical results. GCC 12 warns that the undefined
// pass-through operand of its own permute intrinsic is uninitialized: a
// false positive of its headers (no mask), silenced here only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__  // GCC only; clang has no such group
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
__attribute__((target("avx512f"))) void FwhtAvx512(float* x, int n) {
  for (int i = 0; i < n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    __m512 p = _mm512_permute_ps(v, 0xB1);  // h = 1
    v = _mm512_mask_blend_ps(0xAAAA, _mm512_add_ps(v, p), _mm512_sub_ps(p, v));
    p = _mm512_permute_ps(v, 0x4E);  // h = 2
    v = _mm512_mask_blend_ps(0xCCCC, _mm512_add_ps(v, p), _mm512_sub_ps(p, v));
    p = _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1));  // h = 4
    v = _mm512_mask_blend_ps(0xF0F0, _mm512_add_ps(v, p), _mm512_sub_ps(p, v));
    p = _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2));  // h = 8
    v = _mm512_mask_blend_ps(0xFF00, _mm512_add_ps(v, p), _mm512_sub_ps(p, v));
    _mm512_storeu_ps(x + i, v);
  }
  for (int h = 16; h < n; h <<= 1) {
    for (int i = 0; i < n; i += 2 * h) {
      for (int j = i; j < i + h; j += 16) {
        const __m512 a = _mm512_loadu_ps(x + j);
        const __m512 b = _mm512_loadu_ps(x + j + h);
        _mm512_storeu_ps(x + j, _mm512_add_ps(a, b));
        _mm512_storeu_ps(x + j + h, _mm512_sub_ps(a, b));
      }
    }
  }
}
#pragma GCC diagnostic pop

// The stages from h = 8 on in whole 8-float vectors, after FirstStagesAvx2:
// the clone of the portable loop below ran them at about one element per
// cycle (a 1536-wide transform took 6 us on Zen 3, on a decode step's
// serial path). The same additions in the same stage order.
__attribute__((target("avx2"))) void LaterStagesAvx2(float* x, int n) {
  for (int h = 8; h < n; h <<= 1) {
    for (int i = 0; i < n; i += 2 * h) {
      for (int j = i; j < i + h; j += 8) {
        const __m256 a = _mm256_loadu_ps(x + j);
        const __m256 b = _mm256_loadu_ps(x + j + h);
        _mm256_storeu_ps(x + j, _mm256_add_ps(a, b));
        _mm256_storeu_ps(x + j + h, _mm256_sub_ps(a, b));
      }
    }
  }
}

// The stages commute (each acts on one bit of the index), so the in-register
// ones go first and the loop takes the rest.
SPIKESERVE_CPU_CLONES void Fwht(float* x, int n) {
  if (CpuHasAvx512F() && n % 16 == 0) {
    FwhtAvx512(x, n);
    return;
  }
  if (CpuHasAvx2() && n % 8 == 0) {
    FirstStagesAvx2(x, n);
    LaterStagesAvx2(x, n);
    return;
  }
  for (int h = 1; h < n; h <<= 1) {
    for (int i = 0; i < n; i += 2 * h) {
      for (int j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
}

}  // namespace

std::vector<int> PaleyHadamard(int q) {
  if (q < 3 || q % 4 != 3) return {};
  for (int d = 2; d * d <= q; ++d) {
    if (q % d == 0) return {};
  }
  std::vector<int> chi(q, -1);  // quadratic character
  chi[0] = 0;
  for (int a = 1; a < q; ++a) chi[(a * a) % q] = 1;
  const int n = q + 1;
  std::vector<int> h(n * n);
  // H = I + S, S = [[0, 1ᵀ], [-1, Q]], Q[i][j] = chi(j - i).
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      int s;
      if (i == 0) {
        s = j == 0 ? 0 : 1;
      } else if (j == 0) {
        s = -1;
      } else {
        s = chi[((j - i) % q + q) % q];
      }
      h[i * n + j] = s + (i == j ? 1 : 0);
    }
  }
  return h;
}

absl::StatusOr<HadamardTransform> HadamardTransform::Create(int n) {
  HadamardTransform t;
  t.n_ = n;
  for (int m : {1, 12, 20}) {
    if (n <= 0 || n % m != 0) continue;
    const int p = n / m;
    if ((p & (p - 1)) != 0) continue;
    t.m_ = m;
    t.p2_ = p;
    if (m > 1) t.small_ = PaleyHadamard(m - 1);
    return t;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "hadamard: width ", n, " is not m * 2^k with m in {1, 12, 20}"));
}

namespace {

// out[i][:] = Σ_k a(k, i) · v[k][:] over m rows of p2 contiguous floats:
// the m x m mix, vectorized along the rows.
SPIKESERVE_CPU_CLONES void Mix(const float* v, const int* small, int m, int p2,
                               bool transpose, float* out) {
  for (int i = 0; i < m; ++i) {
    float* o = out + size_t(i) * p2;
    for (int j = 0; j < p2; ++j) o[j] = 0.0f;
    for (int k = 0; k < m; ++k) {
      const float a = float(transpose ? small[i * m + k] : small[k * m + i]);
      const float* x = v + size_t(k) * p2;
      for (int j = 0; j < p2; ++j) o[j] += a * x[j];
    }
  }
}

// Mix for p2 a multiple of 128, times `norm`: each output's 128 floats
// accumulate in 8 registers over the m inputs (the portable loop stores
// and reloads them for every input).
__attribute__((target("avx512f"))) void MixAvx512(const float* v,
                                                  const int* small, int m,
                                                  int p2, bool transpose,
                                                  float norm, float* out) {
  const __m512 scale = _mm512_set1_ps(norm);
  for (int j0 = 0; j0 < p2; j0 += 128) {
    for (int i = 0; i < m; ++i) {
      __m512 acc[8];
      for (int c = 0; c < 8; ++c) acc[c] = _mm512_setzero_ps();
      for (int k = 0; k < m; ++k) {
        const __m512 a = _mm512_set1_ps(
            float(transpose ? small[i * m + k] : small[k * m + i]));
        const float* x = v + size_t(k) * p2 + j0;
        for (int c = 0; c < 8; ++c) {
          acc[c] = _mm512_fmadd_ps(a, _mm512_loadu_ps(x + 16 * c), acc[c]);
        }
      }
      float* o = out + size_t(i) * p2 + j0;
      for (int c = 0; c < 8; ++c) {
        _mm512_storeu_ps(o + 16 * c, _mm512_mul_ps(acc[c], scale));
      }
    }
  }
}

// The same on AVX2 + FMA, 64 floats of an output in 8 registers (the same
// fma chains as MixAvx512, so both give the same bits).
__attribute__((target("avx2,fma"))) void MixAvx2(const float* v,
                                                 const int* small, int m,
                                                 int p2, bool transpose,
                                                 float norm, float* out) {
  const __m256 scale = _mm256_set1_ps(norm);
  for (int j0 = 0; j0 < p2; j0 += 64) {
    for (int i = 0; i < m; ++i) {
      __m256 acc[8];
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) acc[c] = _mm256_setzero_ps();
      for (int k = 0; k < m; ++k) {
        const __m256 a = _mm256_set1_ps(
            float(transpose ? small[i * m + k] : small[k * m + i]));
        const float* x = v + size_t(k) * p2 + j0;
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) {
          acc[c] = _mm256_fmadd_ps(a, _mm256_loadu_ps(x + 8 * c), acc[c]);
        }
      }
      float* o = out + size_t(i) * p2 + j0;
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        _mm256_storeu_ps(o + 8 * c, _mm256_mul_ps(acc[c], scale));
      }
    }
  }
}

}  // namespace

void HadamardTransform::Run(float* x, int rows, bool transpose) const {
  const float norm = 1.0f / std::sqrt(float(n_));
  // Rows are independent; fork threads only for prefill-sized batches.
  ParallelRows(rows, rows >= 32, [&](int r) {
    thread_local std::vector<float> tmp;
    float* v = x + size_t(r) * n_;
    // Viewed as X [m][p2]: y[i][j] = Σ_i' Σ_j' X[i'][j'] A[i'][i] B[j'][j].
    for (int i = 0; i < m_; ++i) Fwht(v + i * p2_, p2_);  // B symmetric
    if (m_ > 1) {
      tmp.resize(n_);
      if (CpuHasAvx512F() && p2_ % 128 == 0) {
        MixAvx512(v, small_.data(), m_, p2_, transpose, norm, tmp.data());
        std::copy(tmp.begin(), tmp.end(), v);
      } else if (CpuHasAvx2Fma() && p2_ % 64 == 0) {
        MixAvx2(v, small_.data(), m_, p2_, transpose, norm, tmp.data());
        std::copy(tmp.begin(), tmp.end(), v);
      } else {
        Mix(v, small_.data(), m_, p2_, transpose, tmp.data());
        for (int j = 0; j < n_; ++j) v[j] = tmp[j] * norm;
      }
    } else {
      for (int j = 0; j < n_; ++j) v[j] *= norm;
    }
  });
}

void HadamardTransform::Apply(float* x, int rows) const { Run(x, rows, false); }
void HadamardTransform::ApplyTranspose(float* x, int rows) const {
  Run(x, rows, true);
}

}  // namespace spikeserve
