// INT8 matmul for many rows on AMX tiles (Intel Sapphire Rapids and
// later), on the weights packed for the AVX-512 VNNI kernel
// (int8_gemm_vnni.h): that layout's chunks, [16 columns][4 k] bytes each,
// are the rows of AMX's B operand as they are, so a block of 16 columns
// loads as tiles straight from the one copy decode streams. No second
// copy, no reorder, and the same int32 sums: `tdpbssd` multiplies s8 x by
// s8 w (no +128 offset), and the epilogue is the VNNI kernel's float
// operations, so the outputs are identical to its.
//
// A pass is 32 rows x 32 columns (amx_tiles.h), its sums held in tiles over
// the whole K, 64 k per step; the units of 32 columns are split over the
// team, and each thread passes every row over its units.
#ifndef SPIKESERVE_RUNTIME_LINEAR_INT8_GEMM_AMX_H_
#define SPIKESERVE_RUNTIME_LINEAR_INT8_GEMM_AMX_H_

#include <cstdint>

#include "runtime/linear/int8_gemm_packed.h"

namespace spikeserve {

// Int8Linear runs batches of this many rows and more on AMX tiles
// (Int8PackedWeights::amx_min_rows); fewer stay on the VNNI kernel.
// linear_bench --benchmark_filter='Int8(Amx|Vnni)KernelHot', 2 threads,
// AMX Xeon, 576x960: 8 rows 5.2 vs 11.2 us, 16 rows 5.7 vs 17.9, 32 rows
// 11.9 vs 33.7; 2048x2048 at 16 rows 67 vs 124. (Decode steps of up to 16
// rows run the team form, linear.h, on the VNNI kernel: from DRAM their
// weights bound them.)
inline constexpr int kInt8AmxMinRows = 8;

// AmxSupported() (amx_tiles.h), the VNNI kernel's ISA, and K a multiple of
// 64 (a tile step; the packed chunks end at K rounded up to 4).
bool Int8AmxSupported(int k);

// Int8GemmPacked's product (y null: int32 acc[m][N]) or
// Int8GemmPackedDequant's (y[m][N] = float(acc) * (row_scale[r] *
// col_scale[j])), for any m >= 1, on the VNNI packing, with
// Int8AmxSupported(w.k). Splits the units over the calling thread's
// OpenMP team if `parallel`.
void Int8GemmAmx(const int8_t* x, int m, const Int8PackedWeights& w,
                 int32_t* acc, const float* row_scale, float* y, bool parallel);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_INT8_GEMM_AMX_H_
