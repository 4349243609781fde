#include "runtime/linear/int8_gemm_packed.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "runtime/linear/cpu_dispatch.h"
#include "runtime/linear/int8_gemm_vnni.h"
#include "runtime/linear/parallel_rows.h"

namespace spikeserve {
namespace {

// Fork OpenMP threads only above this many multiply-adds (m·N·K): a fork
// and join costs a few microseconds, a 576x576 decode matmul ~10. At 2^18
// every matmul of SmolLM2-135M is split (decode 57-74 -> 73-91 tok/s over
// 2^20, 4 runs each, spikeserve-speed, Zen 3).
constexpr int64_t kParallelMacs = int64_t(1) << 18;
// KernelRows forks from this many rows (prefill), as the row loops of
// quantization do.
constexpr int kParallelRows = 32;

constexpr int kBlockRows = 4;     // output rows per packed block
constexpr int kHeaderBytes = 32;  // int32 offset[4], float scale[4]
// How far ahead of the current step a thread prefetches its weight
// stream, in bytes (see bench/linear_bench BM_{Avx2,Vnni}KernelCold).
#ifndef PREFETCH_BYTES
#define PREFETCH_BYTES 4096
#endif
constexpr int kPrefetchBytes = PREFETCH_BYTES;

#define SPIKESERVE_AVX2 __attribute__((target("avx2")))

// K bytes per step: one register of the kernel's ISA.
int StepOf(Int8KernelIsa isa) {
  return isa == Int8KernelIsa::kAvx512Vnni ? 64 : 32;
}
int Steps(int k, int step) { return (k + step - 1) / step; }
size_t BlockBytes(int steps, int step) {
  return kHeaderBytes + size_t(steps) * kBlockRows * step;
}

// The 4 horizontal sums of a0..a3 as one int32x4 [Σa0, Σa1, Σa2, Σa3].
SPIKESERVE_AVX2 inline __m128i HSum4(__m256i a0, __m256i a1, __m256i a2,
                                     __m256i a3) {
  const __m256i h =
      _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
  return _mm_add_epi32(_mm256_castsi256_si128(h),
                       _mm256_extracti128_si256(h, 1));
}

// Past the end of the weights these only hint at unmapped or unrelated
// memory: prefetches never fault.
inline void PrefetchAhead(const int8_t* p, int lines) {
  for (int i = 0; i < lines; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes + 64 * i,
                 _MM_HINT_T0);
  }
}

// ROWS rows of x ([ROWS][steps * 32] s8, zero-padded) times one packed
// block of 4 weight rows: out[r] = the 4 sums of row r. vpmaddubsw needs one
// unsigned operand, so the sign of x moves onto w: x·w = |x| · (sign(x)·w).
// With |x|, |w| <= 127 each int16 pair sum is at most 2·127·127 = 32258
// (no saturation), so the full 8-bit weights are exact.
template <int ROWS>
SPIKESERVE_AVX2 void BlockAvx2(const uint8_t* xs, int steps, const int8_t* wb,
                               __m128i* out) {
  constexpr int kStep = 32;
  const __m256i ones = _mm256_set1_epi16(1);
  const size_t stride = size_t(steps) * kStep;
  __m256i acc[ROWS][kBlockRows];
  for (int r = 0; r < ROWS; ++r) {
    for (int c = 0; c < kBlockRows; ++c) acc[r][c] = _mm256_setzero_si256();
  }
  for (int s = 0; s < steps; ++s) {
    const int8_t* ws = wb + size_t(s) * kBlockRows * kStep;
    PrefetchAhead(ws, 2);
    __m256i wv[kBlockRows];
    for (int c = 0; c < kBlockRows; ++c) {
      wv[c] =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ws + c * kStep));
    }
    for (int r = 0; r < ROWS; ++r) {
      const __m256i xv = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(xs + r * stride + s * kStep));
      const __m256i ax = _mm256_abs_epi8(xv);
      for (int c = 0; c < kBlockRows; ++c) {
        // |x| x sign(x)·w -> int16 pair sums (exact, see above), -> int32.
        const __m256i p = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv[c], xv));
        acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(p, ones));
      }
    }
  }
  for (int r = 0; r < ROWS; ++r) {
    out[r] = HSum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
  }
}

