#include "runtime/linear/int8_gemm_packed.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "runtime/linear/cpu_dispatch.h"
#include "runtime/linear/int8_gemm_amx.h"
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

// VNNI rows of x are padded to whole zmm registers of bytes.
constexpr int kVnniRowAlign = 64;

// AVX2 blocks: 16 output columns, a header of their 16 float scales, then
// ceil(K/4) chunks of 64 bytes: columns 0-7 and then 8-15, each column's 4
// weights at k = 4c .. 4c + 3 side by side ([2][8][4] s8), so that a
// column's sums stay in one int32 lane (no horizontal reduction).
constexpr int kAvx2Cols = 16;
constexpr int kAvx2HeaderBytes = kAvx2Cols * 4;  // float scale[16]
constexpr int kAvx2ChunkBytes = kAvx2Cols * 4;
// Up to this many rows the sign-trick form runs, from the next the int16
// form (SignForm, Int16Form). linear_bench
// --benchmark_filter='Int8Packed/(1|2|4)/576/960', Zen 3, one thread, best
// of 7 alternating rounds (G ops/s = 2 x multiply-adds): 2 rows 113 (sign)
// vs 83 (int16); 4 rows 133 (int16) vs 124 (sign up to 3 rows); 1 row 92-95
// against 74-77 for int16 forms on 2-k steps.
constexpr int kAvx2SignMaxRows = 2;
// Rows per pass over a block in the int16 form: 6 rows x 2 registers of
// columns are 12 int32 accumulators, with 2 weight registers and a
// broadcast the 16 ymm registers without spills. Same bench, 2 threads,
// best of 7 rounds, two runs, 64 rows: 6 rows 247-251, 4 rows 234-241;
// 512 rows: 201-252 against 233-234, alike within this VM's drift. Six
// read each weight register for more rows.
constexpr int kAvx2RowTile = 6;
static_assert(kAvx2RowTile <= 6 && kAvx2SignMaxRows < kAvx2RowTile,
              "BlocksAvx2 runs the sign form's rows and the int16 form's last "
              "rows as one tile of up to 5");
// Prefill: panels of x rows and chunks of blocks (GemmAvx2), as the VNNI
// kernel has them (int8_gemm_vnni.cc): the int16 rows of a 512-token
// prompt (590 KB at K = 576) no longer fit L2 and were read from L3 for
// every block. 135M GPTQ 37% plan, spikeserve-speed pp of 512 tokens, Zen
// 3, 6 alternating rounds, medians: 716 tok/s with panels, 665 without,
// 583 with the sign-trick kernel before.
constexpr int kAvx2PanelBytes = 24 << 10;
constexpr size_t kAvx2BlockChunkBytes = size_t(384) << 10;
constexpr int kAvx2SplitRowsPerThread = 48;
// How far ahead of the current chunk a thread prefetches its weight
// stream, in bytes (see bench/linear_bench BM_{Avx2,Vnni}KernelCold).
#ifndef PREFETCH_BYTES
#define PREFETCH_BYTES 4096
#endif
constexpr int kPrefetchBytes = PREFETCH_BYTES;

#define SPIKESERVE_AVX2 __attribute__((target("avx2")))

int Avx2Chunks(int k) { return (k + 3) / 4; }
// K padded to whole chunks: the values in a row as the AVX2 forms read it.
size_t Avx2PaddedK(int k) { return size_t(Avx2Chunks(k)) * 4; }
// Whether m rows take the int16 form (else the sign trick): KernelRows
// writes the rows for it and the tiles read them so.
bool Avx2Int16(int m) { return m > kAvx2SignMaxRows; }
size_t Avx2BlockBytes(int k) {
  return kAvx2HeaderBytes + size_t(Avx2Chunks(k)) * kAvx2ChunkBytes;
}

