#include "runtime/model/ops.h"

#include <cmath>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace spikeserve {
namespace {

TEST(Ops, ExpMatchesLibmClosely) {
  double worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.01337f) {
    const double want = std::exp(double(x));
    worst = std::max(worst, std::abs(Exp(x) - want) / want);
  }
  EXPECT_LT(worst, 1e-6);
  EXPECT_TRUE(std::isfinite(Exp(1000.0f)));
  EXPECT_GE(Exp(-1000.0f), 0.0f);
}

TEST(Ops, SoftmaxSumsToOneAndOrders) {
  std::vector<float> x = {1, 3, 2, -50, 3};
  Softmax(x.data(), int(x.size()));
  double sum = 0;
  for (float v : x) sum += v;
  EXPECT_NEAR(sum, 1.0, 1e-6);
  EXPECT_FLOAT_EQ(x[1], x[4]);
  EXPECT_NEAR(x[1] / x[2], std::exp(1.0), 1e-5);
}

// The vectorized max and the lane-split sum (n >= 16) and their tails
// agree with a double-precision softmax, wherever the maximum sits
// (`second` beside it), whether it is positive, negative or zero among
// negatives (-0 and +0 both present). In the second case the rest lie
// ~200 below: shifted by anything but the max, the top two would leave
// exp's range and lose their ratio.
TEST(Ops, SoftmaxMatchesDoubleReference) {
  struct Case {
    float top, second, shift;
  };
  for (const Case& c : {Case{9.0f, 8.0f, 0.0f}, Case{-100.5f, -101.5f, -300.0f},
                        Case{0.0f, -0.0f, -5.0f}, Case{-0.0f, 0.0f, -5.0f}}) {
    for (int n : {1, 15, 16, 17, 33, 100, 1000}) {
      for (int peak : {0, n / 2, n - 1}) {
        std::vector<float> x(n);
        for (int i = 0; i < n; ++i) {
          x[i] = float((i * 37) % 11) * 0.7f - 3.0f + c.shift;
        }
        if (n > 1) x[(peak + 1) % n] = c.second;
        x[peak] = c.top;
        std::vector<double> want(x.begin(), x.end());
        double sum = 0;
        for (double& v : want) sum += (v = std::exp(v - double(c.top)));
        Softmax(x.data(), n);
        for (int i = 0; i < n; ++i) {
          EXPECT_NEAR(x[i], want[i] / sum, 1e-6)
              << "max " << c.top << " n " << n << " i " << i;
        }
      }
    }
  }
}

TEST(Ops, SiluMulByHand) {
  const float gate[] = {0.0f, 2.0f, -100.0f}, up[] = {5.0f, 3.0f, 7.0f};
  float h[3];
  SiluMul(gate, up, 3, h);
  EXPECT_EQ(h[0], 0.0f);
  EXPECT_NEAR(h[1], 2.0 / (1 + std::exp(-2.0)) * 3.0, 1e-5);
  EXPECT_NEAR(h[2], 0.0f, 1e-30);
}

// Long enough for the vector loop and its tail; values from deep in the
// clamp (exp(-g) over or under float's range) to small ones.
TEST(Ops, SiluMulMatchesTheFormula) {
  std::vector<float> gate, up;
  for (int i = 0; i < 1003; ++i) {
    gate.push_back(float(i % 211 - 105) * (i % 3 == 0 ? 1.0f : 0.05f));
    up.push_back(float(i % 7) - 3.0f);
  }
  std::vector<float> h(gate.size());
  SiluMul(gate.data(), up.data(), int(gate.size()), h.data());
  for (size_t i = 0; i < gate.size(); ++i) {
    const double g = gate[i];
    const double want = g / (1 + std::exp(-g)) * up[i];
    EXPECT_NEAR(h[i], want, 2e-6 * std::fabs(want) + 1e-30)
        << "gate " << gate[i] << " up " << up[i];
  }
}

TEST(Ops, RmsNormByHand) {
  const float x[] = {3, 4}, g[] = {1, 2};
  float y[2];
  RmsNorm(x, g, 2, 0.0f, y);  // rms = sqrt(12.5)
  EXPECT_NEAR(y[0], 3 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(y[1], 8 / std::sqrt(12.5), 1e-6);
}

TEST(Ops, RopeRotatesAdjacentPairs) {
  // One head of 4 with rope on all dims, base 100: pair 0 turns by pos
  // rad, pair 1 by pos / 10.
  float x[] = {1, 0, 0, 1};
  Rope(x, 1, 4, 4, 2, 100.0f);
  EXPECT_NEAR(x[0], std::cos(2.0), 1e-6);
  EXPECT_NEAR(x[1], std::sin(2.0), 1e-6);
  EXPECT_NEAR(x[2], -std::sin(0.2), 1e-6);
  EXPECT_NEAR(x[3], std::cos(0.2), 1e-6);
}

}  // namespace
}  // namespace spikeserve
