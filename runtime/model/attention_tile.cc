#include "runtime/model/attention_tile.h"

#include <immintrin.h>

#include <cmath>

namespace spikeserve {
namespace {

#define SPIKESERVE_AVX2_FMA __attribute__((target("avx2,fma")))
#define SPIKESERVE_AVX512 __attribute__((target("avx512f,avx2,fma")))

// ---- Scalar reference (any x86-64; std::fma is correctly rounded) ----

void ScoresScalar(const float* kt, int kt_stride, int n, const float* q,
                  int q_stride, int rows, int hd, float scale, float* s,
                  int s_stride) {
  for (int r = 0; r < rows; ++r) {
    for (int j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (int d = 0; d < hd; ++d) {
        acc = std::fma(q[r * q_stride + d], kt[d * kt_stride + j], acc);
      }
      s[r * s_stride + j] = acc * scale;
    }
  }
}

void AccumulateScalar(const float* v, int v_stride, int n, const float* p,
                      int p_stride, int rows, int hd, float* o, int o_stride) {
  for (int r = 0; r < rows; ++r) {
    for (int d = 0; d < hd; ++d) {
      float acc = o[r * o_stride + d];
      for (int i = 0; i < n; ++i) {
        acc = std::fma(p[r * p_stride + i], v[i * v_stride + d], acc);
      }
      o[r * o_stride + d] = acc;
    }
  }
}

// ---- AVX-512: 16 positions (scores) or 32 dimensions (sums) per pass,
// masked tails; R rows share each K/V load. ----

template <int R>
SPIKESERVE_AVX512 void ScoresAvx512R(const float* kt, int kt_stride, int n,
                                     const float* q, int q_stride, int hd,
                                     float scale, float* s, int s_stride) {
  const __m512 vscale = _mm512_set1_ps(scale);
  for (int j = 0; j < n; j += 16) {
    const __mmask16 m =
        n - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - j)) - 1);
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int d = 0; d < hd; ++d) {
      const __m512 k = _mm512_maskz_loadu_ps(m, kt + d * kt_stride + j);
      for (int r = 0; r < R; ++r) {
        acc[r] =
            _mm512_fmadd_ps(_mm512_set1_ps(q[r * q_stride + d]), k, acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm512_mask_storeu_ps(s + r * s_stride + j, m,
                            _mm512_mul_ps(acc[r], vscale));
    }
  }
}

template <int R>
SPIKESERVE_AVX512 void AccumulateAvx512R(const float* v, int v_stride, int n,
                                         const float* p, int p_stride, int hd,
                                         float* o, int o_stride) {
  for (int d = 0; d < hd; d += 32) {
    const int left = hd - d;
    const __mmask16 m0 =
        left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
    const __mmask16 m1 = left >= 32  ? __mmask16(0xFFFF)
                         : left > 16 ? __mmask16((1u << (left - 16)) - 1)
                                     : __mmask16(0);
    __m512 a0[R], a1[R];
    for (int r = 0; r < R; ++r) {
      a0[r] = _mm512_maskz_loadu_ps(m0, o + r * o_stride + d);
      a1[r] = _mm512_maskz_loadu_ps(m1, o + r * o_stride + d + 16);
    }
    for (int i = 0; i < n; ++i) {
      const float* vi = v + i * v_stride + d;
      const __m512 v0 = _mm512_maskz_loadu_ps(m0, vi);
      const __m512 v1 = _mm512_maskz_loadu_ps(m1, vi + 16);
      for (int r = 0; r < R; ++r) {
        const __m512 w = _mm512_set1_ps(p[r * p_stride + i]);
        a0[r] = _mm512_fmadd_ps(w, v0, a0[r]);
        a1[r] = _mm512_fmadd_ps(w, v1, a1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm512_mask_storeu_ps(o + r * o_stride + d, m0, a0[r]);
      _mm512_mask_storeu_ps(o + r * o_stride + d + 16, m1, a1[r]);
    }
  }
}

// ---- AVX2 + FMA: 8 positions or 8 dimensions per pass, scalar FMA tails
// (the same single rounding as a vector lane). ----

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

// Row counts 1..kAttentionTileRows to the templates.
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

void ScoresAvx512(const float* kt, int kt_stride, int n, const float* q,
                  int q_stride, int rows, int hd, float scale, float* s,
                  int s_stride) {
  SPIKESERVE_ROWS_SWITCH(ScoresAvx512R, kt, kt_stride, n, q, q_stride, hd,
                         scale, s, s_stride)
}
void AccumulateAvx512(const float* v, int v_stride, int n, const float* p,
                      int p_stride, int rows, int hd, float* o, int o_stride) {
  SPIKESERVE_ROWS_SWITCH(AccumulateAvx512R, v, v_stride, n, p, p_stride, hd, o,
                         o_stride)
}
void ScoresAvx2(const float* kt, int kt_stride, int n, const float* q,
                int q_stride, int rows, int hd, float scale, float* s,
                int s_stride) {
  SPIKESERVE_ROWS_SWITCH(ScoresAvx2R, kt, kt_stride, n, q, q_stride, hd, scale,
                         s, s_stride)
}
void AccumulateAvx2(const float* v, int v_stride, int n, const float* p,
                    int p_stride, int rows, int hd, float* o, int o_stride) {
  SPIKESERVE_ROWS_SWITCH(AccumulateAvx2R, v, v_stride, n, p, p_stride, hd, o,
                         o_stride)
}
#undef SPIKESERVE_ROWS_SWITCH

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
