#include "runtime/linear/int8_gemm_vnni.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "runtime/linear/vnni_dpbusd.h"

namespace spikeserve {
namespace {

constexpr int kHeaderBytes = kVnniHeaderBytes;
constexpr int kChunkK = 4;  // k per 64-byte chunk (vpdpbusd's 4)
// Rows x blocks of one pass with many rows: 24 int32 accumulators, 4
// weight registers and a broadcast of the 32. Blocks are grouped in units
// of kUnitBlocks for it.
constexpr int kRowTile = 6;
constexpr int kUnitBlocks = 4;
// From this many rows the blocks are passed in units (fewer: one block at
// a time, each row's own accumulators).
constexpr int kUnitRows = 4;
// Prefill: a thread passes panels of about kPanelBytes of x rows (L1) over
// chunks of about kChunkBytes of weights (L2), as w4_gemm.cc does, and the
// team splits the rows (every share equal) from kSplitRowsPerThread rows
// per thread on; below that, decode-sized batches split the blocks.
constexpr int kPanelBytes = 24 << 10;
constexpr size_t kChunkBytes = size_t(384) << 10;
constexpr int kSplitRowsPerThread = 48;
// How far ahead of the current chunk a thread prefetches its stream when it
// comes from DRAM (decode; int8_gemm_packed.cc's figure).
constexpr int kPrefetchBytes = 4096;

#define SPIKESERVE_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))

int Chunks(int k) { return (k + kChunkK - 1) / kChunkK; }

inline int32_t Load4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// The out rows from row r0 (the tiles see their own rows from 0).
VnniOut RowsFrom(const VnniOut& o, int r0, int n) {
  VnniOut s = o;
  if (s.acc) s.acc += size_t(r0) * n;
  if (s.y) {
    s.y += size_t(r0) * n;
    s.row_scale += r0;
  }
  return s;
}

// GCC 12 warns that the undefined pass-through operand of its own
// conversion and masked-store intrinsics is uninitialized: a false positive
// of its headers (w4_gemm.cc has the same), silenced here only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__  // GCC only; clang has no such group
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// The sums s of row r for the block whose header is h, columns [j, j + 16)
// of n (masked past n).
SPIKESERVE_VNNI inline void Store(const VnniOut& out, int r, int j, int n,
                                  const int8_t* h, __m512i s) {
  const int live = std::min(kVnniBlockCols, n - j);
  const __mmask16 mask = __mmask16((1u << live) - 1);
  s = _mm512_sub_epi32(s, _mm512_loadu_si512(h));
  if (out.y == nullptr) {
    _mm512_mask_storeu_epi32(out.acc + size_t(r) * n + j, mask, s);
    return;
  }
  const __m512 scale =
      _mm512_mul_ps(_mm512_set1_ps(out.row_scale[r]), _mm512_loadu_ps(h + 64));
  _mm512_mask_storeu_ps(out.y + size_t(r) * n + j, mask,
                        _mm512_mul_ps(_mm512_cvtepi32_ps(s), scale));
}

// R rows of xu against B adjacent blocks (block_bytes apart) from blk, the
// first block's first column j. Per chunk: B weight loads and R broadcasts
// feed R·B vpdpbusd.
template <int R, int B>
SPIKESERVE_VNNI void Tile(const uint8_t* xu, size_t stride, int chunks,
                          const int8_t* blk, size_t block_bytes,
                          const VnniOut& out, int j, int n) {
  __m512i acc[B][R];
#pragma GCC unroll 8
  for (int b = 0; b < B; ++b) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[b][r] = _mm512_setzero_si512();
  }
  const int8_t* wp = blk + kHeaderBytes;
  for (int c = 0; c < chunks; ++c) {
    __m512i wv[B];
#pragma GCC unroll 8
    for (int b = 0; b < B; ++b) {
      const int8_t* p = wp + b * block_bytes + 64 * size_t(c);
      if (R <= 2) _mm_prefetch(p + kPrefetchBytes, _MM_HINT_T0);
      wv[b] = _mm512_loadu_si512(p);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512i xb = _mm512_set1_epi32(Load4(xu + r * stride + 4 * c));
#pragma GCC unroll 8
      for (int b = 0; b < B; ++b) {
        Dpbusd(acc[b][r], xb, wv[b]);
      }
    }
  }
#pragma GCC unroll 8
  for (int b = 0; b < B; ++b) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      Store(out, r, j + kVnniBlockCols * b, n, blk + b * block_bytes,
            acc[b][r]);
    }
  }
}

// One row against one block (decode): four accumulators in turn, so that
// each 5-cycle vpdpbusd chain takes every fourth chunk; the block is one
// sequential stream, prefetched ahead.
SPIKESERVE_VNNI void RowBlock(const uint8_t* xu, int chunks, const int8_t* blk,
                              const VnniOut& out, int j, int n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  const int8_t* wp = blk + kHeaderBytes;
  int c = 0;
  for (; c + 4 <= chunks; c += 4) {
    const int8_t* p = wp + 64 * size_t(c);
    _mm_prefetch(p + kPrefetchBytes, _MM_HINT_T0);
    _mm_prefetch(p + kPrefetchBytes + 64, _MM_HINT_T0);
    _mm_prefetch(p + kPrefetchBytes + 128, _MM_HINT_T0);
    _mm_prefetch(p + kPrefetchBytes + 192, _MM_HINT_T0);
    const uint8_t* x = xu + 4 * c;
    Dpbusd(a0, _mm512_set1_epi32(Load4(x)), _mm512_loadu_si512(p));
    Dpbusd(a1, _mm512_set1_epi32(Load4(x + 4)), _mm512_loadu_si512(p + 64));
    Dpbusd(a2, _mm512_set1_epi32(Load4(x + 8)), _mm512_loadu_si512(p + 128));
    Dpbusd(a3, _mm512_set1_epi32(Load4(x + 12)), _mm512_loadu_si512(p + 192));
  }
  for (; c < chunks; ++c) {
    Dpbusd(a0, _mm512_set1_epi32(Load4(xu + 4 * c)),
           _mm512_loadu_si512(wp + 64 * size_t(c)));
  }
  const __m512i s =
      _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3));
  Store(out, 0, j, n, blk, s);
}
#pragma GCC diagnostic pop