// Where a block's sums go: int32 accumulators, or dequantized floats with
// the block's 16 column scales `scale`. `live`: columns left of n (16 for
// every block but a tail).
struct Int32Out {
  int32_t* acc;
  SPIKESERVE_AVX2 void Store(int r, int j, int n, int live,
                             const float* /*scale*/, __m256i s0,
                             __m256i s1) const {
    int32_t* dst = acc + size_t(r) * n + j;
    if (live == kAvx2Cols) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), s0);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 8), s1);
      return;
    }
    alignas(32) int32_t v[kAvx2Cols];
    _mm256_store_si256(reinterpret_cast<__m256i*>(v), s0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(v + 8), s1);
    std::copy(v, v + live, dst);
  }
};
// float(acc) * (row_scale * col_scale): the scalar epilogue's operations.
struct FloatOut {
  const float* row_scale;
  float* y;
  SPIKESERVE_AVX2 void Store(int r, int j, int n, int live, const float* scale,
                             __m256i s0, __m256i s1) const {
    float* dst = y + size_t(r) * n + j;
    const __m256 sx = _mm256_set1_ps(row_scale[r]);
    const __m256 y0 = _mm256_mul_ps(_mm256_cvtepi32_ps(s0),
                                    _mm256_mul_ps(sx, _mm256_loadu_ps(scale)));
    const __m256 y1 = _mm256_mul_ps(
        _mm256_cvtepi32_ps(s1), _mm256_mul_ps(sx, _mm256_loadu_ps(scale + 8)));
    if (live == kAvx2Cols) {
      _mm256_storeu_ps(dst, y0);
      _mm256_storeu_ps(dst + 8, y1);
      return;
    }
    alignas(32) float v[kAvx2Cols];
    _mm256_store_ps(v, y0);
    _mm256_store_ps(v + 8, y1);
    std::copy(v, v + live, dst);
  }
};

// Few rows (decode): x as s8 ([R][x_stride] bytes, zero-padded to whole
// chunks). vpmaddubsw needs one unsigned operand, so the sign of x moves
// onto w: x·w = |x| · (sign(x)·w), 4 bytes of x broadcast against 8
// columns' 4 weights; each int16 pair sum is at most 2·127·127 = 32258 for
// x, w in [-127, 127] (exact), and vpmaddwd adds the two pairs of a lane
// into int32. 3 operations of the two multiply pipes per 32 multiply-adds,
// but a register of 32 weights per multiply: at one row the memory
// streams, not the pipes, set the pace.
struct SignForm {
  using X = int8_t;
  template <int R>
  SPIKESERVE_AVX2 static inline __attribute__((always_inline)) void Chunk(
      const int8_t* x, size_t x_stride, int c, __m256i w0, __m256i w1,
      __m256i (*acc)[2]) {
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int32_t quad;  // x[r][4c .. 4c + 3]
      std::memcpy(&quad, x + r * x_stride + 4 * c, sizeof(quad));
      const __m256i xb = _mm256_set1_epi32(quad);
      const __m256i ax = _mm256_abs_epi8(xb);
      const __m256i p0 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w0, xb));
      const __m256i p1 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w1, xb));
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(p0, ones));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(p1, ones));
    }
  }
};

// Many rows (prefill): x as int16, each chunk's 4 values in the order
// x[4c], x[4c+2], x[4c+1], x[4c+3] ([R][x_stride] int16). The weights' even
// bytes (k = 4c, 4c + 2 of each column) and odd bytes (4c + 1, 4c + 3) are
// widened to int16 by arithmetic shifts, and vpmaddwd multiplies each by
// the matching pair of x, broadcast, summing two products into int32:
// exact for any s8 x and w. One multiply per 16 multiply-adds, half the
// sign trick's 3 per 32, so it takes the many rows, where the multiply
// pipes are what bounds.
struct Int16Form {
  using X = int16_t;
  template <int R>
  SPIKESERVE_AVX2 static inline __attribute__((always_inline)) void Chunk(
      const int16_t* x, size_t x_stride, int c, __m256i w0, __m256i w1,
      __m256i (*acc)[2]) {
    // Even bytes: k = 4c and 4c + 2 of columns 0-7 and 8-15, against x's
    // first pair of the chunk.
    AddPairProducts<R>(x, x_stride, 4 * c,
                       _mm256_srai_epi16(_mm256_slli_epi16(w0, 8), 8),
                       _mm256_srai_epi16(_mm256_slli_epi16(w1, 8), 8), acc);
    // The even products are summed into acc before the odd ones start: GCC
    // otherwise reassociates the two sums and holds every even product in
    // a register at once, which spills (an empty asm that "changes" acc).
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      asm("" : "+x"(acc[r][0]), "+x"(acc[r][1]));
    }
    // Odd bytes: k = 4c + 1 and 4c + 3, against the second pair.
    AddPairProducts<R>(x, x_stride, 4 * c + 2, _mm256_srai_epi16(w0, 8),
                       _mm256_srai_epi16(w1, 8), acc);
  }

  // acc[r] += the products of x[r][at], x[r][at + 1] (broadcast) with the
  // int16 weight pairs of columns 0-7 (v0) and 8-15 (v1), by vpmaddwd.
  template <int R>
  SPIKESERVE_AVX2 static inline __attribute__((always_inline)) void
  AddPairProducts(const int16_t* x, size_t x_stride, int at, __m256i v0,
                  __m256i v1, __m256i (*acc)[2]) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int32_t pair;
      std::memcpy(&pair, x + r * x_stride + at, sizeof(pair));
      const __m256i xb = _mm256_set1_epi32(pair);
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(xb, v0));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(xb, v1));
    }
  }
};

