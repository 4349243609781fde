#include "runtime/linear/w4_gemm_amx.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "runtime/linear/amx_tiles.h"
#include "runtime/linear/parallel_rows.h"

namespace spikeserve {
namespace {

#define SPIKESERVE_AMX                                        \
  __attribute__((                                             \
      target("avx512f,avx512bw,avx512vnni,fma,f16c,amx-tile," \
             "amx-int8")))

// Columns per unit: two blocks of 16, one tile each.
constexpr int kUnitColumns = 2 * kAmxBlockCols;
constexpr int kTileRows = kAmxTileRows;
// Fork OpenMP threads from this many multiply-adds, as W4Gemm does.
constexpr int64_t kParallelMacs = int64_t(1) << 18;

// Groups whose int32 tiles go to memory before the epilogue takes them
// (16 KiB of sums; L1): the tile work of a chunk issues back to back, and
// the epilogue keeps each output's float sum in a register across them.
constexpr int kChunkGroups = 4;

// A unit (up to two blocks of 16 columns from block b0) as the tiles and
// the epilogue read it: the nibbles as bytes in B's layout,
// b[g][step][block][ks/4 rows][64 bytes] (step: the group's tdpbsud steps
// of ks k; chunk c of a group, 8 k, gives rows 2c, its low nibbles k =
// 8c..8c+3, and 2c + 1, its high nibbles), and the group scales (and
// minimums) as floats, d[g][block][16].
struct Unit {
  int b0 = 0;
  std::vector<uint8_t> b;
  std::vector<float> d, mn;
};

SPIKESERVE_AMX void Unpack(const W4PackedWeights& w, int b0, int nb, int ks,
                           Unit* u) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const int groups = w.k / w.group, steps = w.group / ks;
  const size_t group_bytes = W4GroupBytes(16, w.group, w.has_min);
  const size_t head = w.has_min ? 64 : 32;
  const size_t block_bytes = W4BlockBytes(w);
  const size_t tile_bytes = size_t(ks) * 16;  // ks/4 rows of 64 bytes
  u->b0 = b0;
  u->b.resize(size_t(w.k) * kUnitColumns);
  u->d.resize(size_t(groups) * 2 * 16);
  if (w.has_min) u->mn.resize(u->d.size());
  for (int g = 0; g < groups; ++g) {
    for (int bl = 0; bl < nb; ++bl) {
      const uint8_t* gb = w.data.data() + size_t(b0 + bl) * block_bytes +
                          size_t(g) * group_bytes;
      float* d = u->d.data() + (size_t(g) * 2 + bl) * 16;
      _mm512_storeu_ps(d, _mm512_cvtph_ps(_mm256_loadu_si256(
                              reinterpret_cast<const __m256i*>(gb))));
      if (w.has_min) {
        _mm512_storeu_ps(u->mn.data() + (size_t(g) * 2 + bl) * 16,
                         _mm512_cvtph_ps(_mm256_loadu_si256(
                             reinterpret_cast<const __m256i*>(gb + 32))));
      }
      const uint8_t* src = gb + head;
      for (int s = 0; s < steps; ++s) {
        uint8_t* dst =
            u->b.data() + ((size_t(g) * steps + s) * nb + bl) * tile_bytes;
        for (int c = 0; c < ks / 8; ++c, src += 64) {
          const __m512i v = _mm512_loadu_si512(src);
          _mm512_storeu_si512(dst + 128 * c, _mm512_and_si512(v, low4));
          _mm512_storeu_si512(dst + 128 * c + 64,
                              _mm512_and_si512(_mm512_srli_epi16(v, 4), low4));
        }
      }
    }
  }
}

// GCC 12 warns that the undefined pass-through operand of its own
// conversion and masked-store intrinsics is uninitialized: a false positive
// of its headers (w4_gemm.cc has the same), silenced here only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__  // GCC only; clang has no such group
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// kRt row tiles (16 rows each, x rows `x_stride` apart) against the kNb
// blocks of unit u; writes the `rows` live rows of y (row stride w.n).
// xs[r][g]: 8·X (symmetric) or X as float bits (with minimums), the
// group sums' term of the epilogue.
template <int kRt, int kNb>
SPIKESERVE_AMX void Tiles(const int8_t* x, size_t x_stride, const int32_t* xs,
                          int rows, const W4PackedWeights& w, const Unit& u,
                          int ks, const float* row_scale, float* y) {
  const int groups = w.k / w.group, steps = w.group / ks;
  const size_t tile_bytes = size_t(ks) * 16;
  alignas(64) int32_t c[kChunkGroups][4][kTileRows][16];
  alignas(64) float acc[kRt * kTileRows][kNb][16];
  for (int g0 = 0; g0 < groups; g0 += kChunkGroups) {
    const int gn = std::min(kChunkGroups, groups - g0);
    for (int gi = 0; gi < gn; ++gi) {
      const int g = g0 + gi;
      _tile_zero(0);
      if (kNb > 1) _tile_zero(1);
      if (kRt > 1) _tile_zero(2);
      if (kRt > 1 && kNb > 1) _tile_zero(3);
      for (int s = 0; s < steps; ++s) {
        const int k0 = g * w.group + s * ks;
        const uint8_t* bt =
            u.b.data() + (size_t(g) * steps + s) * kNb * tile_bytes;
        _tile_loadd(4, x + k0, x_stride);
        _tile_loadd(6, bt, 64);
        _tile_dpbsud(0, 4, 6);
        if (kNb > 1) {
          _tile_loadd(7, bt + tile_bytes, 64);
          _tile_dpbsud(1, 4, 7);
        }
        if (kRt > 1) {
          _tile_loadd(5, x + kTileRows * x_stride + k0, x_stride);
          _tile_dpbsud(2, 5, 6);
          if (kNb > 1) _tile_dpbsud(3, 5, 7);
        }
      }
      _tile_stored(0, c[gi][0], 64);
      if (kNb > 1) _tile_stored(1, c[gi][1], 64);
      if (kRt > 1) _tile_stored(2, c[gi][2], 64);
      if (kRt > 1 && kNb > 1) _tile_stored(3, c[gi][3], 64);
    }
    // The epilogue of w4_gemm.h for the chunk's groups, in order, the live
    // rows only.
    for (int r = 0; r < rows; ++r) {
      const int tile = (r / kTileRows) * 2, tr = r % kTileRows;
      const int32_t* xr = xs + size_t(r) * groups + g0;
      for (int b = 0; b < kNb; ++b) {
        __m512 a = g0 == 0 ? _mm512_setzero_ps() : _mm512_load_ps(acc[r][b]);
        const float* d = u.d.data() + (size_t(g0) * 2 + b) * 16;
        if (w.has_min) {
          const float* mn = u.mn.data() + (size_t(g0) * 2 + b) * 16;
          for (int gi = 0; gi < gn; ++gi) {
            const __m512i sv = _mm512_load_si512(c[gi][tile + b][tr]);
            a = _mm512_fmadd_ps(_mm512_loadu_ps(d + 32 * gi),
                                _mm512_cvtepi32_ps(sv), a);
            a = _mm512_fmadd_ps(_mm512_loadu_ps(mn + 32 * gi),
                                _mm512_castsi512_ps(_mm512_set1_epi32(xr[gi])),
                                a);
          }
        } else {
          for (int gi = 0; gi < gn; ++gi) {
            const __m512i sv =
                _mm512_sub_epi32(_mm512_load_si512(c[gi][tile + b][tr]),
                                 _mm512_set1_epi32(xr[gi]));
            a = _mm512_fmadd_ps(_mm512_loadu_ps(d + 32 * gi),
                                _mm512_cvtepi32_ps(sv), a);
          }
        }
        _mm512_store_ps(acc[r][b], a);
      }
    }
  }
  for (int b = 0; b < kNb; ++b) {
    const int jb = (u.b0 + b) * 16;
    const int live = std::min(16, w.n - jb);
    const __mmask16 mask = __mmask16((1u << live) - 1);
    for (int r = 0; r < rows; ++r) {
      const __m512 out = _mm512_mul_ps(_mm512_load_ps(acc[r][b]),
                                       _mm512_set1_ps(row_scale[r]));
      _mm512_mask_storeu_ps(y + size_t(r) * w.n + jb, mask, out);
    }
  }
}
#pragma GCC diagnostic pop

template <int kNb>
SPIKESERVE_AMX void UnitRows(const int8_t* x, size_t x_stride,
                             const int32_t* xs, int rows,
                             const W4PackedWeights& w, const Unit& u, int ks,
                             const float* row_scale, float* y) {
  if (rows > kTileRows) {
    Tiles<2, kNb>(x, x_stride, xs, rows, w, u, ks, row_scale, y);
  } else {
    Tiles<1, kNb>(x, x_stride, xs, rows, w, u, ks, row_scale, y);
  }
}

// The units [u0, u1) of 32 columns, every row of x; on the calling thread.
// Rows from `full` on come from `pad` (AmxPadTail).
SPIKESERVE_AMX void RunUnits(const int8_t* x, const int32_t* xs, int m,
                             const int8_t* pad, int full,
                             const W4PackedWeights& w, const float* row_scale,
                             float* y, int u0, int u1) {
  const int ks = w.group == 32 ? 32 : 64;
  const AmxTileConfig config = AmxConfigFor(ks);
  const int groups = w.k / w.group;
  const int blocks = (w.n + 15) / 16;
  thread_local Unit unit;
  AmxMemoryBarrier();  // the configuration and the padded rows
  _tile_loadconfig(&config);
  for (int u = u0; u < u1; ++u) {
    const int b0 = 2 * u, nb = std::min(2, blocks - b0);
    Unpack(w, b0, nb, ks, &unit);
    AmxMemoryBarrier();  // the unpacked weights, before tiles load them
    for (int r0 = 0; r0 < m; r0 += 2 * kTileRows) {
      const int rows = std::min(2 * kTileRows, m - r0);
      const int8_t* xr = r0 < full ? x + size_t(r0) * w.k : pad;
      const int32_t* sr = xs + size_t(r0) * groups;
      float* yr = y + size_t(r0) * w.n;
      if (nb == 2) {
        UnitRows<2>(xr, w.k, sr, rows, w, unit, ks, row_scale + r0, yr);
      } else {
        UnitRows<1>(xr, w.k, sr, rows, w, unit, ks, row_scale + r0, yr);
      }
    }
  }
  _tile_release();
}

}  // namespace

