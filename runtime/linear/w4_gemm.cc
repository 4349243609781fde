#include "runtime/linear/w4_gemm.h"

#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/gguf/dequantize.h"
#include "runtime/linear/cpu_dispatch.h"
#include "runtime/linear/parallel_rows.h"
#include "runtime/linear/vnni_dpbusd.h"
#include "runtime/linear/w4_gemm_amx.h"

namespace spikeserve {
namespace {

// Fork OpenMP threads only above this many weight nibbles times rows
// (m·N·K), as the INT8 kernel does (int8_gemm_packed.cc).
constexpr int64_t kParallelMacs = int64_t(1) << 18;
// Rows of x that share one pass over the weights: each unpacked weight
// register serves this many rows. AVX2's 16 registers hold 4 (int16 runs,
// int32 and float accumulators). AVX-512 VNNI reads two blocks per pass
// from kVnniPairRows rows on (6 rows x 2 blocks: 12 int32 and 12 float
// accumulators of 16 lanes, 4 unpacked weights, 2 broadcasts), else one
// block for up to 8 rows. linear_bench --benchmark_filter=W4VnniKernelHot,
// Xeon (Ice Lake), one thread, 512 rows of 576 x 960: 4 rows x 1 block 137,
// 8 x 1 155, 6 x 2 183 G multiply-adds/s (64 rows: 138 -> 211); 4, 5 or 6
// rows x 2 blocks measure alike.
constexpr int kRowTileAvx2 = 4;
constexpr int kRowTileVnni = 8;
constexpr int kRowTileVnniPair = 6;
constexpr int kVnniPairRows = 4;
// AVX2: chunks whose int16 products are summed before widening to int32
// (see BlockAvx2 for the bound).
constexpr int kInt16Chunks = 4;
// W4GroupSums forks the team from this many rows (prefill; as the row
// loops of quantization do).
constexpr int kParallelSumRows = 32;
// Many rows (prefill): a thread takes its units (columns) in chunks of
// about kChunkBytes of weights, which stay in L2, and passes panels of
// about kPanelBytes of x rows, which stay in L1, over each chunk's units:
// the kernels load every activation broadcast from memory (12 per chunk
// of 8 k on VNNI's 6-row tiles), so from L2 they stalled. Panels are whole
// multiples of kPanelRowStep rows (4- and 6-row tiles), at least one.
// Measured on the Ice Lake Xeon (SmolLM2-135M W4A8, 512-token prefill, 20
// each way alternating in one process, paired medians): all rows at once
// -> 24 KiB panels +25% (32 KiB +23%, 48 KiB -5%; 24-row panels +18%);
// chunks of 384 KiB against unlimited +24% / +13% (192 KiB +17%).
// TinyLlama-1.1B's shape (K = 2048): +0.7%, neutral.
constexpr int kPanelBytes = 24 << 10;
constexpr size_t kChunkBytes = size_t(384) << 10;
constexpr int kPanelRowStep = 12;
// How far ahead of the current chunk a thread prefetches its stream.
constexpr int kPrefetchBytes = 2048;

#define SPIKESERVE_AVX2 __attribute__((target("avx2,fma,f16c")))
#define SPIKESERVE_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512vnni,fma,f16c")))

int ColumnsOf(W4KernelIsa isa) {
  return isa == W4KernelIsa::kAvx512Vnni ? 16 : 8;
}

inline int32_t Load4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// GCC 12 warns that the undefined pass-through operand of its own
// conversion intrinsics is uninitialized: a false positive of its headers
// (int8_gemm_packed.cc has the same), silenced here only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__  // GCC only; clang has no such group
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// B adjacent blocks of 16 columns (B·16 columns, the blocks block_bytes
// apart) for R rows of x; y rows of n, the first block's first column j0.
// Each activation broadcast serves the B blocks, each unpacked weight
// register the R rows: per chunk, B weight loads and 2·R broadcasts feed
// 2·R·B vpdpbusd (with B = 1 the broadcasts, which take the load ports,
// bound the loop below half of vpdpbusd's rate).
template <int R, int B>
SPIKESERVE_VNNI void BlockVnni(const int8_t* x, size_t x_stride,
                               const int32_t* sums, int groups,
                               const uint8_t* wb, size_t block_bytes, int group,
                               bool has_min, const float* row_scale, float* y,
                               int n, int j0) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const int chunks = group / 8;
  const size_t group_bytes = W4GroupBytes(16, group, has_min);
  const size_t head = has_min ? 64 : 32;  // the group's scales (and mins)
  // At most two accumulators (one row; decode): the low and the high
  // nibbles' products in separate ones, so that a chunk adds one 5-cycle
  // vpdpbusd to each chain, not two (more rows and blocks give the core
  // independent chains already, and no registers are left for a split).
  constexpr bool kSplit = R * B <= 2;
  __m512 yf[B][R];
#pragma GCC unroll 8
  for (int b = 0; b < B; ++b) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) yf[b][r] = _mm512_setzero_ps();
  }
  for (int g = 0; g < groups; ++g) {
    const uint8_t* gb = wb + size_t(g) * group_bytes;
    __m512i acc[B][R], acc_hi[B][R];
#pragma GCC unroll 8
    for (int b = 0; b < B; ++b) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        acc[b][r] = _mm512_setzero_si512();
        if (kSplit) acc_hi[b][r] = _mm512_setzero_si512();
      }
    }
    const int k0 = g * group;
    for (int c = 0; c < chunks; ++c) {
      const uint8_t* chunk = gb + head + size_t(c) * 64;
      __m512i lo[B], hi[B];
#pragma GCC unroll 8
      for (int b = 0; b < B; ++b) {
        const uint8_t* cb = chunk + b * block_bytes;
        _mm_prefetch(reinterpret_cast<const char*>(cb) + kPrefetchBytes,
                     _MM_HINT_T0);
        const __m512i wv = _mm512_loadu_si512(cb);
        lo[b] = _mm512_and_si512(wv, low4);
        hi[b] = _mm512_and_si512(_mm512_srli_epi16(wv, 4), low4);
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const int8_t* xr = x + r * x_stride + k0 + 8 * c;
        const __m512i x0 = _mm512_set1_epi32(Load4(xr));
        const __m512i x1 = _mm512_set1_epi32(Load4(xr + 4));
#pragma GCC unroll 8
        for (int b = 0; b < B; ++b) {
          Dpbusd(acc[b][r], lo[b], x0);
          Dpbusd(kSplit ? acc_hi[b][r] : acc[b][r], hi[b], x1);
        }
      }
    }