// R rows of x (in Form's layout, x_stride elements apart) times one block:
// the 16 columns' int32 sums of each row into sums[r][0..1].
template <typename Form, int R>
SPIKESERVE_AVX2 inline __attribute__((always_inline)) void TileSums(
    const typename Form::X* x, size_t x_stride, int chunks, const int8_t* block,
    __m256i (*sums)[2]) {
  __m256i acc[R][2];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    acc[r][0] = _mm256_setzero_si256();
    acc[r][1] = _mm256_setzero_si256();
  }
  const int8_t* wc = block + kAvx2HeaderBytes;
  for (int c = 0; c < chunks; ++c, wc += kAvx2ChunkBytes) {
    // Past the end of the weights this only hints at unmapped or unrelated
    // memory: prefetches never fault. (Written here: from a helper
    // function, inlined, GCC 12 dropped the prefetch.)
    _mm_prefetch(reinterpret_cast<const char*>(wc) + kPrefetchBytes,
                 _MM_HINT_T0);
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wc));
    const __m256i w1 =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wc + 32));
    Form::template Chunk<R>(x, x_stride, c, w0, w1, acc);
  }
  // Written out once per tile and stored by the caller: with the float
  // epilogue inlined here GCC kept acc on the stack through the loop.
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    sums[r][0] = acc[r][0];
    sums[r][1] = acc[r][1];
  }
}

// R rows from row r0 against one block in the form for m rows, the sums
// stored by `out`. x: the rows as KernelRows wrote them, row_bytes apart.
template <int R, typename Out>
SPIKESERVE_AVX2 void TileAvx2(const uint8_t* x, size_t row_bytes, bool int16,
                              int chunks, const int8_t* block, int n, int j,
                              int r0, const Out& out) {
  __m256i sums[R][2];
  if (int16) {
    TileSums<Int16Form, R>(reinterpret_cast<const int16_t*>(x),
                           row_bytes / sizeof(int16_t), chunks, block, sums);
  } else {
    TileSums<SignForm, R>(reinterpret_cast<const int8_t*>(x), row_bytes, chunks,
                          block, sums);
  }
  const float* scale = reinterpret_cast<const float*>(block);
  const int live = std::min(kAvx2Cols, n - j);
  for (int r = 0; r < R; ++r) {
    out.Store(r0 + r, j, n, live, scale, sums[r][0], sums[r][1]);
  }
}

// One row of x for Int16Form: widened to int16, each chunk of 4 in the
// order 0, 2, 1, 3, zero-padded to whole chunks.
SPIKESERVE_AVX2 void Int16RowAvx2(const int8_t* x, int k, int16_t* row) {
  const __m128i order =
      _mm_setr_epi8(0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15);
  int i = 0;
  for (; i + 16 <= k; i += 16) {
    const __m128i v = _mm_shuffle_epi8(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + i),
                        _mm256_cvtepi8_epi16(v));
  }
  std::fill(row + i, row + Avx2PaddedK(k), 0);
  for (; i < k; ++i) row[(i & ~3) + (i & 1) * 2 + (i & 2) / 2] = x[i];
}

