#include "runtime/linear/bf16_linear.h"

#include <cmath>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/linear/fixed_order_gemm.h"

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

// Each bf16 weight is within 2^-8 relative of its float (round to nearest
// with 8 significant bits: half a unit in the last place, relative to the
// float, is at most 2^-8); the activations stay FP32. So |y - x·w| <=
// Σ_k |x_k w_k| 2^-8 plus FP32 accumulation error, far smaller (2^-14
// covers it at K = 576).
TEST_P(Bf16LinearTest, WithinRoundingBoundOfReference) {
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
      ASSERT_LE(std::abs(y[size_t(i) * n + j] - exact),
                mag * (std::ldexp(1.0, -8) + std::ldexp(1.0, -14)))
          << i << "," << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, Bf16LinearTest,
                         ::testing::Values(1, 3, 16, 64, 257));

// It holds the weights rounded once to bf16 and runs the fixed-order
// kernel on them: the same bits as that kernel on the rounded weights.
TEST(Bf16Linear, IsTheFixedOrderKernelOnRoundedWeights) {
  const int m = 5, k = 100, n = 37;
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0, 1);
  Matrix w{n, k, std::vector<float>(size_t(n) * k)};
  for (float& v : w.data) v = d(rng);
  std::vector<float> x(size_t(m) * k);
  for (float& v : x) v = d(rng);
  auto lin = Bf16Linear::Create(w);
  ASSERT_TRUE(lin.ok()) << lin.status();
  EXPECT_EQ((*lin)->weight_bytes(), size_t(n) * k * 2);
  std::vector<float> y(size_t(m) * n), want(size_t(m) * n);
  const int bounds[2] = {0, m};
  (*lin)->Forward({x.data(), m, bounds}, y.data());
  std::vector<uint16_t> wb(w.data.size());
  for (size_t i = 0; i < wb.size(); ++i) wb[i] = FloatToBf16(w.data[i]);
  FixedOrderGemm(x.data(), m, wb.data(), n, k, want.data());
  EXPECT_EQ(y, want);
}

}  // namespace
}  // namespace spikeserve
