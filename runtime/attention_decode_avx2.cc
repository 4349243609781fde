#include "runtime/attention_decode_avx2.h"

#include <immintrin.h>

namespace spikeserve {
namespace {

#define SPIKESERVE_AVX2_FMA __attribute__((target("avx2,fma")))

SPIKESERVE_AVX2_FMA inline float HSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// NC accumulators of 8 floats: o[0, 8·NC) = Σ_p s[p] · v_p[0, 8·NC), one
// pass over the positions (the accumulators stay in registers).
template <int NC>
SPIKESERVE_AVX2_FMA void WeightedSumChunk(const float* s,
                                          const float* const* v_rows,
                                          int offset, int n, float* o) {
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
  for (int p = 0; p < n; ++p) {
    const __m256 w = _mm256_set1_ps(s[p]);
    const float* v = v_rows[p] + offset;
    for (int c = 0; c < NC; ++c) {
      acc[c] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8 * c), acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) _mm256_storeu_ps(o + 8 * c, acc[c]);
}

}  // namespace

bool DecodeAttentionAvx2Supported(int head_dim) {
  static const bool cpu =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return cpu && head_dim > 0 && head_dim % 8 == 0;
}

SPIKESERVE_AVX2_FMA void HeadScoresAvx2(const float* q,
                                        const float* const* k_rows, int offset,
                                        int n, int head_dim, float scale,
                                        float* s) {
  int p = 0;
  // Four positions at a time: four independent FMA chains, and one
  // combined horizontal sum for the four.
  for (; p + 4 <= n; p += 4) {
    const float* k0 = k_rows[p] + offset;
    const float* k1 = k_rows[p + 1] + offset;
    const float* k2 = k_rows[p + 2] + offset;
    const float* k3 = k_rows[p + 3] + offset;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int d = 0; d < head_dim; d += 8) {
      const __m256 qv = _mm256_loadu_ps(q + d);
      a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + d), a0);
      a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + d), a1);
      a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + d), a2);
      a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + d), a3);
    }
    // [Σa0, Σa1, Σa2, Σa3] from two rounds of pairwise adds.
    const __m256 h =
        _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    const __m128 sums =
        _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    _mm_storeu_ps(s + p, _mm_mul_ps(sums, _mm_set1_ps(scale)));
  }
  for (; p < n; ++p) {
    const float* k = k_rows[p] + offset;
    __m256 a = _mm256_setzero_ps();
    for (int d = 0; d < head_dim; d += 8) {
      a = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(k + d), a);
    }
    s[p] = HSum(a) * scale;
  }
}

void HeadWeightedSumAvx2(const float* s, const float* const* v_rows, int offset,
                         int n, int head_dim, float* o) {
  int d = 0;
  for (; d + 64 <= head_dim; d += 64) {
    WeightedSumChunk<8>(s, v_rows, offset + d, n, o + d);
  }
  for (; d < head_dim; d += 8) {
    WeightedSumChunk<1>(s, v_rows, offset + d, n, o + d);
  }
}

}  // namespace spikeserve
