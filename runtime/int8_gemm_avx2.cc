#include "runtime/int8_gemm_avx2.h"

#include <immintrin.h>

#include "runtime/cpu_dispatch.h"

namespace spikeserve {
namespace {

// Fork OpenMP threads only above this many multiply-adds (m·N·K): a fork
// and join costs a few microseconds, a 576x576 decode matmul ~10. At 2^18
// every matmul of SmolLM2-135M is split (decode 57-74 -> 73-91 tok/s over
// 2^20, 4 runs each, spikeserve-speed, Zen 3).
constexpr int64_t kParallelMacs = int64_t(1) << 18;

#define SPIKESERVE_AVX2 __attribute__((target("avx2")))

SPIKESERVE_AVX2 inline int32_t HSum(__m256i v) {
  __m128i s =
      _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// ROWS rows of xu (u8, x + 128) times NB consecutive weight rows starting
// at w_rows; writes ROWS x NB int32 results (offset not yet removed) to
// out[r * n + c].
template <int ROWS, int NB>
SPIKESERVE_AVX2 void Tile(const uint8_t* xu, int k, const int8_t* w_rows,
                          int32_t* out, int n) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[ROWS][NB];
  for (int r = 0; r < ROWS; ++r) {
    for (int c = 0; c < NB; ++c) acc[r][c] = _mm256_setzero_si256();
  }
  const int k32 = k / 32 * 32;
  for (int kk = 0; kk < k32; kk += 32) {
    __m256i wv[NB];
    for (int c = 0; c < NB; ++c) {
      wv[c] = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(w_rows + size_t(c) * k + kk));
    }
    for (int r = 0; r < ROWS; ++r) {
      const __m256i xv = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(xu + size_t(r) * k + kk));
      for (int c = 0; c < NB; ++c) {
        // u8 x s8 -> int16 pair sums (no saturation, see header), -> int32.
        const __m256i p = _mm256_maddubs_epi16(xv, wv[c]);
        acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(p, ones));
      }
    }
  }
  for (int r = 0; r < ROWS; ++r) {
    for (int c = 0; c < NB; ++c) {
      int32_t s = HSum(acc[r][c]);
      for (int kk = k32; kk < k; ++kk) {
        s += int32_t(xu[size_t(r) * k + kk]) * w_rows[size_t(c) * k + kk];
      }
      out[size_t(r) * n + c] = s;
    }
  }
}

// Output columns [j, j + NB) for every row.
template <int NB>
SPIKESERVE_AVX2 void Columns(const uint8_t* xu, int m, int k, const int8_t* w,
                             int n, int j, int32_t* acc) {
  const int8_t* wj = w + size_t(j) * k;
  int r = 0;
  for (; r + 2 <= m; r += 2) {
    Tile<2, NB>(xu + size_t(r) * k, k, wj, acc + size_t(r) * n + j, n);
  }
  if (r < m) Tile<1, NB>(xu + size_t(r) * k, k, wj, acc + size_t(r) * n + j, n);
}

}  // namespace

// Also used on non-AVX2 CPUs (oneDNN's u8 form): clones, not target("avx2").
SPIKESERVE_CPU_CLONES void OffsetToU8(const int8_t* x, size_t n, uint8_t* xu) {
  for (size_t i = 0; i < n; ++i) xu[i] = uint8_t(x[i]) ^ 0x80u;  // x + 128
}

void SubtractOffset(const int32_t* w_sum, int m, int n, int32_t* acc) {
#pragma omp parallel for schedule(static) if (int64_t(m) * n >= (1 << 16))
  for (int r = 0; r < m; ++r) {
    int32_t* a = acc + size_t(r) * n;
    for (int j = 0; j < n; ++j) a[j] -= 128 * w_sum[j];
  }
}

bool Int8GemmAvx2Supported() { return __builtin_cpu_supports("avx2"); }

std::vector<int32_t> Int8RowSums(const int8_t* w, int n, int k) {
  std::vector<int32_t> s(n, 0);
  for (int j = 0; j < n; ++j) {
    for (int kk = 0; kk < k; ++kk) s[j] += w[size_t(j) * k + kk];
  }
  return s;
}

void Int8GemmAvx2(const int8_t* x, int m, int k, const int8_t* w,
                  const int32_t* w_sum, int n, int32_t* acc) {
  thread_local std::vector<uint8_t> xu;
  if (xu.size() < size_t(m) * k) xu.resize(size_t(m) * k);
  OffsetToU8(x, size_t(m) * k, xu.data());
  const uint8_t* xp = xu.data();
  const int blocks = n / 4;
  const bool parallel = int64_t(m) * n * k >= kParallelMacs;
#pragma omp parallel for schedule(static) if (parallel)
  for (int b = 0; b < blocks; ++b) Columns<4>(xp, m, k, w, n, 4 * b, acc);
  for (int j = 4 * blocks; j < n; ++j) Columns<1>(xp, m, k, w, n, j, acc);
  SubtractOffset(w_sum, m, n, acc);
}

}  // namespace spikeserve
