// W4A8 matmul for many rows on AMX tiles (Intel Sapphire Rapids and later):
// the same product as W4Gemm (w4_gemm.h), bit for bit, on the weights
// packed for AVX-512 VNNI.
//
// A unit of 32 output columns (two 16-column blocks) has its nibbles
// unpacked once to bytes in the tile layout B wants ([K/4][16 columns][4]:
// a packed chunk's low nibbles are one row, its high nibbles the next), in
// a buffer that stays in L2; then every 32 rows of x run against it,
// `tdpbsud` (signed activations x unsigned nibbles) into four 16 x 16 int32
// tiles per group. At each group's end the tiles go to memory and the
// AVX-512 epilogue applies the group scales in the order w4_gemm.h defines,
// so the floats equal the scalar reference's.
// The tiles are assigned as amx_tiles.h says.
#ifndef SPIKESERVE_RUNTIME_LINEAR_W4_GEMM_AMX_H_
#define SPIKESERVE_RUNTIME_LINEAR_W4_GEMM_AMX_H_

#include <cstdint>

#include "runtime/linear/w4_gemm.h"

namespace spikeserve {

// W4A8Linear runs batches of this many rows and more on AMX tiles
// (W4PackedWeights::amx_min_rows); fewer stay on the VNNI kernel.
// linear_bench --benchmark_filter='W4(Amx|Vnni)KernelHot', 2 threads, AMX
// Xeon, 576x960 (group 128): 16 rows 17.3 vs 17.3 us, 24 rows 27.6 vs
// 23.9, 32 rows 29.8 vs 32.6, 48 rows 44.2 vs 47.8, 64 rows 54.6 vs 65.5,
// 512 rows 309 vs 549; 2048x2048 at 32 rows 213 vs 266.
inline constexpr int kW4AmxMinRows = 32;

// AmxSupported() (amx_tiles.h) and the VNNI W4 kernel's ISA, whose packing
// this kernel reads.
bool W4AmxSupported();

// W4Gemm's product on AMX tiles, for any m >= 1 (rows past a multiple of
// 16 are computed from a zero-padded copy and not written). `w` must be
// packed for W4KernelIsa::kAvx512Vnni and W4AmxSupported() true. Splits
// the units of 32 columns over the calling thread's OpenMP team when the
// product is large enough.
void W4GemmAmx(const int8_t* x, const int32_t* sums, int m,
               const W4PackedWeights& w, const float* row_scale, float* y);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_W4_GEMM_AMX_H_