#pragma GCC unroll 8
    for (int b = 0; b < B; ++b) {
      const uint8_t* sb = gb + b * block_bytes;
      const __m512 d = _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb)));
      __m512 mn = _mm512_setzero_ps();
      if (has_min) {
        mn = _mm512_cvtph_ps(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb + 32)));
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        __m512i s = acc[b][r];
        if (kSplit) s = _mm512_add_epi32(s, acc_hi[b][r]);
        const int32_t xs = sums[size_t(r) * groups + g];
        if (has_min) {
          yf[b][r] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), yf[b][r]);
          yf[b][r] = _mm512_fmadd_ps(mn, _mm512_set1_ps(float(xs)), yf[b][r]);
        } else {
          s = _mm512_sub_epi32(s, _mm512_set1_epi32(8 * xs));
          yf[b][r] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), yf[b][r]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int b = 0; b < B; ++b) {
    const int jb = j0 + 16 * b;
    const int live = std::min(16, n - jb);
    const __mmask16 mask = __mmask16((1u << live) - 1);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 out = _mm512_mul_ps(yf[b][r], _mm512_set1_ps(row_scale[r]));
      _mm512_mask_storeu_ps(y + size_t(r) * n + jb, mask, out);
    }
  }
}

#pragma GCC diagnostic pop

