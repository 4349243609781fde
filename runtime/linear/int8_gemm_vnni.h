// The AVX-512 VNNI kernel of int8_gemm_packed.h, in its own column layout:
// used through that header's functions, which dispatch on the weights' ISA.
//
// Layout: blocks of 16 output columns (one zmm of int32 sums), each a
// 128-byte header (int32 offset[16] = 128·Σ_k w[j][k], float scale[16])
// and then ceil(K/4) chunks of 64 bytes, [16 columns][4 k] (zero-padded):
// one vpdpbusd multiplies a chunk by 4 bytes of x broadcast to every lane,
// so the sums stay in columns and need no horizontal reduction. That lets
// one copy of the weights serve decode (a block at a time, one sequential
// stream per thread near the read bandwidth) and prefill (6 rows x 4
// blocks per pass, each weight load feeding 6 rows, each broadcast 4
// blocks), where the AVX2 kernel's earlier row layout lost to oneDNN's
// brgemm from 2 rows on and oneDNN had to keep a second copy.
#ifndef SPIKESERVE_RUNTIME_LINEAR_INT8_GEMM_VNNI_H_
#define SPIKESERVE_RUNTIME_LINEAR_INT8_GEMM_VNNI_H_

#include <cstddef>
#include <cstdint>

#include "runtime/linear/int8_gemm_packed.h"

namespace spikeserve {

constexpr int kVnniBlockCols = 16;
// A block's header: int32 offset[16], then float scale[16].
constexpr int kVnniHeaderBytes = 128;
// Bytes of one block of 16 columns for rows of k.
size_t VnniBlockBytes(int k);
// Packs W [N][K] into `data` (ceil(N/16) blocks, zeroed by the caller).
// sums: Σ_k w[j][k] per row; col_scale: per column, or null for 1.
void VnniPack(const int8_t* w, int n, int k, const int32_t* sums,
              const float* col_scale, int8_t* data);

// Where the sums go: int32 accumulators acc[m][N], or, when y is set,
// y[r][j] = float(acc) * (row_scale[r] * col_scale[j]) (the very float
// operations of a scalar epilogue).
struct VnniOut {
  int32_t* acc = nullptr;
  float* y = nullptr;
  const float* row_scale = nullptr;
};

// m rows of xu (x + 128 as u8, `stride` bytes apart, zero past K) against
// blocks [b0, b1), on the calling thread.
void VnniBlocks(const uint8_t* xu, size_t stride, int m,
                const Int8PackedWeights& w, const VnniOut& out, int b0, int b1);
// Every block, split over the calling thread's OpenMP team if `parallel`:
// from 48 rows per thread each thread takes an equal share of the rows and
// passes them in panels that stay in L1 over chunks of the weights that
// stay in L2; fewer rows (decode), each a contiguous share of the blocks.
void VnniGemm(const uint8_t* xu, size_t stride, int m,
              const Int8PackedWeights& w, const VnniOut& out, bool parallel);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_INT8_GEMM_VNNI_H_
