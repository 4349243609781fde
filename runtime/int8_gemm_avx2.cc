#include "runtime/int8_gemm_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "runtime/cpu_dispatch.h"

namespace spikeserve {
namespace {

// Fork OpenMP threads only above this many multiply-adds (m·N·K): a fork
// and join costs a few microseconds, a 576x576 decode matmul ~10. At 2^18
// every matmul of SmolLM2-135M is split (decode 57-74 -> 73-91 tok/s over
// 2^20, 4 runs each, spikeserve-speed, Zen 3).
constexpr int64_t kParallelMacs = int64_t(1) << 18;

constexpr int kBlockRows = 4;  // output rows per packed block
constexpr int kStep = 32;      // K bytes per step (one ymm register)
constexpr int kStepBytes = kBlockRows * kStep;  // 128: two cache lines
constexpr int kHeaderBytes = 32;  // int32 offset[4], float scale[4]
// How far ahead of the current step a thread prefetches its weight
// stream, in bytes (see bench/linear_bench BM_Avx2KernelCold).
#ifndef PREFETCH_BYTES
#define PREFETCH_BYTES 4096
#endif
constexpr int kPrefetchBytes = PREFETCH_BYTES;

#define SPIKESERVE_AVX2 __attribute__((target("avx2")))

int Steps(int k) { return (k + kStep - 1) / kStep; }
size_t BlockBytes(int steps) {
  return kHeaderBytes + size_t(steps) * kStepBytes;
}

// The 4 horizontal sums of a0..a3 as one int32x4 [Σa0, Σa1, Σa2, Σa3].
SPIKESERVE_AVX2 inline __m128i HSum4(__m256i a0, __m256i a1, __m256i a2,
                                     __m256i a3) {
  const __m256i h =
      _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
  return _mm_add_epi32(_mm256_castsi256_si128(h),
                       _mm256_extracti128_si256(h, 1));
}

// ROWS rows of xu ([ROWS][steps * 32] u8, x + 128, zero-padded) times one
// packed block of 4 weight rows: out[r] = the 4 raw sums of row r (the
// offset not yet removed).
template <int ROWS>
SPIKESERVE_AVX2 void Block(const uint8_t* xu, int steps, const int8_t* wb,
                           __m128i* out) {
  const __m256i ones = _mm256_set1_epi16(1);
  const size_t stride = size_t(steps) * kStep;
  __m256i acc[ROWS][kBlockRows];
  for (int r = 0; r < ROWS; ++r) {
    for (int c = 0; c < kBlockRows; ++c) acc[r][c] = _mm256_setzero_si256();
  }
  for (int s = 0; s < steps; ++s) {
    const int8_t* ws = wb + size_t(s) * kStepBytes;
    // Past the end of the weights this only hints at unmapped or unrelated
    // memory: prefetches never fault.
    _mm_prefetch(reinterpret_cast<const char*>(ws) + kPrefetchBytes,
                 _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(ws) + kPrefetchBytes + 64,
                 _MM_HINT_T0);
    __m256i wv[kBlockRows];
    for (int c = 0; c < kBlockRows; ++c) {
      wv[c] =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ws + c * kStep));
    }
    for (int r = 0; r < ROWS; ++r) {
      const __m256i xv = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(xu + r * stride + s * kStep));
      for (int c = 0; c < kBlockRows; ++c) {
        // u8 x s8 -> int16 pair sums (no saturation, see header), -> int32.
        const __m256i p = _mm256_maddubs_epi16(xv, wv[c]);
        acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(p, ones));
      }
    }
  }
  for (int r = 0; r < ROWS; ++r) {
    out[r] = HSum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
  }
}

// Where a block's sums go: int32 accumulators, or dequantized floats.
struct Int32Out {
  int32_t* acc;
  SPIKESERVE_AVX2 void Store(int r, int j, int n, const float* /*scale*/,
                             __m128i s) const {
    int32_t* dst = acc + size_t(r) * n + j;
    if (j + kBlockRows <= n) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), s);
      return;
    }
    alignas(16) int32_t v[kBlockRows];
    _mm_store_si128(reinterpret_cast<__m128i*>(v), s);
    for (int c = 0; j + c < n; ++c) dst[c] = v[c];
  }
};
// `scale`: the block's 4 column scales (from its header).
struct FloatOut {
  const float* row_scale;
  float* y;
  SPIKESERVE_AVX2 void Store(int r, int j, int n, const float* scale,
                             __m128i s) const {
    float* dst = y + size_t(r) * n + j;
    const __m128 sx = _mm_set1_ps(row_scale[r]);
    if (j + kBlockRows <= n) {
      const __m128 rs = _mm_mul_ps(sx, _mm_loadu_ps(scale));
      _mm_storeu_ps(dst, _mm_mul_ps(_mm_cvtepi32_ps(s), rs));
      return;
    }
    alignas(16) int32_t v[kBlockRows];
    _mm_store_si128(reinterpret_cast<__m128i*>(v), s);
    for (int c = 0; j + c < n; ++c) {
      dst[c] = float(v[c]) * (row_scale[r] * scale[c]);
    }
  }
};

