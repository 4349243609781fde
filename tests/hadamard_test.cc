#include "runtime/linear/hadamard.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"

namespace spikeserve {
namespace {

TEST(Hadamard, PaleyMatricesAreHadamard) {
  for (int q : {3, 7, 11, 19}) {
    const std::vector<int> h = PaleyHadamard(q);
    const int n = q + 1;
    ASSERT_EQ(h.size(), size_t(n * n)) << q;
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        int dot = 0;
        for (int k = 0; k < n; ++k) dot += h[i * n + k] * h[j * n + k];
        ASSERT_EQ(dot, i == j ? n : 0)
            << "q " << q << " rows " << i << "," << j;
      }
    }
  }
  EXPECT_TRUE(PaleyHadamard(13).empty());  // 13 % 4 != 3
  EXPECT_TRUE(PaleyHadamard(15).empty());  // not prime
}

class HadamardSize : public ::testing::TestWithParam<int> {};

// The transform matrix (rows = images of basis vectors) is orthonormal, and
// ApplyTranspose inverts Apply.
TEST_P(HadamardSize, OrthonormalAndInvertible) {
  const int n = GetParam();
  auto t = HadamardTransform::Create(n);
  ASSERT_TRUE(t.ok()) << t.status();
  std::vector<float> m(size_t(n) * n, 0.0f);
  for (int i = 0; i < n; ++i) m[size_t(i) * n + i] = 1.0f;
  t->Apply(m.data(), n);
  for (int i = 0; i < n; i += std::max(1, n / 37)) {
    for (int j = 0; j < n; ++j) {
      double dot = 0;
      for (int k = 0; k < n; ++k)
        dot += double(m[size_t(i) * n + k]) * m[size_t(j) * n + k];
      ASSERT_NEAR(dot, i == j ? 1.0 : 0.0, 1e-5) << i << "," << j;
    }
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0, 1);
  std::vector<float> x(n), y;
  for (float& v : x) v = d(rng);
  x[n / 2] = 1000.0f;  // a spike spreads over all channels
  y = x;
  t->Apply(y.data(), 1);
  float mx = 0;
  for (float v : y) mx = std::max(mx, std::abs(v));
  EXPECT_LT(mx, 1000.0f / std::sqrt(float(n)) + 10.0f);
  t->ApplyTranspose(y.data(), 1);
  for (int i = 0; i < n; ++i) ASSERT_NEAR(y[i], x[i], 1e-3) << i;
}

INSTANTIATE_TEST_SUITE_P(Sizes, HadamardSize,
                         ::testing::Values(1, 2, 64, 96, 12, 20, 160, 1536));

// Powers of two are Sylvester's matrix, H[i][j] = (-1)^popcount(i & j) /
// sqrt(n), entry for entry (the butterfly's in-register first stages and
// its loop must compose to exactly this, not to another orthonormal map).
TEST(Hadamard, PowersOfTwoAreSylvester) {
  for (int n : {2, 4, 8, 16, 128}) {
    auto t = HadamardTransform::Create(n);
    ASSERT_TRUE(t.ok()) << t.status();
    std::vector<float> m(size_t(n) * n, 0.0f);
    for (int i = 0; i < n; ++i) m[size_t(i) * n + i] = 1.0f;
    t->Apply(m.data(), n);  // row i = image of e_i
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        const float want = (__builtin_popcount(i & j) % 2 ? -1.0f : 1.0f) /
                           std::sqrt(float(n));
        ASSERT_NEAR(m[size_t(i) * n + j], want, 1e-6)
            << "n " << n << " [" << i << "][" << j << "]";
      }
    }
  }
}

TEST(Hadamard, RejectsOtherWidths) {
  EXPECT_FALSE(HadamardTransform::Create(576 + 4).ok());
  EXPECT_FALSE(HadamardTransform::Create(28).ok());
  EXPECT_FALSE(HadamardTransform::Create(0).ok());
}

}  // namespace
}  // namespace spikeserve