// The rows as the kernels read them, padded to whole chunks (the padding
// meets zero weights, so its value does not matter): x + 128 as u8 for
// VNNI; for AVX2 x itself (up to kAvx2SignMaxRows rows) or widened to
// int16 with each chunk's values in the order 0, 2, 1, 3.
// xu: [m][Int8KernelRowBytes(w)].
void KernelRows(const int8_t* x, int m, const Int8PackedWeights& w,
                uint8_t* xu) {
  const int k = w.k;
  const size_t stride = Int8KernelRowBytes(w);
  const bool vnni = w.isa == Int8KernelIsa::kAvx512Vnni;
  const bool int16 = Avx2Int16(m);
  ParallelRows(m, m >= kParallelRows, [&](int r) {
    uint8_t* row = xu + r * stride;
    const int8_t* xr = x + size_t(r) * k;
    if (vnni) {
      OffsetToU8(xr, k, row);
      std::fill(row + k, row + stride, 0);
    } else if (!int16) {
      std::copy(xr, xr + k, reinterpret_cast<int8_t*>(row));
      std::fill(row + k, row + Avx2PaddedK(k), 0);
    } else {
      Int16RowAvx2(xr, k, reinterpret_cast<int16_t*>(row));
    }
  });
}

// TileAvx2 for the last `rows` (< R + 1) rows: R, R - 1, ... down to 1
// (none for 0).
template <int R, typename Out>
void TailAvx2(int rows, const uint8_t* x, size_t row_bytes, bool int16,
              int chunks, const int8_t* block, int n, int j, int r0,
              const Out& out) {
  if constexpr (R > 0) {
    if (rows == R) {
      TileAvx2<R>(x, row_bytes, int16, chunks, block, n, j, r0, out);
    } else {
      TailAvx2<R - 1>(rows, x, row_bytes, int16, chunks, block, n, j, r0, out);
    }
  }
}

// Blocks [b0, b1) of output columns (AVX2's blocks of 16) for rows
// [r0, r1) of xu (KernelRows, in the int16 form if `int16`):
// kAvx2RowTile rows at a time in the int16 form (a block is read from
// L1/L2 after the first tile), all rows at once in the sign form.
template <typename Out>
void BlocksAvx2(const uint8_t* xu, bool int16, int r0, int r1,
                const Int8PackedWeights& w, const Out& out, int b0, int b1) {
  const int chunks = Avx2Chunks(w.k);
  const size_t block_bytes = Avx2BlockBytes(w.k);
  const size_t stride = Int8KernelRowBytes(w);
  for (int b = b0; b < b1; ++b) {
    const int8_t* block = w.data.data() + b * block_bytes;
    const int j = b * kAvx2Cols;
    int r = r0;
    for (; int16 && r + kAvx2RowTile <= r1; r += kAvx2RowTile) {
      TileAvx2<kAvx2RowTile>(xu + r * stride, stride, true, chunks, block, w.n,
                             j, r, out);
    }
    TailAvx2<kAvx2RowTile - 1>(r1 - r, xu + r * stride, stride, int16, chunks,
                               block, w.n, j, r, out);
  }
}

