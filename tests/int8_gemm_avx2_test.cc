#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/linear/amx_tiles.h"
#include "runtime/linear/int8_gemm_amx.h"
#include "runtime/linear/int8_gemm_packed.h"

namespace spikeserve {
namespace {

struct Case {
  int m, k, n;
  bool extremes;  // every x = ±127 and w = ±wmax: the largest sums
};

// Both kernels are exact for the full 8-bit range the quantizer writes
// (int8_gemm_packed.h): with |x| = |w| = 127 an int16 pair sum of AVX2's
// sign-trick form is 32258, 510 below saturation.
constexpr int kWeightMax = 127;

class Int8GemmPackedTest
    : public ::testing::TestWithParam<std::tuple<Int8KernelIsa, Case>> {};

// Bit-exact against a scalar int32 reference (and its scalar float
// epilogue), for each kernel the CPU runs: row counts in AVX2's sign-trick
// form (1-2 rows) and int16 form (tiles of 6 rows and their tails), around
// VNNI's 6-row tiles and past the point where VNNI splits rows over the
// threads, K with and without a tail past the chunks (4 k for both), N with
// and without a tail past the blocks of 16 columns, and the saturation
// corner (|x| = 127, |w| = the kernel's maximum everywhere, same signs);
// on AMX machines the AMX tiles too.
TEST_P(Int8GemmPackedTest, EqualsScalarReference) {
  const auto [isa, c] = GetParam();
  if (!Int8KernelSupported(isa)) {
    GTEST_SKIP() << "this CPU has no " << Int8KernelIsaName(isa);
  }
  const int wmax = kWeightMax;
  std::mt19937 rng(c.m * 131 + c.k * 7 + c.n);
  std::uniform_int_distribution<int> dx(-127, 127), dw(-wmax, wmax), sign(0, 1);
  std::vector<int8_t> x(size_t(c.m) * c.k), w(size_t(c.n) * c.k);
  for (int8_t& v : x)
    v = int8_t(c.extremes ? (sign(rng) ? 127 : -127) : dx(rng));
  for (int8_t& v : w) {
    v = int8_t(c.extremes ? (sign(rng) ? wmax : -wmax) : dw(rng));
  }
  if (c.extremes) {  // one all-positive row and column: the largest sum
    for (int j = 0; j < c.k; ++j) x[j] = 127, w[j] = int8_t(wmax);
  }
  // The dequantizing form, against the scalar epilogue on the reference.
  std::vector<float> row_scale(c.m), col_scale(c.n);
  std::uniform_real_distribution<float> ds(1e-4f, 1e-2f);
  for (float& s : row_scale) s = ds(rng);
  for (float& s : col_scale) s = ds(rng);
  Int8PackedWeights packed =
      PackInt8Weights(w.data(), c.n, c.k, isa, col_scale.data());
  std::vector<int32_t> ref(size_t(c.m) * c.n);
  for (int i = 0; i < c.m; ++i) {
    for (int j = 0; j < c.n; ++j) {
      int32_t r = 0;
      for (int t = 0; t < c.k; ++t) {
        r += int32_t(x[size_t(i) * c.k + t]) * w[size_t(j) * c.k + t];
      }
      ref[size_t(i) * c.n + j] = r;
    }
  }
  if (c.extremes) {
    EXPECT_EQ(ref[0], 127 * wmax * c.k);
  }
  // Both forms of the product, against the reference and its scalar
  // epilogue.
  auto check = [&](const char* path) {
    std::vector<int32_t> acc(size_t(c.m) * c.n, -1);
    Int8GemmPacked(x.data(), c.m, packed, acc.data());
    std::vector<float> y(size_t(c.m) * c.n, -1);
    Int8GemmPackedDequant(x.data(), c.m, packed, row_scale.data(), y.data());
    for (int i = 0; i < c.m; ++i) {
      for (int j = 0; j < c.n; ++j) {
        const int32_t r = ref[size_t(i) * c.n + j];
        ASSERT_EQ(acc[size_t(i) * c.n + j], r)
            << path << ": row " << i << " col " << j;
        ASSERT_EQ(y[size_t(i) * c.n + j],
                  float(r) * (row_scale[i] * col_scale[j]))
            << path << ": row " << i << " col " << j;
      }
    }
  };
  check(Int8KernelIsaName(isa));
  // AMX tiles on the VNNI packing, for every row count (Int8Linear uses
  // them from kInt8AmxMinRows rows), where K is a multiple of 64.
  if (isa == Int8KernelIsa::kAvx512Vnni && Int8AmxSupported(c.k)) {
    packed.amx_min_rows = 1;
    check("amx");
  }
}

// AMX serves only widths of whole 64-byte tile steps: the packed chunks
// end at K rounded up to 4, and a tile step past them would read the next
// block (Int8Linear then keeps the VNNI kernel for every batch).
TEST(Int8AmxSupported, OnlyWidthsOfWholeTileSteps) {
  for (int k : {4, 32, 100, 576 + 32, 5632 + 4}) {
    EXPECT_FALSE(Int8AmxSupported(k)) << k;
  }
  if (AmxSupported()) {
    for (int k : {64, 576, 2048, 14336}) EXPECT_TRUE(Int8AmxSupported(k)) << k;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Int8GemmPackedTest,
    ::testing::Combine(
        ::testing::Values(Int8KernelIsa::kAvx2, Int8KernelIsa::kAvx512Vnni),
        ::testing::Values(Case{1, 576, 960, false}, Case{2, 576, 576, false},
                          Case{3, 1536, 576, false}, Case{16, 576, 3072, false},
                          Case{64, 576, 960, false}, Case{5, 40, 7, false},
                          Case{1, 31, 3, false}, Case{7, 100, 13, false},
                          Case{4, 2048, 256, false}, Case{1, 576, 64, true},
                          Case{3, 5632, 9, true}, Case{2, 96, 5, false},
                          // VNNI's prefill paths: units of 4 blocks with 3,
                          // 2 or 1 left, tails of the 6-row tiles, rows split
                          // over threads in panels and weight chunks.
                          Case{9, 576, 40, false}, Case{100, 200, 100, false},
                          Case{130, 1536, 260, false}, Case{97, 33, 50, true},
                          // AMX: tails of the 16- and 32-row tiles, an odd
                          // last block, K of 1 and of several tile steps.
                          Case{17, 576, 40, false}, Case{31, 64, 16, false},
                          Case{32, 128, 33, false}, Case{33, 576, 48, false},
                          Case{100, 1024, 72, true})),
    [](const auto& i) {
      const Case& c = std::get<1>(i.param);
      return std::string(Int8KernelIsaName(std::get<0>(i.param))) + "_" +
             std::to_string(c.m) + "x" + std::to_string(c.k) + "x" +
             std::to_string(c.n) + (c.extremes ? "_extremes" : "");
    });

}  // namespace
}  // namespace spikeserve
