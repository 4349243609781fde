// GPTQ for W4 groups (runtime/quant/gptq.h): its inverse factor is the
// Cholesky factor of H⁻¹ (checked by multiplying out), with uncorrelated
// channels it is the importance-weighted round-to-nearest exactly (no error
// is moved), and with correlated channels its output error on the
// calibration rows is well below round-to-nearest's.
#include "runtime/quant/gptq.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/linear/w4_clip_search.h"
#include "tests/fixtures/random_matrix.h"

namespace spikeserve {
namespace {

// Gram matrix Σ_t x_t·x_tᵀ of t rows x = A·z + noise·ε (z ~ N(0, 1)^rank,
// ε ~ N(0, 1)^k, A random): activations in a few dominant directions, as
// a transformer's are, channel j scaled by spread^(j/k).
std::vector<float> CorrelatedGram(int k, int t, int rank, float noise,
                                  float spread, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> a(size_t(k) * rank);
  for (float& v : a) v = nd(rng);
  std::vector<double> g(size_t(k) * k, 0.0);
  std::vector<float> z(rank), x(k);
  for (int s = 0; s < t; ++s) {
    for (float& v : z) v = nd(rng);
    for (int i = 0; i < k; ++i) {
      float acc = noise * nd(rng);
      for (int j = 0; j < rank; ++j) acc += a[size_t(i) * rank + j] * z[j];
      x[i] = acc * std::pow(spread, float(i) / k);
    }
    for (int i = 0; i < k; ++i) {
      for (int j = 0; j < k; ++j) g[size_t(i) * k + j] += double(x[i]) * x[j];
    }
  }
  return std::vector<float>(g.begin(), g.end());
}

// Round-to-nearest with the importance-weighted group search (H's
// diagonal), the method GPTQ improves on.
W4Plain WeightedRtn(const Matrix& w, const std::vector<float>& gram, int group,
                    bool with_min) {
  const int n = w.rows, k = w.cols;
  W4Plain p{n, k, group, with_min};
  p.u.resize(size_t(n) * k);
  p.scale.resize(size_t(n) * (k / group));
  if (with_min) p.min.resize(p.scale.size());
  std::vector<float> h(k);
  for (int i = 0; i < k; ++i) h[i] = gram[size_t(i) * k + i];
  for (int r = 0; r < n; ++r) {
    const float* row = &w.data[size_t(r) * k];
    const size_t gs = size_t(r) * (k / group);
    if (with_min) {
      QuantizeW4RowMinWeighted(row, h.data(), k, group, &p.u[size_t(r) * k],
                               &p.scale[gs], &p.min[gs]);
    } else {
      QuantizeW4RowWeighted(row, h.data(), k, group, &p.u[size_t(r) * k],
                            &p.scale[gs]);
    }
  }
  return p;
}

TEST(GptqTest, InverseFactorMultipliesOutToTheDampedInverse) {
  const int k = 48;
  const std::vector<float> gram = CorrelatedGram(k, 200, 8, 0.3f, 10, 1);
  const double damp = 0.01;
  absl::StatusOr<std::vector<double>> u = GptqInverseFactor(gram, k, damp);
  ASSERT_TRUE(u.ok()) << u.status();
  double mean_diag = 0;
  for (int i = 0; i < k; ++i) mean_diag += gram[size_t(i) * k + i];
  mean_diag /= k;
  // (Uᵀ·U)·(H + damp·mean·I) = I, and U is upper triangular.
  for (int i = 0; i < k; ++i) {
    for (int j = 0; j < i; ++j) EXPECT_EQ((*u)[size_t(i) * k + j], 0.0);
    for (int j = 0; j < k; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p) {
        double hinv = 0;  // (UᵀU)[i][p]
        for (int q = 0; q <= std::min(i, p); ++q) {
          hinv += (*u)[size_t(q) * k + i] * (*u)[size_t(q) * k + p];
        }
        const double h = gram[size_t(p) * k + j] + (p == j) * damp * mean_diag;
        s += hinv * h;
      }
      EXPECT_NEAR(s, i == j ? 1.0 : 0.0, 1e-6) << i << "," << j;
    }
  }
}

TEST(GptqTest, DeadChannelsAndSingularGramsStillFactor) {
  const int k = 32;
  // Rank one (every row the same direction) and channel 7 never set.
  std::vector<float> gram(size_t(k) * k, 0.0f);
  for (int i = 0; i < k; ++i) {
    for (int j = 0; j < k; ++j) {
      if (i != 7 && j != 7) gram[size_t(i) * k + j] = 1.0f;
    }
  }
  absl::StatusOr<std::vector<double>> u = GptqInverseFactor(gram, k, 0.01);
  ASSERT_TRUE(u.ok()) << u.status();
  for (double v : *u) EXPECT_TRUE(std::isfinite(v));
}

TEST(GptqTest, UncorrelatedChannelsGiveTheWeightedRoundToNearest) {
  // H = c·I: U is diagonal, no error moves, and every group's search sees
  // uniform importance: the codes and scales of the search itself.
  const int k = 128, n = 12;
  const Matrix w = testing::RandomMatrix(n, k, 3);
  std::vector<float> gram(size_t(k) * k, 0.0f);
  for (int i = 0; i < k; ++i) gram[size_t(i) * k + i] = 4.0f;
  for (bool with_min : {false, true}) {
    for (int group : {32, 128}) {
      GptqOptions o;
      o.group = group;
      o.with_min = with_min;
      absl::StatusOr<W4Plain> q = GptqQuantize(MatrixRows(w), gram, o);
      ASSERT_TRUE(q.ok()) << q.status();
      const W4Plain rtn = WeightedRtn(w, gram, group, with_min);
      EXPECT_EQ(q->u, rtn.u) << "group " << group << " min " << with_min;
      EXPECT_EQ(q->scale, rtn.scale);
      EXPECT_EQ(q->min, rtn.min);
    }
  }
}

struct CorrelatedCase {
  int group;
  bool with_min;
};

class GptqCorrelatedTest : public ::testing::TestWithParam<CorrelatedCase> {};

TEST_P(GptqCorrelatedTest, OutputErrorWellBelowRoundToNearest) {
  const CorrelatedCase c = GetParam();
  const int k = 256, n = 24;
  const std::vector<float> gram = CorrelatedGram(k, 600, 16, 0.5f, 10, 5);
  const Matrix w = testing::RandomMatrix(n, k, 7);
  GptqOptions o;
  o.group = c.group;
  o.with_min = c.with_min;
  absl::StatusOr<W4Plain> q = GptqQuantize(MatrixRows(w), gram, o);
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_EQ(q->n, n);
  ASSERT_EQ(q->k, k);
  ASSERT_EQ(q->group, c.group);
  ASSERT_EQ(q->has_min, c.with_min);
  for (uint8_t v : q->u) ASSERT_LE(v, 15);
  const double gptq = W4OutputError(MatrixRows(w), *q, gram);
  const double rtn = W4OutputError(
      MatrixRows(w), WeightedRtn(w, gram, c.group, c.with_min), gram);
  // About a fifth here (0.17-0.22): the rank-16 activations let errors
  // cancel along the directions the rows never take.
  EXPECT_LT(gptq, 0.5 * rtn) << "GPTQ " << gptq << " RTN " << rtn;
}

INSTANTIATE_TEST_SUITE_P(Groups, GptqCorrelatedTest,
                         ::testing::Values(CorrelatedCase{32, false},
                                           CorrelatedCase{32, true},
                                           CorrelatedCase{128, false},
                                           CorrelatedCase{128, true}));

TEST(GptqTest, BadArgumentsNameTheProblem) {
  const Matrix w = testing::RandomMatrix(4, 96, 1);
  std::vector<float> gram(96 * 96, 0.0f);
  for (int i = 0; i < 96; ++i) gram[i * 96 + i] = 1.0f;
  GptqOptions o;
  o.group = 64;  // does not divide 96
  absl::StatusOr<W4Plain> q = GptqQuantize(MatrixRows(w), gram, o);
  EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(q.status().message().find("group 64"), std::string::npos);
  o.group = 32;
  q = GptqQuantize(MatrixRows(w), absl::MakeSpan(gram).subspan(1), o);
  EXPECT_NE(q.status().message().find("K·K"), std::string::npos);
  // No damping: with a singular E[xxT] every retry would fail alike.
  for (double damp : {0.0, -1.0, double(NAN)}) {
    absl::StatusOr<std::vector<double>> u = GptqInverseFactor(gram, 96, damp);
    EXPECT_EQ(u.status().code(), absl::StatusCode::kInvalidArgument) << damp;
    EXPECT_NE(u.status().message().find("damping"), std::string::npos);
  }
  gram[5] = NAN;
  q = GptqQuantize(MatrixRows(w), gram, o);
  EXPECT_NE(q.status().message().find("non-finite"), std::string::npos);
}

}  // namespace
}  // namespace spikeserve