// The tile for the last `rows` (<= R) rows: R, R - 1, ... down to 1 (one
// row of one block: RowBlock).
template <int R, int B>
void TailTile(int rows, const uint8_t* xu, size_t stride, int chunks,
              const int8_t* blk, size_t bb, const VnniOut& out, int j, int n) {
  if constexpr (R == 1 && B == 1) {
    RowBlock(xu, chunks, blk, out, j, n);
  } else if constexpr (R == 1) {
    Tile<1, B>(xu, stride, chunks, blk, bb, out, j, n);
  } else {
    if (rows == R) {
      Tile<R, B>(xu, stride, chunks, blk, bb, out, j, n);
    } else {
      TailTile<R - 1, B>(rows, xu, stride, chunks, blk, bb, out, j, n);
    }
  }
}

// Every one of m rows against B blocks from block b, kRowTile rows at a
// time, then the tail tile.
template <int B>
void Rows(const uint8_t* xu, size_t stride, int m, const Int8PackedWeights& w,
          const VnniOut& out, int b) {
  const int chunks = Chunks(w.k);
  const size_t bb = VnniBlockBytes(w.k);
  const int8_t* blk = w.data.data() + size_t(b) * bb;
  const int j = b * kVnniBlockCols;
  int r = 0;
  for (; r + kRowTile <= m; r += kRowTile) {
    Tile<kRowTile, B>(xu + r * stride, stride, chunks, blk, bb,
                      RowsFrom(out, r, w.n), j, w.n);
  }
  if (r < m) {
    TailTile<kRowTile - 1, B>(m - r, xu + r * stride, stride, chunks, blk, bb,
                              RowsFrom(out, r, w.n), j, w.n);
  }
}

}  // namespace

size_t VnniBlockBytes(int k) { return kHeaderBytes + size_t(Chunks(k)) * 64; }

void VnniPack(const int8_t* w, int n, int k, const int32_t* sums,
              const float* col_scale, int8_t* data) {
  const size_t bb = VnniBlockBytes(k);
  for (int j = 0; j < n; ++j) {
    int8_t* blk = data + size_t(j / kVnniBlockCols) * bb;
    const int c = j % kVnniBlockCols;
    // The kernel reads x + 128 and takes 128·Σw back.
    const int32_t offset = 128 * sums[j];
    const float scale = col_scale ? col_scale[j] : 1.0f;
    std::memcpy(blk + 4 * c, &offset, 4);
    std::memcpy(blk + 64 + 4 * c, &scale, 4);
    for (int kk = 0; kk < k; ++kk) {
      blk[kHeaderBytes + size_t(kk / kChunkK) * 64 + 4 * c + kk % kChunkK] =
          w[size_t(j) * k + kk];
    }
  }
}

void VnniBlocks(const uint8_t* xu, size_t stride, int m,
                const Int8PackedWeights& w, const VnniOut& out, int b0,
                int b1) {
  int b = b0;
  if (m >= kUnitRows) {
    for (; b + kUnitBlocks <= b1; b += kUnitBlocks) {
      Rows<kUnitBlocks>(xu, stride, m, w, out, b);
    }
    switch (b1 - b) {
      case 3:
        Rows<3>(xu, stride, m, w, out, b);
        return;
      case 2:
        Rows<2>(xu, stride, m, w, out, b);
        return;
      default:
        break;
    }
  }
  for (; b < b1; ++b) Rows<1>(xu, stride, m, w, out, b);
}

void VnniGemm(const uint8_t* xu, size_t stride, int m,
              const Int8PackedWeights& w, const VnniOut& out, bool parallel) {
  const int blocks = Int8PackedBlocks(w);
  const int panel =
      std::max(kRowTile, int(kPanelBytes / stride) / kRowTile * kRowTile);
  const int chunk =
      std::max<int>(kUnitBlocks, int(kChunkBytes / VnniBlockBytes(w.k)) /
                                     kUnitBlocks * kUnitBlocks);
#pragma omp parallel if (parallel)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    if (m >= kSplitRowsPerThread * nt) {
      // This thread's rows, in panels over chunks of every block.
      const int r_begin = int(int64_t(m) * t / nt);
      const int r_end = int(int64_t(m) * (t + 1) / nt);
      for (int c0 = 0; c0 < blocks; c0 += chunk) {
        const int c1 = std::min(blocks, c0 + chunk);
        for (int p0 = r_begin; p0 < r_end; p0 += panel) {
          const int pm = std::min(panel, r_end - p0);
          VnniBlocks(xu + p0 * stride, stride, pm, w, RowsFrom(out, p0, w.n),
                     c0, c1);
        }
      }
    } else {
      // This thread's blocks, for every row.
      const int b_begin = int(int64_t(blocks) * t / nt);
      const int b_end = int(int64_t(blocks) * (t + 1) / nt);
      VnniBlocks(xu, stride, m, w, out, b_begin, b_end);
    }
  }
}

}  // namespace spikeserve
