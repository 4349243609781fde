// The importance-weighted W4 group search (w4_clip_search.h): never worse
// than round-to-nearest from the extremes in the weighted error, clearly
// better where a quiet channel holds the group's largest weight, and its
// output is an ordinary W4 group (codes in range, exact reconstruction).
#include "runtime/linear/w4_clip_search.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/gguf/dequantize.h"
#include "runtime/linear/w4_gemm.h"

namespace spikeserve {
namespace {

struct Row {
  std::vector<float> w, h;
};

// k weights ~ N(0, 1) with one outlier per group of 32 (x `outlier`), and
// importance log-uniform over `h_span` decades.
Row RandomRow(int k, uint32_t seed, float outlier, float h_span) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  std::uniform_real_distribution<float> ud(0, 1);
  Row r{std::vector<float>(k), std::vector<float>(k)};
  for (int i = 0; i < k; ++i) {
    r.w[i] = nd(rng) * (i % 32 == 5 ? outlier : 1.0f);
    r.h[i] = std::pow(10.0f, -h_span * ud(rng));
  }
  return r;
}

struct Errors {
  double rtn = 0, searched = 0;
};

// Weighted error over the row of round-to-nearest and of the search.
Errors Compare(const Row& r, int group, bool with_min) {
  const int k = int(r.w.size()), groups = k / group;
  std::vector<uint8_t> u0(k), u1(k);
  std::vector<uint16_t> s0(groups), s1(groups), m0(groups), m1(groups);
  if (with_min) {
    QuantizeW4RowMin(r.w.data(), k, group, u0.data(), s0.data(), m0.data());
    QuantizeW4RowMinWeighted(r.w.data(), r.h.data(), k, group, u1.data(),
                             s1.data(), m1.data());
  } else {
    QuantizeW4Row(r.w.data(), k, group, u0.data(), s0.data());
    QuantizeW4RowWeighted(r.w.data(), r.h.data(), k, group, u1.data(),
                          s1.data());
  }
  Errors e;
  for (int g = 0; g < groups; ++g) {
    const size_t o = size_t(g) * group;
    const double rtn = W4GroupWeightedError(&r.w[o], &r.h[o], group, &u0[o],
                                            s0[g], with_min ? &m0[g] : nullptr);
    const double searched = W4GroupWeightedError(
        &r.w[o], &r.h[o], group, &u1[o], s1[g], with_min ? &m1[g] : nullptr);
    // (The search sums in float, this in double.)
    EXPECT_LE(searched, rtn * (1 + 1e-5)) << "group " << g;
    e.rtn += rtn;
    e.searched += searched;
    for (int i = 0; i < group; ++i) EXPECT_LE(u1[o + i], 15);
  }
  return e;
}

struct Case {
  int group;
  bool with_min;
  float outlier, h_span;
  double max_ratio;  // searched / rtn must stay below (measured in comments)
};

class W4ClipSearchTest : public ::testing::TestWithParam<Case> {};

// Never worse in any group (round-to-nearest is a candidate), and better
// over the row by the stated margin: plain Gaussian weights gain a little
// from a tighter scale, outliers on quiet channels a lot.
TEST_P(W4ClipSearchTest, NeverWorseAndBetterOverTheRow) {
  const Case c = GetParam();
  const Row r = RandomRow(1024, c.group + c.with_min, c.outlier, c.h_span);
  const Errors e = Compare(r, c.group, c.with_min);
  EXPECT_LT(e.searched, c.max_ratio * e.rtn)
      << "rtn " << e.rtn << " searched " << e.searched;
}

INSTANTIATE_TEST_SUITE_P(
    Groups, W4ClipSearchTest,
    ::testing::Values(Case{32, false, 1, 0, 0.95},   // uniform (0.91)
                      Case{64, false, 1, 2, 0.85},   // two decades (0.72)
                      Case{128, false, 4, 2, 0.75},  // outliers (0.64)
                      Case{32, true, 1, 0, 0.95},    // with a min (0.87)
                      Case{64, true, 4, 2, 0.85},    // (0.73)
                      Case{128, true, 1, 3, 0.8}));  // (0.66)

// By hand: 31 weights of ±0.25 that matter and one of -4 that does not
// (importance 1e-6). From the extremes the step is 0.5 (-4 -> code -8), so
// each ±0.25 sits half a step from its codes: 31 · 0.25² in total. At half
// that step (clipping -4 to -2) every ±0.25 is exact and only the quiet
// weight errs: (4 - 2)² · 1e-6.
TEST(W4ClipSearch, ClipsAQuietOutlier) {
  std::vector<float> w(32), h(32, 1.0f);
  for (int i = 0; i < 32; ++i) w[i] = i % 2 ? 0.25f : -0.25f;
  w[7] = -4;
  h[7] = 1e-6f;
  std::vector<uint8_t> u(32);
  uint16_t scale;
  QuantizeW4Row(w.data(), 32, 32, u.data(), &scale);
  EXPECT_NEAR(
      W4GroupWeightedError(w.data(), h.data(), 32, u.data(), scale, nullptr),
      31 * 0.0625, 1e-9);
  QuantizeW4RowWeighted(w.data(), h.data(), 32, 32, u.data(), &scale);
  EXPECT_LE(
      W4GroupWeightedError(w.data(), h.data(), 32, u.data(), scale, nullptr),
      4e-6 * (1 + 1e-6));
}

// The codes and scale are an ordinary W4 group: the weighted error the
// search reports is the one DequantizeW4Row's reconstruction has.
TEST(W4ClipSearch, StoresAnOrdinaryGroup) {
  for (bool with_min : {false, true}) {
    const Row r = RandomRow(128, 9, 3, 2);
    W4Plain p;
    p.n = 1;
    p.k = 128;
    p.group = 32;
    p.has_min = with_min;
    p.u.resize(128);
    p.scale.resize(4);
    if (with_min) {
      p.min.resize(4);
      QuantizeW4RowMinWeighted(r.w.data(), r.h.data(), 128, 32, p.u.data(),
                               p.scale.data(), p.min.data());
    } else {
      QuantizeW4RowWeighted(r.w.data(), r.h.data(), 128, 32, p.u.data(),
                            p.scale.data());
    }
    std::vector<float> back(128);
    DequantizeW4Row(p, 0, back.data());
    for (int g = 0; g < 4; ++g) {
      double want = 0;
      for (int i = g * 32; i < g * 32 + 32; ++i) {
        EXPECT_LE(p.u[i], 15);
        want += double(r.h[i]) * (r.w[i] - back[i]) * (r.w[i] - back[i]);
      }
      EXPECT_NEAR(
          W4GroupWeightedError(&r.w[g * 32], &r.h[g * 32], 32, &p.u[g * 32],
                               p.scale[g], with_min ? &p.min[g] : nullptr),
          want, 1e-5 * want + 1e-12)
          << (with_min ? "with min" : "symmetric") << " group " << g;
    }
  }
}

// Edge cases: an all-zero group stays exact; an all-zero importance is
// weighted uniformly (no NaN, no worse than round-to-nearest).
TEST(W4ClipSearch, ZeroGroupsAndZeroImportance) {
  std::vector<float> w(64, 0.0f), h(64, 0.0f);
  for (int i = 32; i < 64; ++i) w[i] = std::sin(float(i));
  std::vector<uint8_t> u(64);
  uint16_t scale[2], mn[2];
  QuantizeW4RowWeighted(w.data(), h.data(), 64, 32, u.data(), scale);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(u[i], 8);
  EXPECT_EQ(HalfToFloat(scale[0]), 0.0f);
  const std::vector<float> ones(32, 1.0f);
  std::vector<uint8_t> u0(32);
  uint16_t s0;
  QuantizeW4Row(&w[32], 32, 32, u0.data(), &s0);
  EXPECT_LE(
      W4GroupWeightedError(&w[32], ones.data(), 32, &u[32], scale[1], nullptr),
      W4GroupWeightedError(&w[32], ones.data(), 32, u0.data(), s0, nullptr));
  QuantizeW4RowMinWeighted(w.data(), h.data(), 64, 32, u.data(), scale, mn);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(u[i], 0);
  EXPECT_EQ(HalfToFloat(mn[0]), 0.0f);
  EXPECT_TRUE(std::isfinite(HalfToFloat(scale[1])));
  EXPECT_TRUE(std::isfinite(HalfToFloat(mn[1])));
}

}  // namespace
}  // namespace spikeserve