// One chunk (8 k of 8 columns) of the packed weights into the int16 sums p
// of R rows of x (x: the chunk's first k in row 0).
template <int R>
SPIKESERVE_AVX2 inline __attribute__((always_inline)) void ChunkAvx2(
    const uint8_t* chunk, const int8_t* x, size_t x_stride, __m256i low4,
    __m256i* p) {
  _mm_prefetch(reinterpret_cast<const char*>(chunk) + kPrefetchBytes,
               _MM_HINT_T0);
  const __m256i wv =
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(chunk));
  const __m256i lo = _mm256_and_si256(wv, low4);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), low4);
  for (int r = 0; r < R; ++r) {
    const int8_t* xr = x + r * x_stride;
    const __m256i plo = _mm256_maddubs_epi16(lo, _mm256_set1_epi32(Load4(xr)));
    const __m256i phi =
        _mm256_maddubs_epi16(hi, _mm256_set1_epi32(Load4(xr + 4)));
    p[r] = _mm256_add_epi16(p[r], _mm256_add_epi16(plo, phi));
  }
}

// The same as BlockVnni for 8 columns with AVX2: vpmaddubsw gives int16
// pair sums (each at most 2·15·128 = 3840 in magnitude, the low and high
// nibbles' together 7680), summed in int16 over runs of kInt16Chunks chunks
// (at most 30720 < 32767: exact, no wrap), then vpmaddwd folds each run to
// the 4-k int32 lanes. kOneRun: the group is one run (group 32), whose
// int32 sums go straight to the float epilogue with no accumulator of
// their own; kMin: the group has a minimum (w = d·u + min). Both are
// template arguments so that a tile of 4 rows keeps its int16 sums, float
// sums and constants in the 16 registers: with a runtime `has_min` and an
// accumulator per row GCC spilled in the group loop, and group 32 with
// minimums (the GPTQ plans) ran at 0.64x group 128's multiply-adds.
template <int R, bool kOneRun, bool kMin>
SPIKESERVE_AVX2 void BlockAvx2Form(const int8_t* x, size_t x_stride,
                                   const int32_t* sums, int groups,
                                   const uint8_t* wb, int group,
                                   const float* row_scale, float* y, int n,
                                   int j0) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 yf[R];
  for (int r = 0; r < R; ++r) yf[r] = _mm256_setzero_ps();
  const int chunks = group / 8;
  for (int g = 0; g < groups; ++g) {
    const __m256 d =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb)));
    const uint8_t* chunk = wb + (kMin ? 32 : 16);
    const int k0 = g * group;
    __m256i acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_si256();
    // chunks is 4, 8 or 16 (group 32, 64, 128): whole runs of kInt16Chunks.
    for (int c0 = 0; c0 < chunks; c0 += kInt16Chunks) {
      __m256i p[R];
      for (int r = 0; r < R; ++r) p[r] = _mm256_setzero_si256();
      // Unrolled for one row only: for several, GCC's full unroll held
      // every product of the run at once and spilled them to the stack
      // (11-13% fewer multiply-adds per second at 64 and 512 rows).
      if constexpr (R == 1) {
#pragma GCC unroll 4
        for (int c = c0; c < c0 + kInt16Chunks; ++c, chunk += 32) {
          ChunkAvx2<R>(chunk, x + k0 + 8 * c, x_stride, low4, p);
        }
      } else {
#pragma GCC unroll 1
        for (int c = c0; c < c0 + kInt16Chunks; ++c, chunk += 32) {
          ChunkAvx2<R>(chunk, x + k0 + 8 * c, x_stride, low4, p);
        }
      }
      for (int r = 0; r < R; ++r) {
        const __m256i run = _mm256_madd_epi16(p[r], ones);
        acc[r] = kOneRun ? run : _mm256_add_epi32(acc[r], run);
      }
      if constexpr (kOneRun) break;
    }
    // The group sums X[r][g] as vectors: vpbroadcastd from memory, then
    // vcvtdq2ps / vpslld. float(xs) in a scalar register compiled to
    // vcvtsi2ss, which merges into (and waits for) an unrelated register.
    for (int r = 0; r < R; ++r) {
      const __m256i xs = _mm256_set1_epi32(sums[size_t(r) * groups + g]);
      if constexpr (kMin) {
        const __m256 mn = _mm256_cvtph_ps(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + 16)));
        yf[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(acc[r]), yf[r]);
        yf[r] = _mm256_fmadd_ps(mn, _mm256_cvtepi32_ps(xs), yf[r]);
      } else {
        const __m256i s = _mm256_sub_epi32(acc[r], _mm256_slli_epi32(xs, 3));
        yf[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), yf[r]);
      }
    }
    wb = chunk;
  }
  const int live = std::min(8, n - j0);
  for (int r = 0; r < R; ++r) {
    const __m256 out = _mm256_mul_ps(yf[r], _mm256_set1_ps(row_scale[r]));
    if (live == 8) {
      _mm256_storeu_ps(y + size_t(r) * n + j0, out);
    } else {
      alignas(32) float v[8];
      _mm256_store_ps(v, out);
      std::copy(v, v + live, y + size_t(r) * n + j0);
    }
  }
}