bool W4AmxSupported() {
  return AmxSupported() && W4KernelSupported(W4KernelIsa::kAvx512Vnni);
}

void W4GemmAmx(const int8_t* x, const int32_t* sums, int m,
               const W4PackedWeights& w, const float* row_scale, float* y) {
  // The group sums' term of the epilogue, once: 8·X for symmetric groups,
  // float(X)'s bits with minimums (exact: |X| < 2^24).
  const size_t count = size_t(m) * (w.k / w.group);
  thread_local std::vector<int32_t> xs;
  xs.resize(count);
  for (size_t i = 0; i < count; ++i) {
    if (w.has_min) {
      const float f = float(sums[i]);
      std::memcpy(&xs[i], &f, 4);
    } else {
      xs[i] = 8 * sums[i];
    }
  }
  thread_local std::vector<int8_t> pad;
  const int full = AmxPadTail(x, m, w.k, &pad);
  // The caller's buffers, read by the whole team.
  const int32_t* xp = xs.data();
  const int8_t* padded = pad.data();
  const int units = ((w.n + 15) / 16 + 1) / 2;
  const bool parallel = int64_t(m) * w.n * w.k >= kParallelMacs;
  ParallelShares(units, parallel, [&](int u0, int u1) {
    RunUnits(x, xp, m, padded, full, w, row_scale, y, u0, u1);
  });
}

}  // namespace spikeserve