// Output rows [4b, 4b + 4) of block b for every row of xu.
template <typename Out>
SPIKESERVE_AVX2 void Columns(const uint8_t* xu, int m, int steps,
                             const Avx2PackedWeights& w, int b,
                             const Out& out) {
  const int8_t* header = w.data.data() + size_t(b) * BlockBytes(steps);
  const int8_t* wb = header + kHeaderBytes;
  const float* scale = reinterpret_cast<const float*>(header + 16);
  const int j = b * kBlockRows;
  const size_t stride = size_t(steps) * kStep;
  const __m128i offset =
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(header));
  __m128i sums[2];
  int r = 0;
  for (; r + 2 <= m; r += 2) {
    Block<2>(xu + r * stride, steps, wb, sums);
    out.Store(r, j, w.n, scale, _mm_sub_epi32(sums[0], offset));
    out.Store(r + 1, j, w.n, scale, _mm_sub_epi32(sums[1], offset));
  }
  if (r < m) {
    Block<1>(xu + r * stride, steps, wb, sums);
    out.Store(r, j, w.n, scale, _mm_sub_epi32(sums[0], offset));
  }
}

template <typename Out>
SPIKESERVE_AVX2 void Gemm(const int8_t* x, int m, const Avx2PackedWeights& w,
                          const Out& out) {
  const int k = w.k, steps = Steps(k);
  const size_t stride = size_t(steps) * kStep;
  // x + 128 as u8, rows padded to whole steps (the padding meets zero
  // weights, so its value does not matter).
  thread_local std::vector<uint8_t> xu;
  if (xu.size() < m * stride) xu.resize(m * stride);
  for (int r = 0; r < m; ++r) {
    OffsetToU8(x + size_t(r) * k, k, xu.data() + r * stride);
    std::fill(xu.data() + r * stride + k, xu.data() + (r + 1) * stride, 0);
  }
  const uint8_t* xp = xu.data();
  const int blocks = (w.n + kBlockRows - 1) / kBlockRows;
  const bool parallel = int64_t(m) * w.n * k >= kParallelMacs;
#pragma omp parallel for schedule(static) if (parallel)
  for (int b = 0; b < blocks; ++b) Columns(xp, m, steps, w, b, out);
}

}  // namespace

// Also used on non-AVX2 CPUs (oneDNN's u8 form): clones, not target avx2.
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

Avx2PackedWeights PackAvx2Weights(const int8_t* w, int n, int k,
                                  const float* col_scale) {
  Avx2PackedWeights p;
  p.n = n;
  p.k = k;
  const int steps = Steps(k);
  const int blocks = (n + kBlockRows - 1) / kBlockRows;
  p.data.assign(size_t(blocks) * BlockBytes(steps), 0);
  const std::vector<int32_t> sums = Int8RowSums(w, n, k);
  for (int j = 0; j < n; ++j) {
    const int b = j / kBlockRows, c = j % kBlockRows;
    int8_t* block = p.data.data() + size_t(b) * BlockBytes(steps);
    const int32_t offset = 128 * sums[j];
    const float scale = col_scale ? col_scale[j] : 1.0f;
    std::memcpy(block + 4 * c, &offset, 4);
    std::memcpy(block + 16 + 4 * c, &scale, 4);
    for (int kk = 0; kk < k; ++kk) {
      const int s = kk / kStep, i = kk % kStep;
      block[kHeaderBytes + s * kStepBytes + c * kStep + i] =
          w[size_t(j) * k + kk];
    }
  }
  return p;
}

void Int8GemmAvx2(const int8_t* x, int m, const Avx2PackedWeights& w,
                  int32_t* acc) {
  Gemm(x, m, w, Int32Out{acc});
}

void Int8GemmAvx2Dequant(const int8_t* x, int m, const Avx2PackedWeights& w,
                         const float* row_scale, float* y) {
  Gemm(x, m, w, FloatOut{row_scale, y});
}

}  // namespace spikeserve