template <int R>
void BlockAvx2(const int8_t* x, size_t x_stride, const int32_t* sums,
               int groups, const uint8_t* wb, int group, bool has_min,
               const float* row_scale, float* y, int n, int j0) {
  const bool one_run = group == 8 * kInt16Chunks;
  if (one_run && has_min) {
    BlockAvx2Form<R, true, true>(x, x_stride, sums, groups, wb, group,
                                 row_scale, y, n, j0);
  } else if (one_run) {
    BlockAvx2Form<R, true, false>(x, x_stride, sums, groups, wb, group,
                                  row_scale, y, n, j0);
  } else if (has_min) {
    BlockAvx2Form<R, false, true>(x, x_stride, sums, groups, wb, group,
                                  row_scale, y, n, j0);
  } else {
    BlockAvx2Form<R, false, false>(x, x_stride, sums, groups, wb, group,
                                   row_scale, y, n, j0);
  }
}

// R rows of x against B blocks (AVX2: one), on the kernel of the ISA.
template <bool kVnni, int R, int B>
void Tile(const int8_t* x, size_t x_stride, const int32_t* sums, int groups,
          const W4PackedWeights& w, const uint8_t* wb, size_t block_bytes,
          const float* row_scale, float* y, int j0) {
  if constexpr (kVnni) {
    BlockVnni<R, B>(x, x_stride, sums, groups, wb, block_bytes, w.group,
                    w.has_min, row_scale, y, w.n, j0);
  } else {
    static_assert(B == 1, "the AVX2 kernel reads one block per pass");
    BlockAvx2<R>(x, x_stride, sums, groups, wb, w.group, w.has_min, row_scale,
                 y, w.n, j0);
  }
}

// The tile for the last `rows` (< R) rows: R - 1, R - 2, ... down to 1.
template <bool kVnni, int R, int B>
void TailTile(int rows, const int8_t* x, size_t x_stride, const int32_t* sums,
              int groups, const W4PackedWeights& w, const uint8_t* wb,
              size_t block_bytes, const float* row_scale, float* y, int j0) {
  if constexpr (R > 1) {
    if (rows == R - 1) {
      Tile<kVnni, R - 1, B>(x, x_stride, sums, groups, w, wb, block_bytes,
                            row_scale, y, j0);
    } else {
      TailTile<kVnni, R - 1, B>(rows, x, x_stride, sums, groups, w, wb,
                                block_bytes, row_scale, y, j0);
    }
  }
}

// Every row of x against B blocks from wb, kTile rows at a time (the
// blocks are read from L1/L2 after the first tile).
template <bool kVnni, int B, int kTile>
void Columns(const int8_t* x, const int32_t* sums, int m,
             const W4PackedWeights& w, const uint8_t* wb, size_t block_bytes,
             const float* row_scale, float* y, int j0) {
  const int groups = w.k / w.group;
  const size_t xs = size_t(w.k);
  for (int r = 0; r < m; r += kTile) {
    const int rows = std::min(kTile, m - r);
    const int8_t* xr = x + r * xs;
    const int32_t* sr = sums + size_t(r) * groups;
    float* yr = y + size_t(r) * w.n;
    const float* rs = row_scale + r;
    if (rows == kTile) {
      Tile<kVnni, kTile, B>(xr, xs, sr, groups, w, wb, block_bytes, rs, yr, j0);
    } else {
      TailTile<kVnni, kTile, B>(rows, xr, xs, sr, groups, w, wb, block_bytes,
                                rs, yr, j0);
    }
  }
}

}  // namespace

