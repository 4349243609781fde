#include "runtime/linear/bf16_linear.h"

#include <cmath>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/linear/onednn_matmul.h"

namespace spikeserve {
namespace {

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3F80);
  // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(FloatToBf16(1.00390625f), 0x3F80);
  // 1 + 3·2^-8 is halfway too; the even neighbour is 1 + 2^-6.
  EXPECT_EQ(FloatToBf16(1.01171875f), 0x3F82);
  EXPECT_EQ(FloatToBf16(-2.0f), 0xC000);
  EXPECT_EQ(FloatToBf16(NAN) & 0x7F80, 0x7F80);
  EXPECT_NE(FloatToBf16(NAN) & 0x7F, 0);
}

class Bf16LinearTest : public ::testing::TestWithParam<int> {};

// Each bf16 operand is within 2^-9 relative of its float (round to
// nearest), so |y - x·w| <= Σ_k |x_k w_k| (2·2^-9 + 2^-18) plus FP32
// accumulation error, far smaller.
TEST_P(Bf16LinearTest, WithinRoundingBoundOfReference) {
  if (!Bf16MatmulSupported()) {
    GTEST_SKIP() << "no bf16 matmul on this CPU (oneDNN ISA " << OneDnnCpuIsa()
                 << "); see ChoosesBf16Kernel";
  }
  const int m = GetParam(), k = 576, n = 960;
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0, 1);
  Matrix w{n, k, std::vector<float>(size_t(n) * k)};
  for (float& v : w.data) v = d(rng) * 0.05f;
  std::vector<float> x(size_t(m) * k);
  for (float& v : x) v = d(rng);
  auto lin = Bf16Linear::Create(w);
  ASSERT_TRUE(lin.ok()) << lin.status();
  std::vector<float> y(size_t(m) * n);
  const int bounds[2] = {0, m};
  (*lin)->Forward({x.data(), m, bounds}, y.data());
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double exact = 0, mag = 0;
      for (int t = 0; t < k; ++t) {
        exact += double(x[size_t(i) * k + t]) * w.row(j)[t];
        mag += std::abs(double(x[size_t(i) * k + t]) * w.row(j)[t]);
      }
      ASSERT_LE(std::abs(y[size_t(i) * n + j] - exact), mag * 0.0040 + 1e-5)
          << i << "," << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, Bf16LinearTest,
                         ::testing::Values(1, 3, 16, 64, 257));

TEST(Bf16Linear, ChoosesBf16Kernel) {
  if (!Bf16MatmulSupported()) {
    // AVX2-only CPU: creation fails with a message naming bf16, and the
    // model runs BF16 users in FP32 (ModelInt8.Bf16FallsBackToFp32...).
    Matrix w{8, 64, std::vector<float>(size_t(8) * 64, 0.5f)};
    auto lin = Bf16Linear::Create(w);
    ASSERT_FALSE(lin.ok());
    EXPECT_THAT(lin.status().message(), ::testing::HasSubstr("bf16"));
    return;
  }
  auto impl = MatmulImpl(MatmulKind::kBf16Bf16F32, 4, 576, 960);
  ASSERT_TRUE(impl.ok()) << impl.status();
  EXPECT_THAT(*impl, ::testing::Not(::testing::StartsWith("ref")));
  if (__builtin_cpu_supports("avx512bf16")) {
    EXPECT_EQ(*impl, "brg:avx512_core_bf16");
  }
}

}  // namespace
}  // namespace spikeserve
