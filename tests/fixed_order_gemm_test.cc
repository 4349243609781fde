// The fixed-order FP32 kernel (fixed_order_gemm.h): each ISA equals the
// scalar kernel bit for bit; a row's output does not depend on the rows
// beside it, the thread count or the weight format's width; and the result
// is the product within FP32 rounding of a double reference.
#include "runtime/linear/fixed_order_gemm.h"

#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/linear/bf16_linear.h"

namespace spikeserve {
namespace {

struct Shape {
  int m, n, k;
};

struct Data {
  std::vector<float> x, w;
  std::vector<uint16_t> wb;  // w rounded to bf16
  Data(const Shape& s, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0, 1);
    x.resize(size_t(s.m) * s.k);
    w.resize(size_t(s.n) * s.k);
    for (float& v : x) v = d(rng);
    for (float& v : w) v = d(rng) * 0.05f;
    wb.resize(w.size());
    for (size_t i = 0; i < w.size(); ++i) wb[i] = FloatToBf16(w[i]);
  }
};

float Bf16ToFloat(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

template <typename W>
std::vector<float> Gemm(const Data& d, const Shape& s, const W* w,
                        FixedOrderIsa isa, int m = -1, int row0 = 0) {
  if (m < 0) m = s.m;
  std::vector<float> y(size_t(m) * s.n, -1.0f);
  FixedOrderGemm(d.x.data() + size_t(row0) * s.k, m, w, s.n, s.k, y.data(),
                 isa);
  return y;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

class FixedOrderGemmTest
    : public ::testing::TestWithParam<std::tuple<FixedOrderIsa, Shape>> {
 protected:
  void SetUp() override {
    if (!FixedOrderIsaSupported(isa())) {
      GTEST_SKIP() << FixedOrderIsaName(isa()) << " not on this CPU";
    }
  }
  FixedOrderIsa isa() const { return std::get<0>(GetParam()); }
  Shape shape() const { return std::get<1>(GetParam()); }
};

TEST_P(FixedOrderGemmTest, EqualsScalarBitForBit) {
  const Shape s = shape();
  const Data d(s, 7);
  EXPECT_TRUE(SameBits(Gemm(d, s, d.w.data(), isa()),
                       Gemm(d, s, d.w.data(), FixedOrderIsa::kScalar)));
  EXPECT_TRUE(SameBits(Gemm(d, s, d.wb.data(), isa()),
                       Gemm(d, s, d.wb.data(), FixedOrderIsa::kScalar)));
}

// Every row computed alone, and in a call of the rows after it, gives the
// bits of the whole call; so do 1 and 2 threads.
TEST_P(FixedOrderGemmTest, RowsDoNotDependOnTheirCompanyOrThreads) {
  const Shape s = shape();
  const Data d(s, 11);
  const std::vector<float> all = Gemm(d, s, d.w.data(), isa());
  for (int r = 0; r < s.m; ++r) {
    const std::vector<float> alone = Gemm(d, s, d.w.data(), isa(), 1, r);
    const std::vector<float> tail = Gemm(d, s, d.w.data(), isa(), s.m - r, r);
    ASSERT_EQ(std::memcmp(alone.data(), all.data() + size_t(r) * s.n,
                          sizeof(float) * s.n),
              0)
        << "row " << r << " alone";
    ASSERT_EQ(std::memcmp(tail.data(), all.data() + size_t(r) * s.n,
                          tail.size() * sizeof(float)),
              0)
        << "rows from " << r;
  }
  // The bf16 form: a row alone as in company.
  const std::vector<float> all_b = Gemm(d, s, d.wb.data(), isa());
  for (int r = 0; r < s.m; ++r) {
    const std::vector<float> alone = Gemm(d, s, d.wb.data(), isa(), 1, r);
    ASSERT_EQ(std::memcmp(alone.data(), all_b.data() + size_t(r) * s.n,
                          sizeof(float) * s.n),
              0)
        << "bf16 row " << r << " alone";
  }
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<float> one = Gemm(d, s, d.w.data(), isa());
  omp_set_num_threads(3);  // shares that are not whole halves
  const std::vector<float> three = Gemm(d, s, d.w.data(), isa());
  omp_set_num_threads(threads);
  EXPECT_TRUE(SameBits(one, all));
  EXPECT_TRUE(SameBits(three, all));
}

// |y - Σ x·w| <= (K + 2) · 2^-24 · Σ |x·w| (a chain of K/8 fmas and a tree
// of 3 adds, each rounding once), against sums in double; for the bf16
// weights the reference uses the rounded weights.
TEST_P(FixedOrderGemmTest, WithinFp32RoundingOfDoubleReference) {
  const Shape s = shape();
  const Data d(s, 13);
  const std::vector<float> y = Gemm(d, s, d.w.data(), isa());
  const std::vector<float> yb = Gemm(d, s, d.wb.data(), isa());
  const double eps = std::ldexp(1.0, -24) * (s.k + 2);
  for (int r = 0; r < s.m; ++r) {
    for (int n = 0; n < s.n; ++n) {
      double exact = 0, mag = 0, exact_b = 0, mag_b = 0;
      for (int i = 0; i < s.k; ++i) {
        const double xv = d.x[size_t(r) * s.k + i];
        const double wv = d.w[size_t(n) * s.k + i];
        const double bv = Bf16ToFloat(d.wb[size_t(n) * s.k + i]);
        exact += xv * wv;
        mag += std::abs(xv * wv);
        exact_b += xv * bv;
        mag_b += std::abs(xv * bv);
      }
      ASSERT_LE(std::abs(y[size_t(r) * s.n + n] - exact), eps * mag + 1e-30)
          << r << "," << n;
      ASSERT_LE(std::abs(yb[size_t(r) * s.n + n] - exact_b),
                eps * mag_b + 1e-30)
          << r << "," << n;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, FixedOrderGemmTest,
    ::testing::Combine(
        ::testing::Values(FixedOrderIsa::kScalar, FixedOrderIsa::kAvx2),
        // Tails of every kind: K below, at and past whole 8s; N past whole
        // column tiles (3 columns for 2-4 rows, 8 for a single row) and
        // thread units of 24; rows past row tiles of 4 and blocks of 32;
        // single rows and batches large enough (2^18 multiply-adds) to
        // split over threads.
        ::testing::Values(Shape{1, 1, 1}, Shape{1, 5, 7}, Shape{2, 4, 8},
                          Shape{3, 13, 40}, Shape{5, 9, 577}, Shape{1, 23, 17},
                          Shape{7, 26, 9}, Shape{33, 17, 100},
                          Shape{40, 96, 576}, Shape{1, 1537, 576},
                          Shape{1, 4100, 65}, Shape{6, 50, 1000},
                          Shape{67, 150, 129})),
    [](const auto& i) {
      const Shape s = std::get<1>(i.param);
      return std::string(FixedOrderIsaName(std::get<0>(i.param))) + "_" +
             std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
             std::to_string(s.k);
    });

// Special values take the same path in every kernel and every company:
// -0, subnormals, infinities and NaNs in x, AVX2 bits equal to scalar's.
TEST(FixedOrderGemm, SpecialValuesMatchScalarBitForBit) {
  if (!FixedOrderIsaSupported(FixedOrderIsa::kAvx2)) GTEST_SKIP();
  const Shape s{5, 11, 19};
  Data d(s, 17);
  const float specials[] = {-0.0f,
                            0.0f,
                            std::numeric_limits<float>::denorm_min(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN()};
  for (size_t i = 0; i < d.x.size(); i += 3) d.x[i] = specials[i % 6];
  for (size_t i = 1; i < d.w.size(); i += 7) d.w[i] = -0.0f;
  const auto a = Gemm(d, s, d.w.data(), FixedOrderIsa::kAvx2);
  const auto b = Gemm(d, s, d.w.data(), FixedOrderIsa::kScalar);
  EXPECT_TRUE(SameBits(a, b));
  for (int r = 0; r < s.m; ++r) {
    const auto alone = Gemm(d, s, d.w.data(), FixedOrderIsa::kAvx2, 1, r);
    EXPECT_EQ(std::memcmp(alone.data(), a.data() + size_t(r) * s.n,
                          sizeof(float) * s.n),
              0)
        << r;
  }
}

// The strided form writes its columns into rows ldy apart and nothing else.
TEST(FixedOrderGemm, StridedFormWritesItsColumnsOnly) {
  const Shape s{3, 5, 40};
  const Data d(s, 19);
  const std::vector<float> want = Gemm(d, s, d.w.data(), BestFixedOrderIsa());
  const int ldy = 9;
  std::vector<float> y(size_t(s.m) * ldy, 7.0f);
  FixedOrderGemmStrided(d.x.data(), s.m, d.w.data(), s.n, s.k, y.data() + 2,
                        ldy);
  for (int r = 0; r < s.m; ++r) {
    for (int c = 0; c < ldy; ++c) {
      const float v = y[size_t(r) * ldy + c];
      if (c >= 2 && c < 2 + s.n) {
        EXPECT_EQ(v, want[size_t(r) * s.n + c - 2]) << r << "," << c;
      } else {
        EXPECT_EQ(v, 7.0f) << r << "," << c;
      }
    }
  }
}

// Hand-checkable: x = (1, 2, 3), W = (1, 1, 1; 0, -1, 2) gives 6 and 4,
// exactly, in every kernel and both weight formats (all bf16-exact).
TEST(FixedOrderGemm, SmallProductByHand) {
  const float x[3] = {1, 2, 3};
  const float w[6] = {1, 1, 1, 0, -1, 2};
  uint16_t wb[6];
  for (int i = 0; i < 6; ++i) wb[i] = FloatToBf16(w[i]);
  for (FixedOrderIsa isa : {FixedOrderIsa::kScalar, FixedOrderIsa::kAvx2}) {
    if (!FixedOrderIsaSupported(isa)) continue;
    float y[2] = {0, 0}, yb[2] = {0, 0};
    FixedOrderGemm(x, 1, w, 2, 3, y, isa);
    FixedOrderGemm(x, 1, wb, 2, 3, yb, isa);
    EXPECT_EQ(y[0], 6.0f) << FixedOrderIsaName(isa);
    EXPECT_EQ(y[1], 4.0f) << FixedOrderIsaName(isa);
    EXPECT_EQ(yb[0], 6.0f) << FixedOrderIsaName(isa);
    EXPECT_EQ(yb[1], 4.0f) << FixedOrderIsaName(isa);
  }
}

// The summation order is the documented one: lanes k mod 8, then the tree
// ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)). With x = 1 and w =
// (2^24, 1, 0, 0, -2^24, 1, 0, 0), a0 + a4 = 0 and a1 + a5 = 2: y = 2.
// A left-to-right sum would give 1 (2^24 + 1 rounds to 2^24).
TEST(FixedOrderGemm, SumsInTheDocumentedOrder) {
  const float big = 16777216.0f;  // 2^24
  const float x[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  const float w[8] = {big, 1, 0, 0, -big, 1, 0, 0};
  for (FixedOrderIsa isa : {FixedOrderIsa::kScalar, FixedOrderIsa::kAvx2}) {
    if (!FixedOrderIsaSupported(isa)) continue;
    float y = 0;
    FixedOrderGemm(x, 1, w, 1, 8, &y, isa);
    EXPECT_EQ(y, 2.0f) << FixedOrderIsaName(isa);
  }
}

}  // namespace
}  // namespace spikeserve