size_t W4GroupBytes(int columns, int group, bool has_min) {
  return size_t(columns) * 2 * (has_min ? 2 : 1) +
         size_t(group / 8) * 4 * columns;
}

size_t W4BlockBytes(const W4PackedWeights& w) {
  return size_t(w.k / w.group) *
         W4GroupBytes(ColumnsOf(w.isa), w.group, w.has_min);
}

const char* W4KernelIsaName(W4KernelIsa isa) {
  return isa == W4KernelIsa::kAvx512Vnni ? "avx512_vnni" : "avx2";
}

bool W4KernelSupported(W4KernelIsa isa) {
  // F16C from CPUID itself: clang's __builtin_cpu_supports does not know
  // the name (the fuzz build compiles this file with clang).
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
  const bool base =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  if (isa == W4KernelIsa::kAvx2) return base;
  return base && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vnni");
}

void QuantizeW4Row(const float* w, int k, int group, uint8_t* u,
                   uint16_t* scale) {
  for (int g = 0; g * group < k; ++g) {
    const float* v = w + size_t(g) * group;
    float peak = 0;  // the value of largest magnitude, with its sign
    for (int i = 0; i < group; ++i) {
      if (std::fabs(v[i]) > std::fabs(peak)) peak = v[i];
    }
    const uint16_t dh = FloatToHalf(peak / -8.0f);
    scale[g] = dh;
    const float d = HalfToFloat(dh);
    const float inv = d != 0 ? 1.0f / d : 0.0f;
    for (int i = 0; i < group; ++i) {
      const float q = std::nearbyint(v[i] * inv);
      u[size_t(g) * group + i] = uint8_t(std::clamp(q, -8.0f, 7.0f) + 8.0f);
    }
  }
}

void QuantizeW4RowMin(const float* w, int k, int group, uint8_t* u,
                      uint16_t* scale, uint16_t* min) {
  for (int g = 0; g * group < k; ++g) {
    const float* v = w + size_t(g) * group;
    float lo = v[0], hi = v[0];
    for (int i = 1; i < group; ++i) {
      lo = std::min(lo, v[i]);
      hi = std::max(hi, v[i]);
    }
    const uint16_t mh = FloatToHalf(lo);
    const float mn = HalfToFloat(mh);
    const uint16_t dh = FloatToHalf((hi - mn) / 15.0f);
    scale[g] = dh;
    min[g] = mh;
    const float d = HalfToFloat(dh);
    const float inv = d != 0 ? 1.0f / d : 0.0f;
    for (int i = 0; i < group; ++i) {
      const float q = std::nearbyint((v[i] - mn) * inv);
      u[size_t(g) * group + i] = uint8_t(std::clamp(q, 0.0f, 15.0f));
    }
  }
}

void DequantizeW4Row(const W4Plain& p, int row, float* w) {
  const int groups = p.groups();
  for (int g = 0; g < groups; ++g) {
    const float d = HalfToFloat(p.scale[size_t(row) * groups + g]);
    const float mn =
        p.has_min ? HalfToFloat(p.min[size_t(row) * groups + g]) : 0.0f;
    for (int i = 0; i < p.group; ++i) {
      const int k = g * p.group + i;
      const int u = p.u[size_t(row) * p.k + k];
      w[k] = p.has_min ? d * float(u) + mn : d * float(u - 8);
    }
  }
}