// Every block for m rows, split over the calling thread's team if
// `parallel` (else on the calling thread): from kAvx2SplitRowsPerThread rows
// per thread each thread takes an equal share of the rows and passes them in
// panels of about kAvx2PanelBytes (L1) over chunks of about
// kAvx2BlockChunkBytes of blocks (L2), as the VNNI kernel does; fewer rows,
// each thread a contiguous share of the blocks for every row.
template <typename Out>
void GemmAvx2(const uint8_t* xu, int m, const Int8PackedWeights& w,
              const Out& out, bool parallel) {
  const bool int16 = Avx2Int16(m);
  const int blocks = Int8PackedBlocks(w);
  const size_t stride = Int8KernelRowBytes(w);
  const int panel = std::max(kAvx2RowTile, int(kAvx2PanelBytes / stride) /
                                               kAvx2RowTile * kAvx2RowTile);
  const int chunk =
      std::max(1, int(kAvx2BlockChunkBytes / Avx2BlockBytes(w.k)));
  if (!parallel) {  // no team of one (parallel_rows.h has the cost)
    BlocksAvx2(xu, int16, 0, m, w, out, 0, blocks);
    return;
  }
#pragma omp parallel
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    if (int16 && m >= kAvx2SplitRowsPerThread * nt) {
      const int r_begin = int(int64_t(m) * t / nt);
      const int r_end = int(int64_t(m) * (t + 1) / nt);
      for (int c0 = 0; c0 < blocks; c0 += chunk) {
        const int c1 = std::min(blocks, c0 + chunk);
        for (int p0 = r_begin; p0 < r_end; p0 += panel) {
          BlocksAvx2(xu, true, p0, std::min(r_end, p0 + panel), w, out, c0, c1);
        }
      }
    } else {
      const int b_begin = int(int64_t(blocks) * t / nt);
      const int b_end = int(int64_t(blocks) * (t + 1) / nt);
      BlocksAvx2(xu, int16, 0, m, w, out, b_begin, b_end);
    }
  }
}

// acc (int32) or, with y, the dequantized products, on the kernel of w.
void Gemm(const int8_t* x, int m, const Int8PackedWeights& w, int32_t* acc,
          const float* row_scale, float* y) {
  const bool parallel = int64_t(m) * w.n * w.k >= kParallelMacs;
  if (w.amx_min_rows > 0 && m >= w.amx_min_rows) {
    Int8GemmAmx(x, m, w, acc, row_scale, y, parallel);
    return;
  }
  thread_local std::vector<uint8_t> xu;
  const size_t stride = Int8KernelRowBytes(w);
  if (xu.size() < stride * m) xu.resize(stride * m);
  // A pointer: xu itself is this thread's, the team's threads have others.
  uint8_t* const xp = xu.data();
  KernelRows(x, m, w, xp);
  if (w.isa == Int8KernelIsa::kAvx512Vnni) {
    VnniGemm(xp, stride, m, w, VnniOut{acc, y, row_scale}, parallel);
    return;
  }
  if (y != nullptr) {
    GemmAvx2(xp, m, w, FloatOut{row_scale, y}, parallel);
  } else {
    GemmAvx2(xp, m, w, Int32Out{acc}, parallel);
  }
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
  const size_t block_bytes = Int8PackedBlockBytes(p);
  for (int j = 0; j < n; ++j) {
    const int b = j / kAvx2Cols, c = j % kAvx2Cols;
    int8_t* block = p.data.data() + size_t(b) * block_bytes;
    // AVX2 reads x itself: no offset to take back, only the scales.
    const float scale = col_scale ? col_scale[j] : 1.0f;
    std::memcpy(block + 4 * c, &scale, 4);
    int8_t* chunks = block + kAvx2HeaderBytes;
    for (int kk = 0; kk < k; ++kk) {
      chunks[size_t(kk / 4) * kAvx2ChunkBytes + 4 * c + kk % 4] =
          w[size_t(j) * k + kk];
    }
  }
  return p;
}

size_t Int8KernelRowBytes(const Int8PackedWeights& w) {
  if (w.isa == Int8KernelIsa::kAvx512Vnni) {
    return size_t(w.k + kVnniRowAlign - 1) / kVnniRowAlign * kVnniRowAlign;
  }
  // The int16 form's rows, the larger.
  return Avx2PaddedK(w.k) * sizeof(int16_t);
}

int Int8PackedBlocks(const Int8PackedWeights& w) {
  const int cols =
      w.isa == Int8KernelIsa::kAvx512Vnni ? kVnniBlockCols : kAvx2Cols;
  return (w.n + cols - 1) / cols;
}

size_t Int8PackedBlockBytes(const Int8PackedWeights& w) {
  if (w.isa == Int8KernelIsa::kAvx512Vnni) return VnniBlockBytes(w.k);
  return Avx2BlockBytes(w.k);
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
  BlocksAvx2(xu, Avx2Int16(m), 0, m, w, FloatOut{row_scale, y}, b0, b1);
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
