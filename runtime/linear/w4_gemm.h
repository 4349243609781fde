// W4A8 matmul: 4-bit weights in groups along K, INT8 activations, int32
// accumulation per group, the group scales applied in FP32.
//
// Weights. W [N][K] is held as unsigned nibbles u in [0, 15] with, for each
// output row n and group g of G consecutive k (G = 32, 64 or 128):
//   symmetric:  w = d[n][g] · (u - 8)            (q = u - 8 in [-8, 7])
//   with a min: w = d[n][g] · u + mn[n][g]       (GGUF Q4_1 / Q4_K form)
// d and mn are IEEE half (exact for GGUF's Q4_0 and Q4_1 scales; 16 bits
// per group: at G = 128 a weight costs 4.125 bits).
//
// The product, for activation rows x (s8 in [-127, 127]) with row scales
// s_x, is defined by this order of float operations (the scalar reference
// below follows it; every kernel reproduces it bit for bit):
//   y = 0
//   for each group g, in order:
//     S = Σ_{k∈g} u[n][k]·x[r][k],  X = Σ_{k∈g} x[r][k]      (exact int32)
//     symmetric:  y = fma(d, float(S - 8·X), y)
//     with a min: y = fma(d, float(S), y); y = fma(mn, float(X), y)
//   y = y · s_x[r]
// Every int32 is below 2^24 in magnitude (S ≤ 15·127·128), so each float()
// is exact and only the fma roundings, identical everywhere, remain.
//
// Kernels. The lanes of a register are output columns, never K: each
// 32-bit lane sums 4 consecutive k of its own column (vpdpbusd on AVX-512
// VNNI; vpmaddubsw + vpmaddwd on AVX2), with the activations' 4 bytes
// broadcast to every lane. So no horizontal sum is ever needed, and a group
// ends with one vector fma per row. The nibbles are the unsigned operand,
// the activations the signed one, and 8·X takes the offset back.
//
// Layout, made for one sequential weight stream per thread: blocks of C
// output columns (16 for AVX-512, 8 for AVX2); in a block, for each group:
// C half scales (and C half mins), then G/8 chunks of 4·C bytes, where
// byte 4·j + t of chunk c holds column j's nibble for k = 8c + t in its low
// half and for k = 8c + 4 + t in its high half.
#ifndef SPIKESERVE_RUNTIME_LINEAR_W4_GEMM_H_
#define SPIKESERVE_RUNTIME_LINEAR_W4_GEMM_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "runtime/linear/huge_pages.h"

namespace spikeserve {

enum class W4KernelIsa {
  kAvx2,        // 8 columns per block, vpmaddubsw
  kAvx512Vnni,  // 16 columns per block, vpdpbusd
};
// "avx2" or "avx512_vnni" (logs and benchmark labels).
const char* W4KernelIsaName(W4KernelIsa isa);
// True when this CPU runs the kernel (AVX2 needs F16C and FMA too).
bool W4KernelSupported(W4KernelIsa isa);

// W [N][K] in the plain form: one nibble per byte, row-major.
struct W4Plain {
  int n = 0, k = 0, group = 0;
  bool has_min = false;
  std::vector<uint8_t> u;       // [N][K], each in [0, 15]
  std::vector<uint16_t> scale;  // [N][K/G] half
  std::vector<uint16_t> min;    // [N][K/G] half, when has_min
  int groups() const { return k / group; }
};

// Round-to-nearest symmetric quantization of one FP32 row [k] in groups of
// `group`: for each group the value of largest magnitude maps to -8 (as in
// GGUF's Q4_0), d rounded to half first so that u is chosen for the d the
// kernel uses. Writes u[k] and scale[k/group].
void QuantizeW4Row(const float* w, int k, int group, uint8_t* u,
                   uint16_t* scale);
// The asymmetric form (GGUF's Q4_1): per group w = d * u + min with u in
// [0, 15], min the group's smallest value and d its range / 15, both
// rounded to half before u is chosen for them. Writes u[k], scale[k/group]
// and min[k/group]. One more half per group (+0.5 bits per weight at group
// 32), and the range is not spent on the side the weights do not reach.
void QuantizeW4RowMin(const float* w, int k, int group, uint8_t* u,
                      uint16_t* scale, uint16_t* min);
// The row back in FP32, for tests and error measurements: w[k].
void DequantizeW4Row(const W4Plain& p, int row, float* w);

// The packed form one kernel streams.
struct W4PackedWeights {
  W4KernelIsa isa = W4KernelIsa::kAvx2;
  int n = 0, k = 0, group = 0;
  bool has_min = false;
  HugePageVector<uint8_t> data;  // 2 MiB pages where large (huge_pages.h)
  // W4Gemm runs batches of at least this many rows on AMX tiles
  // (w4_gemm_amx.h; VNNI packing only); 0: never. W4A8Linear sets it where
  // the CPU has AMX and oneDNN's ISA is not capped below it.
  int amx_min_rows = 0;
  size_t bytes() const { return data.size(); }
};
// Bytes of one group of one block of `columns` columns (C half scales, C
// half mins when has_min, then G/8 chunks of 4·C bytes), and of one whole
// block of w (every group).
size_t W4GroupBytes(int columns, int group, bool has_min);
size_t W4BlockBytes(const W4PackedWeights& w);
// Fails (empty data) only through the caller's checks: K % G == 0, G in
// {32, 64, 128}.
W4PackedWeights PackW4Weights(const W4Plain& p, W4KernelIsa isa);

// Activation group sums X[r][g] = Σ_{k∈g} x[r][k] for m rows of K.
void W4GroupSums(const int8_t* x, int m, int k, int group, int32_t* sums);

// y[m][N] as defined above, on the kernel `w` was packed for (which must be
// supported). `sums` from W4GroupSums. Splits the columns over the calling
// thread's OpenMP team when the product is large enough to pay for it.
void W4Gemm(const int8_t* x, const int32_t* sums, int m,
            const W4PackedWeights& w, const float* row_scale, float* y);

// W4Gemm in pieces, for threads that split the work themselves (a decode
// step in one parallel region, linear.h's team form): the units W4Gemm
// takes for m rows (a packed block of output columns, or from 4 rows on
// VNNI two adjacent ones: the last of an odd count has one), u in [0,
// W4Units(w, m)); W4UnitWeights the weight bytes of units [u0, u1), one
// range in order. A unit computes the same outputs as in W4Gemm.
int W4Units(const W4PackedWeights& w, int m);
absl::Span<const uint8_t> W4UnitWeights(const W4PackedWeights& w, int m, int u0,
                                        int u1);
void W4GemmUnits(const int8_t* x, const int32_t* sums, int m,
                 const W4PackedWeights& w, const float* row_scale, float* y,
                 int u0, int u1);

// The scalar reference of the definition above, on the plain form.
void W4GemmReference(const int8_t* x, int m, const W4Plain& w,
                     const float* row_scale, float* y);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_W4_GEMM_H_