W4PackedWeights PackW4Weights(const W4Plain& p, W4KernelIsa isa) {
  W4PackedWeights out;
  out.isa = isa;
  out.n = p.n;
  out.k = p.k;
  out.group = p.group;
  out.has_min = p.has_min;
  const int C = ColumnsOf(isa), groups = p.groups();
  const int blocks = (p.n + C - 1) / C;
  const size_t group_bytes = W4GroupBytes(C, p.group, p.has_min);
  out.data.assign(size_t(blocks) * groups * group_bytes, 0);
  for (int b = 0; b < blocks; ++b) {
    for (int g = 0; g < groups; ++g) {
      uint8_t* gb = out.data.data() + (size_t(b) * groups + g) * group_bytes;
      uint8_t* chunks = gb + size_t(C) * 2 * (p.has_min ? 2 : 1);
      for (int j = 0; j < C; ++j) {
        const int n = b * C + j;
        if (n >= p.n) break;  // padding columns: zero scales and nibbles
        const size_t gi = size_t(n) * groups + g;
        std::memcpy(gb + 2 * j, &p.scale[gi], 2);
        if (p.has_min) std::memcpy(gb + 2 * (C + j), &p.min[gi], 2);
        const uint8_t* un = p.u.data() + size_t(n) * p.k + size_t(g) * p.group;
        for (int c = 0; c < p.group / 8; ++c) {
          for (int t = 0; t < 4; ++t) {
            chunks[size_t(c) * 4 * C + 4 * j + t] =
                uint8_t(un[8 * c + t] | (un[8 * c + 4 + t] << 4));
          }
        }
      }
    }
  }
  return out;
}

namespace {

// One row's group sums, 32 bytes at a time: vpsadbw sums x + 128 (as u8)
// in 8-byte pieces, exactly; 128 per byte comes off at the end. The scalar
// loop took 1.35 us for 1536 values on Zen 3 (a decode step's serial path).
SPIKESERVE_AVX2 void GroupSumsAvx2(const int8_t* v, int groups, int group,
                                   int32_t* sums) {
  const __m256i flip = _mm256_set1_epi8(char(0x80));
  const __m256i zero = _mm256_setzero_si256();
  for (int g = 0; g < groups; ++g, v += group) {
    __m256i acc = zero;
    for (int i = 0; i < group; i += 32) {
      const __m256i b =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + i));
      acc = _mm256_add_epi64(acc,
                             _mm256_sad_epu8(_mm256_xor_si256(b, flip), zero));
    }
    __m128i s = _mm_add_epi64(_mm256_castsi256_si128(acc),
                              _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
    sums[g] = int32_t(_mm_cvtsi128_si64(s)) - 128 * group;
  }
}

}  // namespace

void W4GroupSums(const int8_t* x, int m, int k, int group, int32_t* sums) {
  const int groups = k / group;
  ParallelRows(m, m >= kParallelSumRows, [&](int r) {
    if (CpuHasAvx2() && group % 32 == 0) {
      GroupSumsAvx2(x + size_t(r) * k, groups, group,
                    sums + size_t(r) * groups);
      return;
    }
    for (int g = 0; g < groups; ++g) {
      const int8_t* v = x + size_t(r) * k + size_t(g) * group;
      int32_t s = 0;
      for (int i = 0; i < group; ++i) s += v[i];
      sums[size_t(r) * groups + g] = s;
    }
  });
}

namespace {

int BlockCount(const W4PackedWeights& w) {
  const int C = ColumnsOf(w.isa);
  return (w.n + C - 1) / C;
}

// Blocks per unit of work: two adjacent blocks share a pass (VNNI, enough
// rows), the last unit of an odd count has one.
int BlocksPerUnit(const W4PackedWeights& w, int m) {
  return w.isa == W4KernelIsa::kAvx512Vnni && m >= kVnniPairRows ? 2 : 1;
}

// Unit u's columns (BlocksPerUnit(w, m) blocks from block u * that) for
// the pm rows from row p0 of the m. Each output is computed alike whatever
// its tile.
void RunUnit(const int8_t* x, const int32_t* sums, int m,
             const W4PackedWeights& w, const float* row_scale, float* y, int u,
             int p0, int pm) {
  const int C = ColumnsOf(w.isa), groups = w.k / w.group;
  const size_t block_bytes = W4BlockBytes(w);
  const int per_unit = BlocksPerUnit(w, m);
  const int b = u * per_unit;
  const uint8_t* wb = w.data.data() + size_t(b) * block_bytes;
  const int8_t* xp = x + size_t(p0) * w.k;
  const int32_t* sp = sums + size_t(p0) * groups;
  const float* rp = row_scale + p0;
  float* yp = y + size_t(p0) * w.n;
  if (w.isa != W4KernelIsa::kAvx512Vnni) {
    Columns<false, 1, kRowTileAvx2>(xp, sp, pm, w, wb, block_bytes, rp, yp,
                                    b * C);
  } else if (per_unit == 2 && b + 1 < BlockCount(w)) {
    Columns<true, 2, kRowTileVnniPair>(xp, sp, pm, w, wb, block_bytes, rp, yp,
                                       b * C);
  } else {
    Columns<true, 1, kRowTileVnni>(xp, sp, pm, w, wb, block_bytes, rp, yp,
                                   b * C);
  }
}

}  // namespace

