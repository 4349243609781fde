#include "runtime/linear/int8_gemm_amx.h"

#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "runtime/linear/amx_tiles.h"
#include "runtime/linear/int8_gemm_vnni.h"
#include "runtime/linear/parallel_rows.h"

namespace spikeserve {
namespace {

#define SPIKESERVE_AMX \
  __attribute__((target("avx512f,avx512bw,avx512vnni,amx-tile,amx-int8")))

constexpr int kStepK = 64;  // k per tdpbssd
constexpr int kTileRows = kAmxTileRows;

// GCC 12 warns that the undefined pass-through operand of its own
// conversion and masked-store intrinsics is uninitialized: a false positive
// of its headers (int8_gemm_vnni.cc has the same), silenced here only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__  // GCC only; clang has no such group
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// kRt row tiles (x rows `k` bytes apart) against kNb blocks from block b0;
// writes the `rows` live rows of acc or y (row r of the output at r0 + r).
template <int kRt, int kNb>
SPIKESERVE_AMX void Tiles(const int8_t* x, int rows, int r0,
                          const Int8PackedWeights& w, int b0, int32_t* acc,
                          const float* row_scale, float* y) {
  const size_t bb = VnniBlockBytes(w.k);
  const int8_t* blk = w.data.data() + size_t(b0) * bb;
  _tile_zero(0);
  if (kNb > 1) _tile_zero(1);
  if (kRt > 1) _tile_zero(2);
  if (kRt > 1 && kNb > 1) _tile_zero(3);
  const int8_t* wp = blk + kVnniHeaderBytes;
  for (int k0 = 0; k0 < w.k; k0 += kStepK) {
    // 16 chunks of 64 bytes: the B tile's 16 rows of 4 k.
    const int8_t* wk = wp + size_t(k0 / 4) * 64;
    _tile_loadd(4, x + k0, w.k);
    _tile_loadd(6, wk, 64);
    _tile_dpbssd(0, 4, 6);
    if (kNb > 1) {
      _tile_loadd(7, wk + bb, 64);
      _tile_dpbssd(1, 4, 7);
    }
    if (kRt > 1) {
      _tile_loadd(5, x + size_t(kTileRows) * w.k + k0, w.k);
      _tile_dpbssd(2, 5, 6);
      if (kNb > 1) _tile_dpbssd(3, 5, 7);
    }
  }
  alignas(64) int32_t c[4][kTileRows][16];
  _tile_stored(0, c[0], 64);
  if (kNb > 1) _tile_stored(1, c[1], 64);
  if (kRt > 1) _tile_stored(2, c[2], 64);
  if (kRt > 1 && kNb > 1) _tile_stored(3, c[3], 64);
  for (int b = 0; b < kNb; ++b) {
    const int8_t* h = blk + b * bb;
    const int j = (b0 + b) * kVnniBlockCols;
    const int live = std::min(kVnniBlockCols, w.n - j);
    const __mmask16 mask = __mmask16((1u << live) - 1);
    for (int r = 0; r < rows; ++r) {
      const __m512i s =
          _mm512_load_si512(c[(r / kTileRows) * 2 + b][r % kTileRows]);
      const size_t o = size_t(r0 + r) * w.n + j;
      if (y == nullptr) {
        _mm512_mask_storeu_epi32(acc + o, mask, s);
        continue;
      }
      // The VNNI kernel's epilogue (int8_gemm_vnni.cc, Store).
      const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(row_scale[r0 + r]),
                                         _mm512_loadu_ps(h + 64));
      _mm512_mask_storeu_ps(y + o, mask,
                            _mm512_mul_ps(_mm512_cvtepi32_ps(s), scale));
    }
  }
}
#pragma GCC diagnostic pop

template <int kNb>
SPIKESERVE_AMX void RowPair(const int8_t* x, int rows, int r0,
                            const Int8PackedWeights& w, int b0, int32_t* acc,
                            const float* row_scale, float* y) {
  if (rows > kTileRows) {
    Tiles<2, kNb>(x, rows, r0, w, b0, acc, row_scale, y);
  } else {
    Tiles<1, kNb>(x, rows, r0, w, b0, acc, row_scale, y);
  }
}

// The units [u0, u1) of two blocks each, every row; on the calling thread.
// Rows from `full` on come from `pad` (AmxPadTail).
SPIKESERVE_AMX void RunUnits(const int8_t* x, int m, const int8_t* pad,
                             int full, const Int8PackedWeights& w, int32_t* acc,
                             const float* row_scale, float* y, int u0, int u1) {
  const AmxTileConfig config = AmxConfigFor(kStepK);
  AmxMemoryBarrier();  // the configuration and the padded rows
  _tile_loadconfig(&config);
  const int blocks = Int8PackedBlocks(w);
  for (int u = u0; u < u1; ++u) {
    const int b0 = 2 * u;
    for (int r0 = 0; r0 < m; r0 += 2 * kTileRows) {
      const int rows = std::min(2 * kTileRows, m - r0);
      const int8_t* xr = r0 < full ? x + size_t(r0) * w.k : pad;
      if (b0 + 1 < blocks) {
        RowPair<2>(xr, rows, r0, w, b0, acc, row_scale, y);
      } else {
        RowPair<1>(xr, rows, r0, w, b0, acc, row_scale, y);
      }
    }
  }
  _tile_release();
}

}  // namespace

bool Int8AmxSupported(int k) {
  return k % kStepK == 0 && AmxSupported() &&
         Int8KernelSupported(Int8KernelIsa::kAvx512Vnni);
}

void Int8GemmAmx(const int8_t* x, int m, const Int8PackedWeights& w,
                 int32_t* acc, const float* row_scale, float* y,
                 bool parallel) {
  thread_local std::vector<int8_t> pad;  // the caller's, for the team
  const int full = AmxPadTail(x, m, w.k, &pad);
  const int8_t* padded = pad.data();
  const int units = (Int8PackedBlocks(w) + 1) / 2;
  ParallelShares(units, parallel, [&](int u0, int u1) {
    RunUnits(x, m, padded, full, w, acc, row_scale, y, u0, u1);
  });
}

}  // namespace spikeserve
