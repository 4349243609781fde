#include "runtime/linear/quantize.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "runtime/linear/cpu_dispatch.h"

namespace spikeserve {

const char* ActQuantModeName(ActQuantMode m) {
  switch (m) {
    case ActQuantMode::kPerTensorDynamic:
      return "per-tensor-dynamic";
    case ActQuantMode::kPerTokenDynamic:
      return "per-token-dynamic";
    case ActQuantMode::kPerTensorStatic:
      return "per-tensor-static";
  }
  return "?";
}

// |x| as bits: for non-negative floats the integers' order is the floats',
// and an integer max reduction vectorizes (GCC 12 kept the float form,
// a > m ? a : m, scalar: 5.6% of a 512-token SmolLM2-135M prefill on an
// Ice Lake Xeon). A NaN's bits are above infinity's, so a row with a NaN
// has a NaN maximum: its scale, and so its outputs, are NaN, as FP32's
// would be, and the engine refuses the non-finite logits. (Skipping NaNs
// quantized them to -127 or 0: finite, wrong outputs without a word.)
SPIKESERVE_CPU_CLONES float AbsMax(const float* x, int n) {
  uint32_t m = 0;
  for (int j = 0; j < n; ++j) {
    uint32_t b;
    std::memcpy(&b, x + j, sizeof(b));
    m = std::max(m, b & 0x7fffffffu);
  }
  float r;
  std::memcpy(&r, &m, sizeof(r));
  return r;
}

namespace {

SPIKESERVE_CPU_CLONES void QuantizeRowPortable(const float* x, int n,
                                               float inv_scale, int8_t* q) {
  for (int j = 0; j < n; ++j) {
    float v = std::nearbyint(x[j] * inv_scale);
    v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
    if (std::isnan(v)) v = 0;  // converting a NaN is undefined
    q[j] = static_cast<int8_t>(v);
  }
}

// The same on AVX-512, 16 at a time: round to nearest even (nearbyint in
// the default mode), clamp, then one saturating pack to bytes. GCC's
// clone of the loop above packs through three widths with permutes and a
// blend (QuantizeRow was 3% of a 512-token 135M prefill with the GPTQ
// plan on Ice Lake). Equal for every finite input. GCC 12 warns that the
// undefined pass-through operands of its own intrinsics are uninitialized:
// a false positive of its headers (no mask), silenced here only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__  // GCC only; clang has no such group
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
__attribute__((target("avx512f"))) void QuantizeRowAvx512(const float* x, int n,
                                                          float inv_scale,
                                                          int8_t* q) {
  const __m512 s = _mm512_set1_ps(inv_scale);
  const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512 v =
        _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(x + j), s),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + j),
                     _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
  }
  QuantizeRowPortable(x + j, n - j, inv_scale, q + j);
}
#pragma GCC diagnostic pop

// 8 values of QuantizeRow as int32.
__attribute__((target("avx2"))) inline __m256i RoundClamp8(const float* p,
                                                           __m256 s, __m256 lo,
                                                           __m256 hi) {
  __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(p), s),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
  return _mm256_cvtps_epi32(v);
}

// The same on AVX2, 32 at a time: two saturating packs work within 128-bit
// halves, and one permute puts the four vectors' bytes back in order. The
// clone of the portable loop took 0.64 us for 1536 values on Zen 3 (four
// rows per layer on a decode step's serial path).
__attribute__((target("avx2"))) void QuantizeRowAvx2(const float* x, int n,
                                                     float inv_scale,
                                                     int8_t* q) {
  const __m256 s = _mm256_set1_ps(inv_scale);
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int j = 0;
  for (; j + 32 <= n; j += 32) {
    const __m256i ab = _mm256_packs_epi32(RoundClamp8(x + j, s, lo, hi),
                                          RoundClamp8(x + j + 8, s, lo, hi));
    const __m256i cd = _mm256_packs_epi32(RoundClamp8(x + j + 16, s, lo, hi),
                                          RoundClamp8(x + j + 24, s, lo, hi));
    const __m256i bytes =
        _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + j), bytes);
  }
  QuantizeRowPortable(x + j, n - j, inv_scale, q + j);
}

}  // namespace

void QuantizeRow(const float* x, int n, float inv_scale, int8_t* q) {
  if (CpuHasAvx512F()) {
    QuantizeRowAvx512(x, n, inv_scale, q);
  } else if (CpuHasAvx2()) {
    QuantizeRowAvx2(x, n, inv_scale, q);
  } else {
    QuantizeRowPortable(x, n, inv_scale, q);
  }
}

}  // namespace spikeserve