void W4Gemm(const int8_t* x, const int32_t* sums, int m,
            const W4PackedWeights& w, const float* row_scale, float* y) {
  if (w.amx_min_rows > 0 && m >= w.amx_min_rows) {
    W4GemmAmx(x, sums, m, w, row_scale, y);
    return;
  }
  const int per_unit = BlocksPerUnit(w, m);
  const int units = W4Units(w, m);
  const bool parallel = int64_t(m) * w.n * w.k >= kParallelMacs;
  // Panels of x rows over chunks of units (see kPanelBytes); decode is one
  // panel of one row.
  const int panel = std::max(kPanelRowStep,
                             kPanelBytes / w.k / kPanelRowStep * kPanelRowStep);
  const int chunk =
      std::max<int>(1, int(kChunkBytes / (size_t(per_unit) * W4BlockBytes(w))));
#pragma omp parallel if (parallel)
  {
    // This thread's units: a contiguous share, as a static schedule gives.
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int u_begin = int(int64_t(units) * t / nt);
    const int u_end = int(int64_t(units) * (t + 1) / nt);
    for (int c0 = u_begin; c0 < u_end; c0 += chunk) {
      const int c1 = std::min(u_end, c0 + chunk);
      for (int p0 = 0; p0 < m; p0 += panel) {
        const int pm = std::min(panel, m - p0);
        for (int u = c0; u < c1; ++u) {
          RunUnit(x, sums, m, w, row_scale, y, u, p0, pm);
        }
      }
    }
  }
}

int W4Units(const W4PackedWeights& w, int m) {
  const int per_unit = BlocksPerUnit(w, m);
  return (BlockCount(w) + per_unit - 1) / per_unit;
}

absl::Span<const uint8_t> W4UnitWeights(const W4PackedWeights& w, int m, int u0,
                                        int u1) {
  const int per_unit = BlocksPerUnit(w, m);
  const int b0 = u0 * per_unit, b1 = std::min(u1 * per_unit, BlockCount(w));
  const size_t bb = W4BlockBytes(w);
  return absl::MakeConstSpan(w.data.data() + size_t(b0) * bb,
                             size_t(b1 - b0) * bb);
}

void W4GemmUnits(const int8_t* x, const int32_t* sums, int m,
                 const W4PackedWeights& w, const float* row_scale, float* y,
                 int u0, int u1) {
  for (int u = u0; u < u1; ++u) RunUnit(x, sums, m, w, row_scale, y, u, 0, m);
}

void W4GemmReference(const int8_t* x, int m, const W4Plain& w,
                     const float* row_scale, float* y) {
  const int groups = w.groups();
  for (int r = 0; r < m; ++r) {
    const int8_t* xr = x + size_t(r) * w.k;
    for (int n = 0; n < w.n; ++n) {
      float acc = 0;
      for (int g = 0; g < groups; ++g) {
        int32_t s = 0, xs = 0;
        for (int i = 0; i < w.group; ++i) {
          const int k = g * w.group + i;
          s += int32_t(w.u[size_t(n) * w.k + k]) * xr[k];
          xs += xr[k];
        }
        const float d = HalfToFloat(w.scale[size_t(n) * groups + g]);
        if (w.has_min) {
          const float mn = HalfToFloat(w.min[size_t(n) * groups + g]);
          acc = std::fma(d, float(s), acc);
          acc = std::fma(mn, float(xs), acc);
        } else {
          acc = std::fma(d, float(s - 8 * xs), acc);
        }
      }
      y[size_t(r) * w.n + n] = acc * row_scale[r];
    }
  }
}

}  // namespace spikeserve