// Where a block's sums go: int32 accumulators, or dequantized floats
// (SSE2 only, so that every kernel inlines them).
struct Int32Out {
  int32_t* acc;
  void Store(int r, int j, int n, const float* /*scale*/, __m128i s) const {
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
  void Store(int r, int j, int n, const float* scale, __m128i s) const {
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

// One packed block (header + weights) and where its sums go.
struct BlockRef {
  const int8_t* header;
  int j;  // first output column
  const int8_t* weights() const { return header + kHeaderBytes; }
  const float* scale() const {
    return reinterpret_cast<const float*>(header + 16);
  }
  __m128i offset() const {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(header));
  }
};

// Output columns [j, j + 4) for every row of xu (as Gemm prepares it), 2 rows
// at a time (each block is read from L1 after the first pair).
#define SPIKESERVE_COLUMNS(NAME, TARGET, BLOCK, STEP)                      \
  template <typename Out>                                                  \
  TARGET void NAME(const uint8_t* xu, int m, int steps, int n,             \
                   const BlockRef& b, const Out& out) {                    \
    const size_t stride = size_t(steps) * STEP;                            \
    const __m128i offset = b.offset();                                     \
    __m128i sums[2];                                                       \
    int r = 0;                                                             \
    for (; r + 2 <= m; r += 2) {                                           \
      BLOCK<2>(xu + r * stride, steps, b.weights(), sums);                 \
      out.Store(r, b.j, n, b.scale(), _mm_sub_epi32(sums[0], offset));     \
      out.Store(r + 1, b.j, n, b.scale(), _mm_sub_epi32(sums[1], offset)); \
    }                                                                      \
    if (r < m) {                                                           \
      BLOCK<1>(xu + r * stride, steps, b.weights(), sums);                 \
      out.Store(r, b.j, n, b.scale(), _mm_sub_epi32(sums[0], offset));     \
    }                                                                      \
  }
SPIKESERVE_COLUMNS(ColumnsAvx2, SPIKESERVE_AVX2, BlockAvx2, 32)
#undef SPIKESERVE_COLUMNS

// The rows as the kernels read them, padded to whole steps (the padding
// meets zero weights, so its value does not matter): x + 128 as u8 for
// VNNI, x itself for AVX2 (its sign trick needs no offset). xu: [m][stride].
void KernelRows(const int8_t* x, int m, const Int8PackedWeights& w,
                uint8_t* xu) {
  const int k = w.k, step = StepOf(w.isa);
  const size_t stride = size_t(Steps(k, step)) * step;
  const bool vnni = w.isa == Int8KernelIsa::kAvx512Vnni;
  ParallelRows(m, m >= kParallelRows, [&](int r) {
    uint8_t* row = xu + r * stride;
    if (vnni) {
      OffsetToU8(x + size_t(r) * k, k, row);
    } else {
      std::memcpy(row, x + size_t(r) * k, k);
    }
    std::fill(row + k, row + stride, 0);
  });
}

// Blocks [b0, b1) of output columns (AVX2's blocks of 4), for every row of
// xu (KernelRows).
template <typename Out>
void BlocksAvx2(const uint8_t* xu, int m, const Int8PackedWeights& w,
                const Out& out, int b0, int b1) {
  const int step = StepOf(w.isa), steps = Steps(w.k, step);
  const size_t block_bytes = BlockBytes(steps, step);
  for (int b = b0; b < b1; ++b) {
    const BlockRef block{w.data.data() + b * block_bytes, b * kBlockRows};
    ColumnsAvx2(xu, m, steps, w.n, block, out);
  }
}

// acc (int32) or, with y, the dequantized products, on the kernel of w.
void Gemm(const int8_t* x, int m, const Int8PackedWeights& w, int32_t* acc,
          const float* row_scale, float* y) {
  thread_local std::vector<uint8_t> xu;
  const size_t stride = Int8KernelRowBytes(w);
  if (xu.size() < stride * m) xu.resize(stride * m);
  // A pointer: xu itself is this thread's, the team's threads have others.
  uint8_t* const xp = xu.data();
  KernelRows(x, m, w, xp);
  const bool parallel = int64_t(m) * w.n * w.k >= kParallelMacs;
  if (w.isa == Int8KernelIsa::kAvx512Vnni) {
    VnniGemm(xp, stride, m, w, VnniOut{acc, y, row_scale}, parallel);
    return;
  }
  const int blocks = Int8PackedBlocks(w);
  ParallelRows(blocks, parallel, [&](int b) {
    if (y != nullptr) {
      BlocksAvx2(xp, m, w, FloatOut{row_scale, y}, b, b + 1);
    } else {
      BlocksAvx2(xp, m, w, Int32Out{acc}, b, b + 1);
    }
  });
}

}  // namespace

// Also used on non-AVX2 CPUs (oneDNN's u8 form): clones, not target avx2.
SPIKESERVE_CPU_CLONES void OffsetToU8(const int8_t* x, size_t n, uint8_t* xu) {
  for (size_t i = 0; i < n; ++i) xu[i] = uint8_t(x[i]) ^ 0x80u;  // x + 128
}

void SubtractOffset(const int32_t* w_sum, int m, int n, int32_t* acc) {
  ParallelRows(m, int64_t(m) * n >= (1 << 16), [&](int r) {
    int32_t* a = acc + size_t(r) * n;
    for (int j = 0; j < n; ++j) a[j] -= 128 * w_sum[j];
  });
}

const char* Int8KernelIsaName(Int8KernelIsa isa) {
  return isa == Int8KernelIsa::kAvx512Vnni ? "avx512_vnni" : "avx2";
}

bool Int8KernelSupported(Int8KernelIsa isa) {
  if (isa == Int8KernelIsa::kAvx2) return __builtin_cpu_supports("avx2");
  return __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vnni");
}

std::vector<int32_t> Int8RowSums(const int8_t* w, int n, int k) {
  std::vector<int32_t> s(n, 0);
  for (int j = 0; j < n; ++j) {
    for (int kk = 0; kk < k; ++kk) s[j] += w[size_t(j) * k + kk];
  }
  return s;
}

Int8PackedWeights PackInt8Weights(const int8_t* w, int n, int k,
                                  Int8KernelIsa isa, const float* col_scale) {
  Int8PackedWeights p;
  p.isa = isa;
  p.n = n;
  p.k = k;
  p.data.assign(size_t(Int8PackedBlocks(p)) * Int8PackedBlockBytes(p), 0);
  if (isa == Int8KernelIsa::kAvx512Vnni) {
    VnniPack(w, n, k, Int8RowSums(w, n, k).data(), col_scale, p.data.data());
    return p;
  }
  const int step = StepOf(isa);
  const size_t block_bytes = Int8PackedBlockBytes(p);
  for (int j = 0; j < n; ++j) {
    const int b = j / kBlockRows, c = j % kBlockRows;
    int8_t* block = p.data.data() + size_t(b) * block_bytes;
    // AVX2 reads x itself: no offset to take back.
    const int32_t offset = 0;
    const float scale = col_scale ? col_scale[j] : 1.0f;
    std::memcpy(block + 4 * c, &offset, 4);
    std::memcpy(block + 16 + 4 * c, &scale, 4);
    for (int kk = 0; kk < k; ++kk) {
      const int s = kk / step, i = kk % step;
      block[kHeaderBytes + (size_t(s) * kBlockRows + c) * step + i] =
          w[size_t(j) * k + kk];
    }
  }
  return p;
}

size_t Int8KernelRowBytes(const Int8PackedWeights& w) {
  const int step = StepOf(w.isa);
  return size_t(Steps(w.k, step)) * step;
}

int Int8PackedBlocks(const Int8PackedWeights& w) {
  const int cols =
      w.isa == Int8KernelIsa::kAvx512Vnni ? kVnniBlockCols : kBlockRows;
  return (w.n + cols - 1) / cols;
}

size_t Int8PackedBlockBytes(const Int8PackedWeights& w) {
  if (w.isa == Int8KernelIsa::kAvx512Vnni) return VnniBlockBytes(w.k);
  const int step = StepOf(w.isa);
  return BlockBytes(Steps(w.k, step), step);
}

void Int8KernelRows(const int8_t* x, int m, const Int8PackedWeights& w,
                    uint8_t* xu) {
  KernelRows(x, m, w, xu);
}

void Int8GemmPackedDequantBlocks(const uint8_t* xu, int m,
                                 const Int8PackedWeights& w,
                                 const float* row_scale, float* y, int b0,
                                 int b1) {
  if (w.isa == Int8KernelIsa::kAvx512Vnni) {
    VnniBlocks(xu, Int8KernelRowBytes(w), m, w, VnniOut{nullptr, y, row_scale},
               b0, b1);
    return;
  }
  BlocksAvx2(xu, m, w, FloatOut{row_scale, y}, b0, b1);
}

void Int8GemmPacked(const int8_t* x, int m, const Int8PackedWeights& w,
                    int32_t* acc) {
  Gemm(x, m, w, acc, nullptr, nullptr);
}

void Int8GemmPackedDequant(const int8_t* x, int m, const Int8PackedWeights& w,
                           const float* row_scale, float* y) {
  Gemm(x, m, w, nullptr, row_scale, y);
}

}  // namespace spikeserve
