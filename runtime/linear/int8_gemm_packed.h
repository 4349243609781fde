// Our own INT8 matmul on weights packed once for streaming, every batch:
// two kernels, each with its layout, behind one driver (and AMX tiles for
// many rows on the VNNI layout, int8_gemm_amx.h):
//
// - AVX2 (CPUs without VNNI, e.g. AMD Zen 2/3), where oneDNN 2.6 only has
//   its generic gemm: it packs the weights and computes their compensation
//   on every call, which at decode sizes ran at ~1.2 GB/s of weights (a
//   576x3072 matmul in 1.5 ms), 3x slower than FP32, and its u8 x s8 form
//   saturates int16 pair sums unless |w| <= 63. This kernel runs every
//   batch size there (int8_linear.cc has the figures) with the full 8-bit
//   weights, in two forms over one layout. Up to 2 rows (decode), the sign
//   trick: vpmaddubsw multiplies u8 by s8 into int16 pair sums, so it is
//   fed |x| and sign(x)·w (vpabsb, vpsignb), each pair sum at most
//   2 · 127 · 127 = 32258: exact for x and w in [-127, 127]; a register of
//   32 weights per multiply, so the weight stream sets the pace. From 3
//   rows (prefill), the weights' bytes widened to int16 by shifts in
//   registers and x to int16 once per call, multiplied by vpmaddwd (exact):
//   one multiply per 16 multiply-adds where the sign trick takes three
//   operations of the same two pipes per 32, and those pipes bound there.
// - AVX-512 VNNI (e.g. Ice Lake, Zen 4/5): vpdpbusd sums 4 u8 x s8
//   products straight into int32, exact for any s8 W. x is offset to u8
//   (x + 128), and the offset is taken back with precomputed row sums:
//   acc = Σ (x+128)·w - 128·Σ w. Its layout keeps sums in columns
//   (int8_gemm_vnni.h), which serves decode and prefill alike.
//
// acc[m][N] = x[m][K] · Wᵀ exactly in int32, for x and w in [-127, 127].
//
// Decode streams every weight from DRAM once per token, so the layouts are
// made for the hardware prefetcher: a block of 16 output columns is one
// sequential stream, its sums kept in columns (no horizontal reduction),
// and a thread prefetches it ahead. AVX2's block is a header of 16 float
// scales and then, for each 4 k, the 4 bytes of columns 0-7 and then of
// 8-15 ([N/16][64 + ceil(K/4) * 64] bytes, zero-padded).
#ifndef SPIKESERVE_RUNTIME_LINEAR_INT8_GEMM_PACKED_H_
#define SPIKESERVE_RUNTIME_LINEAR_INT8_GEMM_PACKED_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/linear/huge_pages.h"

namespace spikeserve {

enum class Int8KernelIsa {
  kAvx2,        // AVX2, sign trick / int16 pairs: x, w in [-127, 127]
  kAvx512Vnni,  // AVX-512 F/BW + VNNI, any s8 w
};
// "avx2" or "avx512_vnni" (logs and benchmark labels).
const char* Int8KernelIsaName(Int8KernelIsa isa);
// True when this CPU runs the kernel.
bool Int8KernelSupported(Int8KernelIsa isa);

// Σ_k w[n][k] for every row n of W [N][K]: the offset correction.
std::vector<int32_t> Int8RowSums(const int8_t* w, int n, int k);

// The u8 offset shared with oneDNN's u8 x s8 form (onednn_matmul.h):
// xu[i] = x[i] + 128 for n entries, and, after xu · Wᵀ, acc[r][j] -=
// 128 · w_sum[j] for m rows of N.
void OffsetToU8(const int8_t* x, size_t n, uint8_t* xu);
void SubtractOffset(const int32_t* w_sum, int m, int n, int32_t* acc);

// W [N][K] in one kernel's packed layout. Each block of 16 columns starts
// with a header: for VNNI its columns' offset corrections (int32:
// 128·Σ_k w[n][k]), for both their dequantization scales (float,
// `col_scale`, or 1 if null), so that a thread reads nothing but this one
// stream: 64 bytes for AVX2, 128 for VNNI.
struct Int8PackedWeights {
  Int8KernelIsa isa = Int8KernelIsa::kAvx2;
  int n = 0, k = 0;
  // AVX2: [ceil(N/16)][64 + ceil(K/4) * 64]; VNNI: [ceil(N/16)][128 +
  // ceil(K/4) * 64]; 2 MiB pages where large (huge_pages.h).
  HugePageVector<int8_t> data;
  // Batches of at least this many rows run on AMX tiles (int8_gemm_amx.h;
  // VNNI packing only); 0: never. Int8Linear sets it where the CPU has AMX
  // and oneDNN's ISA is not capped below it.
  int amx_min_rows = 0;
  size_t bytes() const { return data.size(); }
};
Int8PackedWeights PackInt8Weights(const int8_t* w, int n, int k,
                                  Int8KernelIsa isa,
                                  const float* col_scale = nullptr);

// acc[m][N] = x[m][K] · Wᵀ (see above), exact, on the kernel `w` was
// packed for (which must be supported). Runs on the calling thread's
// OpenMP team when the product is large enough to pay for the fork.
void Int8GemmPacked(const int8_t* x, int m, const Int8PackedWeights& w,
                    int32_t* acc);

// The same product dequantized in the kernel's epilogue with the packed
// column scales: y[r][j] = float(acc[r][j]) * (row_scale[r] * col_scale[j]),
// the very float operations of a scalar epilogue, so results are identical.
void Int8GemmPackedDequant(const int8_t* x, int m, const Int8PackedWeights& w,
                           const float* row_scale, float* y);

// Int8GemmPackedDequant in pieces, for threads that split the work
// themselves (linear.h's team form): the rows as the kernels read them,
// Int8KernelRowBytes(w) each, written once by Int8KernelRows; then any
// blocks [b0, b1) of output columns, b < Int8PackedBlocks(w), each
// Int8PackedBlockBytes(w) of weights in order. The same outputs as
// Int8GemmPackedDequant.
size_t Int8KernelRowBytes(const Int8PackedWeights& w);
int Int8PackedBlocks(const Int8PackedWeights& w);
size_t Int8PackedBlockBytes(const Int8PackedWeights& w);
void Int8KernelRows(const int8_t* x, int m, const Int8PackedWeights& w,
                    uint8_t* xu);
void Int8GemmPackedDequantBlocks(const uint8_t* xu, int m,
                                 const Int8PackedWeights& w,
                                 const float* row_scale, float* y, int b0,
                                 int b1);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_INT8_GEMM_PACKED_H_
