#include "runtime/linear/w4a8_linear.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/linear/activation_quant.h"
#include "tests/fixtures/random_matrix.h"

namespace spikeserve {
namespace {

using ::spikeserve::testing::RandomMatrix;

struct Case {
  int m, k, n, group;
  ActQuantMode mode;
};

class W4A8LinearTest : public ::testing::TestWithParam<Case> {};

// The layer is the composition of its parts, bit for bit: activations
// quantized as the W8A8 linear does, weights by QuantizeW4Row, product by
// the scalar reference. And it stays near the FP32 product of the weights
// it holds (dequantized): only the activations' rounding remains.
TEST_P(W4A8LinearTest, ComposesTheReferenceAndTracksFp32) {
  const Case c = GetParam();
  if (W4A8Linear::KernelDescription() == "none") GTEST_SKIP() << "no AVX2";
  const Matrix w = RandomMatrix(c.n, c.k, c.k + c.n);
  std::vector<float> x(size_t(c.m) * c.k);
  std::mt19937 rng(c.m);
  std::normal_distribution<float> nd(0, 1);
  for (float& v : x) v = nd(rng);
  x[3] = 40;  // a spike
  W4A8Linear::Options o;
  o.mode = c.mode;
  o.static_absmax = 50;
  o.group = c.group;
  auto lin = W4A8Linear::Create(MatrixRows(w), o);
  ASSERT_TRUE(lin.ok()) << lin.status();
  EXPECT_EQ((*lin)->in_features(), c.k);
  EXPECT_EQ((*lin)->out_features(), c.n);
  const std::vector<int> bounds = {0, c.m / 2, c.m};
  const LinearInput in{x.data(), c.m, bounds};
  std::vector<float> y(size_t(c.m) * c.n);
  (*lin)->Forward(in, y.data());

  W4Plain plain{c.n,
                c.k,
                c.group,
                false,
                std::vector<uint8_t>(w.data.size()),
                std::vector<uint16_t>(size_t(c.n) * (c.k / c.group)),
                {}};
  for (int r = 0; r < c.n; ++r) {
    QuantizeW4Row(w.row(r), c.k, c.group, &plain.u[size_t(r) * c.k],
                  &plain.scale[size_t(r) * plain.groups()]);
  }
  std::vector<float> row_scale(c.m);
  std::vector<int8_t> xq(x.size());
  QuantizeActivations(in, c.k, c.mode, o.static_absmax, row_scale.data(),
                      xq.data());
  std::vector<float> want(y.size());
  W4GemmReference(xq.data(), c.m, plain, row_scale.data(), want.data());
  ASSERT_EQ(0, std::memcmp(y.data(), want.data(), y.size() * sizeof(float)));

  // FP32 with the dequantized weights: the error is the activations'
  // rounding, at most half a step (row_scale / 2) per element.
  std::vector<float> wq(c.k);
  for (int n = 0; n < c.n; ++n) {
    DequantizeW4Row(plain, n, wq.data());
    for (int r = 0; r < c.m; ++r) {
      double exact = 0, bound = 0;
      for (int k = 0; k < c.k; ++k) {
        exact += double(x[size_t(r) * c.k + k]) * wq[k];
        bound += std::fabs(wq[k]) * row_scale[r] / 2;
      }
      ASSERT_NEAR(y[size_t(r) * c.n + n], exact, bound * 1.01 + 1e-4)
          << "row " << r << " column " << n;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, W4A8LinearTest,
    ::testing::Values(Case{1, 576, 576, 64, ActQuantMode::kPerTokenDynamic},
                      Case{7, 1536, 96, 128, ActQuantMode::kPerTokenDynamic},
                      Case{33, 576, 72, 32, ActQuantMode::kPerTensorDynamic},
                      Case{4, 256, 40, 128, ActQuantMode::kPerTensorStatic}));

// Shapes the format cannot hold fail with the numbers in the message.
TEST(W4A8Linear, RefusesGroupsThatDoNotDivideK) {
  const Matrix w = RandomMatrix(8, 576, 1);
  W4A8Linear::Options o;
  o.group = 128;
  auto lin = W4A8Linear::Create(MatrixRows(w), o);
  ASSERT_FALSE(lin.ok());
  EXPECT_EQ(lin.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(lin.status().message().find("576"), std::string::npos);
  EXPECT_NE(lin.status().message().find("128"), std::string::npos);
  o.group = 48;
  lin = W4A8Linear::Create(MatrixRows(w), o);
  ASSERT_FALSE(lin.ok());
  EXPECT_NE(lin.status().message().find("48"), std::string::npos);
  o.group = 64;
  EXPECT_TRUE(W4A8Linear::Create(MatrixRows(w), o).ok());
}

// A group scale or minimum that is not finite (a file's half beyond its
// range) is refused: every output of the module would be NaN.
TEST(W4A8Linear, RefusesNonFiniteScalesAndMinimums) {
  W4Plain w;
  w.n = 2;
  w.k = 64;
  w.group = 32;
  w.has_min = true;
  w.u.assign(size_t(w.n) * w.k, 3);
  w.scale.assign(size_t(w.n) * w.groups(), 0x3C00);  // 1.0
  w.min.assign(w.scale.size(), 0xBC00);              // -1.0
  W4A8Linear::Options o;
  ASSERT_TRUE(W4A8Linear::FromPlain(w, o).ok());
  for (uint16_t bad : {uint16_t(0x7C00), uint16_t(0xFC00), uint16_t(0x7E00)}) {
    W4Plain m = w;
    m.min[3] = bad;
    auto lin = W4A8Linear::FromPlain(m, o);
    ASSERT_FALSE(lin.ok()) << bad;
    EXPECT_THAT(std::string(lin.status().message()),
                ::testing::HasSubstr("minimum is infinite or NaN"));
    m = w;
    m.scale[1] = bad;
    EXPECT_THAT(std::string(W4A8Linear::FromPlain(m, o).status().message()),
                ::testing::HasSubstr("scale is infinite or NaN"));
  }
}

TEST(W4A8Linear, StaticModeNeedsACalibratedAbsmax) {
  const Matrix w = RandomMatrix(8, 128, 1);
  W4A8Linear::Options o;
  o.mode = ActQuantMode::kPerTensorStatic;
  o.static_absmax = 0;
  EXPECT_EQ(W4A8Linear::Create(MatrixRows(w), o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// With the inputs' mean squares as importance, each group's scale is
// chosen for the channels that carry the signal: the output error on such
// inputs (channel scales over two decades) drops well below round-to-
// nearest's, for both group forms.
TEST(W4A8Linear, ImportanceLowersTheOutputError) {
  if (W4A8Linear::KernelDescription() == "none") GTEST_SKIP() << "no AVX2";
  const int k = 256, n = 64, m = 32;
  const Matrix w = RandomMatrix(n, k, 5);
  std::mt19937 rng(6);
  std::uniform_real_distribution<float> ud(0, 1);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> sigma(k), importance(k), x(size_t(m) * k);
  for (int j = 0; j < k; ++j) {
    sigma[j] = std::pow(10.0f, -2 * ud(rng));
    importance[j] = sigma[j] * sigma[j];
  }
  for (int r = 0; r < m; ++r) {
    for (int j = 0; j < k; ++j) x[size_t(r) * k + j] = sigma[j] * nd(rng);
  }
  std::vector<double> exact(size_t(m) * n);
  for (int r = 0; r < m; ++r) {
    for (int c = 0; c < n; ++c) {
      for (int j = 0; j < k; ++j) {
        exact[size_t(r) * n + c] += double(x[size_t(r) * k + j]) * w.row(c)[j];
      }
    }
  }
  for (bool with_min : {false, true}) {
    double err[2];
    for (int weighted = 0; weighted < 2; ++weighted) {
      W4A8Linear::Options o;
      o.group = 32;
      o.with_min = with_min;
      if (weighted) o.importance = importance;
      auto lin = W4A8Linear::Create(MatrixRows(w), o);
      ASSERT_TRUE(lin.ok()) << lin.status();
      std::vector<float> y(size_t(m) * n);
      const std::vector<int> bounds = {0, m};
      (*lin)->Forward({x.data(), m, bounds}, y.data());
      err[weighted] = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        err[weighted] += (y[i] - exact[i]) * (y[i] - exact[i]);
      }
    }
    EXPECT_LT(err[1], 0.7 * err[0])  // measured 0.52 and 0.48
        << (with_min ? "with min: " : "symmetric: ") << err[0] << " -> "
        << err[1];
  }
}

// The importance must be one finite value >= 0 per input channel.
TEST(W4A8Linear, RefusesAMalformedImportance) {
  const Matrix w = RandomMatrix(8, 128, 1);
  W4A8Linear::Options o;
  o.group = 32;
  const std::vector<float> short_h(100, 1.0f);
  o.importance = short_h;
  auto lin = W4A8Linear::Create(MatrixRows(w), o);
  ASSERT_FALSE(lin.ok());
  EXPECT_EQ(lin.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(lin.status().message().find("100 importance values for 128"),
            std::string::npos)
      << lin.status();
  std::vector<float> bad(128, 1.0f);
  bad[9] = -1;
  o.importance = bad;
  lin = W4A8Linear::Create(MatrixRows(w), o);
  ASSERT_FALSE(lin.ok());
  EXPECT_NE(lin.status().message().find("importance[9]"), std::string::npos)
      << lin.status();
  bad[9] = std::nanf("");
  EXPECT_FALSE(W4A8Linear::Create(MatrixRows(w), o).ok());
}

// Half a byte per weight plus a half scale per group of 128.
TEST(W4A8Linear, HoldsFourBitsAndAnEighth) {
  const Matrix w = RandomMatrix(64, 1024, 2);
  auto lin = W4A8Linear::Create(MatrixRows(w), W4A8Linear::Options{});
  ASSERT_TRUE(lin.ok());
  EXPECT_EQ((*lin)->weight_bytes(), size_t(64) * 1024 * 4125 / 8000);
}

}  // namespace
}  // namespace spikeserve
