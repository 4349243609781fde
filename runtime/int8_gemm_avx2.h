// The INT8 matmul for CPUs without VNNI (AVX2 only, e.g. AMD Zen 3), where
// oneDNN 2.6 only has its generic gemm: it packs the weights and computes
// their compensation on every call, which at decode sizes ran at ~1.2 GB/s
// of weights (a 576x3072 matmul in 1.5 ms), 3x slower than FP32.
//
// acc[m][N] = x[m][K] · Wᵀ exactly in int32, for s8 x in [-127, 127] and
// s8 W [N][K] (plain row-major, as quantized) with |w| <= 63: x is offset
// to u8 (x + 128) so that vpmaddubsw multiplies it by w, each int16 pair sum
// is at most 2 * 255 * 63 = 32130 (no saturation), and the offset is taken
// back with the precomputed row sums: acc = Σ (x+128)·w - 128·Σ w.
#ifndef SPIKESERVE_RUNTIME_INT8_GEMM_AVX2_H_
#define SPIKESERVE_RUNTIME_INT8_GEMM_AVX2_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace spikeserve {

// True when this CPU has AVX2 (the kernel's only requirement).
bool Int8GemmAvx2Supported();

// Σ_k w[n][k] for every row n of W [N][K]: the offset correction.
std::vector<int32_t> Int8RowSums(const int8_t* w, int n, int k);

// The u8 offset shared with oneDNN's u8 x s8 form (onednn_matmul.h):
// xu[i] = x[i] + 128 for n entries, and, after xu · Wᵀ, acc[r][j] -=
// 128 · w_sum[j] for m rows of N.
void OffsetToU8(const int8_t* x, size_t n, uint8_t* xu);
void SubtractOffset(const int32_t* w_sum, int m, int n, int32_t* acc);

// acc[m][N] = x[m][K] · Wᵀ (see above). `w_sum` from Int8RowSums. Runs on
// the calling thread's OpenMP team when the product is large enough to pay
// for the fork. Requires Int8GemmAvx2Supported().
void Int8GemmAvx2(const int8_t* x, int m, int k, const int8_t* w,
                  const int32_t* w_sum, int n, int32_t* acc);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_INT8_GEMM_AVX2_H_
