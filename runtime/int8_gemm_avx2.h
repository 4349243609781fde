// The INT8 matmul for CPUs without VNNI (AVX2 only, e.g. AMD Zen 3), where
// oneDNN 2.6 only has its generic gemm: it packs the weights and computes
// their compensation on every call, which at decode sizes ran at ~1.2 GB/s
// of weights (a 576x3072 matmul in 1.5 ms), 3x slower than FP32.
//
// acc[m][N] = x[m][K] · Wᵀ exactly in int32, for s8 x in [-127, 127] and
// s8 W [N][K] with |w| <= 63: x is offset to u8 (x + 128) so that vpmaddubsw
// multiplies it by w, each int16 pair sum is at most 2 * 255 * 63 = 32130
// (no saturation), and the offset is taken back with the precomputed row
// sums: acc = Σ (x+128)·w - 128·Σ w.
//
// Decode streams every weight from DRAM once per token, so the layout is
// made for the hardware prefetcher: W is packed once into blocks of 4
// output rows, and inside a block each 32-byte step of K holds the 4 rows'
// bytes side by side ([N/4][K/32][4][32], zero-padded): a thread reads one
// sequential stream instead of 4 short ones (576 bytes each at the default
// model's width), and prefetches it ahead.
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

// W [N][K] (|w| <= 63) in the kernel's packed layout. Each block of 4 rows
// starts with a 32-byte header, the rows' offset corrections 128·Σ_k w[n][k]
// (int32 x 4) and their dequantization scales (float x 4, `col_scale`, or
// 1 if null), so that a thread reads nothing but this one stream.
struct Avx2PackedWeights {
  int n = 0, k = 0;
  std::vector<int8_t> data;  // [ceil(N/4)][32 + ceil(K/32) * 128]
  size_t bytes() const { return data.size(); }
};
Avx2PackedWeights PackAvx2Weights(const int8_t* w, int n, int k,
                                  const float* col_scale = nullptr);

// acc[m][N] = x[m][K] · Wᵀ (see above), exact. Runs on the calling
// thread's OpenMP team when the product is large enough to pay for the
// fork. Requires Int8GemmAvx2Supported().
void Int8GemmAvx2(const int8_t* x, int m, const Avx2PackedWeights& w,
                  int32_t* acc);

// The same product dequantized in the kernel's epilogue with the packed
// column scales: y[r][j] = float(acc[r][j]) * (row_scale[r] * col_scale[j]),
// the very float operations of a scalar epilogue, so results are identical.
void Int8GemmAvx2Dequant(const int8_t* x, int m, const Avx2PackedWeights& w,
                         const float* row_scale, float* y);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_INT8_GEMM_AVX2_H_
