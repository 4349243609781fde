#include "runtime/linear/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace spikeserve {
namespace {

float Naive(const std::vector<float>& x) {
  float m = 0;
  for (float v : x) {
    if (std::isnan(v)) return std::fabs(v);
    if (std::fabs(v) > m) m = std::fabs(v);
  }
  return m;
}

// AbsMax is the largest |x| exactly, for every length around the vector
// widths (tails of 1..15 lanes), wherever the largest sits, whatever its
// sign; -0, subnormals and infinity compare as floats do, and a NaN
// anywhere makes it NaN (the row's scale and outputs NaN, as in FP32).
TEST(AbsMax, IsTheLargestMagnitude) {
  std::mt19937 rng(9);
  std::normal_distribution<float> d(0, 3);
  for (int n : {0, 1, 2, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 576, 1537}) {
    for (int where = 0; where < std::max(n, 1); where += std::max(1, n / 7)) {
      std::vector<float> x(n);
      for (float& v : x) v = d(rng);
      if (n > 0) x[where] = (where % 2 ? -1 : 1) * 1000.0f;
      EXPECT_EQ(AbsMax(x.data(), n), Naive(x)) << "n " << n << " at " << where;
    }
  }
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float sub = std::numeric_limits<float>::denorm_min();
  struct Case {
    std::vector<float> x;
    float want;
  };
  for (const Case& c : std::vector<Case>{
           {{-0.0f, 0.0f}, 0.0f},
           {{sub, -3 * sub, 2 * sub}, 3 * sub},
           {{1.0f, -inf, 2.0f}, inf},
           {{-inf}, inf},
       }) {
    EXPECT_EQ(AbsMax(c.x.data(), int(c.x.size())), c.want);
  }
  // A NaN at any place of any length, among larger values.
  for (int n : {1, 7, 16, 17, 40, 577}) {
    for (int where : {0, n / 2, n - 1}) {
      std::vector<float> x(n, -1000.0f);
      x[where] = where % 2 ? -nan : nan;
      EXPECT_TRUE(std::isnan(AbsMax(x.data(), n))) << n << " at " << where;
    }
  }
  EXPECT_TRUE(std::isnan(ScaleFor(nan)));
  EXPECT_EQ(ScaleFor(0.0f), 1.0f);
  EXPECT_EQ(ScaleFor(127.0f), 1.0f);
}

// QuantizeRow is round-half-to-even of x·inv_scale clamped to [-127, 127],
// for every length around the vector width (tails of 0..15), with exact
// halves (ties go to the even code), values past the clamp and infinities.
TEST(QuantizeRow, RoundsHalfToEvenAndClamps) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-160.0f, 160.0f);
  for (int n : {1, 15, 16, 17, 31, 576, 1536 + 7}) {
    std::vector<float> x(n);
    for (int j = 0; j < n; ++j) {
      switch (j % 5) {
        case 0:
          x[j] = float(int(u(rng))) + 0.5f;  // an exact half
          break;
        case 1:
          x[j] = j % 2 ? std::numeric_limits<float>::infinity() : -1e9f;
          break;
        default:
          x[j] = u(rng);
      }
    }
    std::vector<int8_t> q(n);
    QuantizeRow(x.data(), n, 1.0f, q.data());
    for (int j = 0; j < n; ++j) {
      // Round half to even by hand: floor, then up when above the half or
      // at it with an odd floor.
      const double f = std::floor(double(x[j]));
      const double frac = double(x[j]) - f;
      double r =
          f +
          ((frac > 0.5 || (frac == 0.5 && std::fmod(f, 2.0) != 0)) ? 1.0 : 0.0);
      if (std::isinf(x[j])) r = x[j];
      const double want = std::min(127.0, std::max(-127.0, r));
      ASSERT_EQ(q[j], int8_t(want)) << "n " << n << " j " << j << " x " << x[j];
    }
  }
}

}  // namespace
}  // namespace spikeserve
