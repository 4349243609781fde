#include "runtime/linear/int8_linear.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fixtures/random_matrix.h"

namespace spikeserve {
namespace {

using ::spikeserve::testing::RandomMatrix;

std::vector<float> RandomInput(int m, int k, uint32_t seed) {
  std::vector<float> x(size_t(m) * k);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0, 1);
  for (float& v : x) v = d(rng);
  return x;
}

struct Case {
  int m, k, n;
  ActQuantMode mode;
  // -1: the default dispatch (our packed kernel for every batch on AVX2
  // and VNNI CPUs); 0: oneDNN for every batch, as on AMX.
  int packed_max_rows = -1;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.m << "x" << c.k << "x" << c.n << " " << ActQuantModeName(c.mode)
      << (c.packed_max_rows == 0 ? " onednn" : "");
}

class Int8LinearTest : public ::testing::TestWithParam<Case> {};

// The output equals the scalar integer dot product of the same quantized
// operands, dequantized as float(acc) * (s_x * s_w), exactly (oneDNN or
// our packed kernel, whichever serves m); and it is within
// the analytic quantization bound of the FP32 product:
//   |y - x·w| <= Σ_k |x_k| s_w/2 + s_x/2 |w_k| + s_x s_w / 4
// (each operand is off by at most half its scale).
TEST_P(Int8LinearTest, ExactIntegersAndBoundedError) {
  const Case& c = GetParam();
  const Matrix w = RandomMatrix(c.n, c.k, 1);
  const std::vector<float> x = RandomInput(c.m, c.k, 2);
  Int8Linear::Options o;
  o.mode = c.mode;
  o.static_absmax = 4.5f;  // below the true max: clipping is part of the test
  o.keep_plain_weights = true;
  o.packed_max_rows = c.packed_max_rows;
  auto lin = Int8Linear::Create(w, o);
  ASSERT_TRUE(lin.ok()) << lin.status();
  // Two sequences when m > 1, so per-tensor scales are per sequence.
  std::vector<int> bounds = {0};
  if (c.m > 1) bounds.push_back(c.m / 2);
  bounds.push_back(c.m);
  std::vector<float> y(size_t(c.m) * c.n);
  (*lin)->Forward({x.data(), c.m, bounds}, y.data());

  const auto xq = Int8Linear::last_quantized_input();
  const auto& wq = (*lin)->plain_weights();
  const auto sx = Int8Linear::last_row_scales();
  const auto& sw = (*lin)->weight_scales();
  ASSERT_EQ(xq.size(), size_t(c.m) * c.k);
  // The scales and codes the mode prescribes, computed here: per token the
  // row's absmax / 127, per tensor the sequence's, static 4.5 / 127; codes
  // round(x / s) to nearest even, clamped to [-127, 127].
  std::vector<float> row_max(c.m, 0.0f);
  for (int i = 0; i < c.m; ++i) {
    for (int k = 0; k < c.k; ++k) {
      row_max[i] = std::max(row_max[i], std::abs(x[size_t(i) * c.k + k]));
    }
  }
  for (size_t g = 0; g + 1 < bounds.size(); ++g) {
    float seq_max = 0;
    for (int i = bounds[g]; i < bounds[g + 1]; ++i) {
      seq_max = std::max(seq_max, row_max[i]);
    }
    for (int i = bounds[g]; i < bounds[g + 1]; ++i) {
      const float a = c.mode == ActQuantMode::kPerTokenDynamic    ? row_max[i]
                      : c.mode == ActQuantMode::kPerTensorDynamic ? seq_max
                                                                  : 4.5f;
      ASSERT_EQ(sx[i], a / 127.0f) << "row " << i;
      for (int k = 0; k < c.k; ++k) {
        const float q = std::nearbyint(x[size_t(i) * c.k + k] * (1.0f / sx[i]));
        ASSERT_EQ(xq[size_t(i) * c.k + k], int8_t(std::clamp(q, -127.f, 127.f)))
            << "row " << i << " k " << k;
      }
    }
  }
  double worst_ratio = 0;
  for (int i = 0; i < c.m; ++i) {
    for (int j = 0; j < c.n; ++j) {
      int32_t ref = 0;
      double exact = 0, bound = 0;
      for (int k = 0; k < c.k; ++k) {
        ref += int32_t(xq[size_t(i) * c.k + k]) * wq[size_t(j) * c.k + k];
        const double xv = x[size_t(i) * c.k + k], wv = w.row(j)[k];
        exact += xv * wv;
        bound += std::abs(xv) * sw[j] / 2 + sx[i] / 2 * std::abs(wv) +
                 sx[i] * sw[j] / 4;
      }
      ASSERT_EQ(y[size_t(i) * c.n + j], float(ref) * (sx[i] * sw[j]))
          << "row " << i << " col " << j;
      if (c.mode != ActQuantMode::kPerTensorStatic) {  // static clips
        const double err = std::abs(y[size_t(i) * c.n + j] - exact);
        ASSERT_LE(err, bound * 1.0001 + 1e-6) << "row " << i << " col " << j;
        worst_ratio = std::max(worst_ratio, err / bound);
      }
    }
  }
  RecordProperty("worst_error_over_bound", std::to_string(worst_ratio));
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  // The default model's shapes: qkv, o, gate_up, down.
  const int shapes[][2] = {{576, 960}, {576, 576}, {576, 3072}, {1536, 576}};
  for (int m : {1, 3, 16, 64, 257}) {
    for (const auto& s : shapes) {
      for (ActQuantMode mode :
           {ActQuantMode::kPerTensorDynamic, ActQuantMode::kPerTokenDynamic,
            ActQuantMode::kPerTensorStatic}) {
        if (m == 257 && s[1] == 3072 &&
            mode != ActQuantMode::kPerTokenDynamic) {
          continue;  // keep the suite fast; the big shape runs once at 257
        }
        cases.push_back({m, s[0], s[1], mode});
      }
    }
  }
  // oneDNN's batches (its u8 offset form without VNNI, the row bucket's
  // zero padding, the epilogue), which the default dispatch leaves to our
  // kernel on AVX2 and VNNI CPUs.
  for (int m : {1, 3, 17, 64, 257}) {
    for (ActQuantMode mode :
         {ActQuantMode::kPerTokenDynamic, ActQuantMode::kPerTensorStatic}) {
      cases.push_back({m, 576, 960, mode, 0});
    }
  }
  // Past the largest bucket (kMaxMatmulRows): run in pieces of it.
  cases.push_back({600, 96, 40, ActQuantMode::kPerTokenDynamic, 0});
  cases.push_back({1040, 96, 40, ActQuantMode::kPerTensorStatic, 0});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(ModelShapes, Int8LinearTest,
                         ::testing::ValuesIn(Cases()));

// A NaN in a row makes that row's outputs NaN, as FP32's would be (the
// engine then refuses the logits), and leaves the other rows as they are;
// before, it was quantized to a finite code without a word. Per-token and
// static scales, on our kernel and on oneDNN's.
TEST(Int8Linear, NanInARowMakesThatRowNan) {
  const Matrix w = RandomMatrix(40, 96, 3);
  for (auto [mode, packed_max_rows] :
       {std::pair{ActQuantMode::kPerTokenDynamic, -1},
        std::pair{ActQuantMode::kPerTokenDynamic, 0},
        std::pair{ActQuantMode::kPerTensorStatic, -1},
        std::pair{ActQuantMode::kPerTensorStatic, 0}}) {
    SCOPED_TRACE(::testing::Message()
                 << ActQuantModeName(mode) << " " << packed_max_rows);
    Int8Linear::Options o;
    o.mode = mode;
    o.static_absmax = 3.0f;
    o.packed_max_rows = packed_max_rows;
    auto lin = Int8Linear::Create(w, o);
    ASSERT_TRUE(lin.ok()) << lin.status();
    for (int m : {1, 3, 20}) {
      std::vector<float> x = RandomInput(m, 96, 4), y(size_t(m) * 40);
      const std::vector<int> bounds = {0, m};
      (*lin)->Forward({x.data(), m, bounds}, y.data());
      const std::vector<float> clean = y;
      const int bad = m / 2;
      x[size_t(bad) * 96 + 7] = std::numeric_limits<float>::quiet_NaN();
      (*lin)->Forward({x.data(), m, bounds}, y.data());
      for (int r = 0; r < m; ++r) {
        for (int j = 0; j < 40; ++j) {
          if (r == bad) {
            ASSERT_TRUE(std::isnan(y[size_t(r) * 40 + j])) << r << "," << j;
          } else {
            ASSERT_EQ(y[size_t(r) * 40 + j], clean[size_t(r) * 40 + j]);
          }
        }
      }
    }
  }
}

// A weight that is infinite or NaN (a damaged file) would make its whole
// channel NaN: the linear is refused, naming the row.
TEST(Int8Linear, RefusesNonFiniteWeights) {
  for (float bad : {std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    Matrix w = RandomMatrix(8, 64, 2);
    w.data[size_t(5) * 64 + 9] = bad;
    auto lin = Int8Linear::Create(w, Int8Linear::Options());
    ASSERT_FALSE(lin.ok()) << bad;
    EXPECT_EQ(lin.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(lin.status().message()),
                ::testing::HasSubstr("weight row 5 holds an infinite or NaN"));
  }
}

// oneDNN's int8 kernel must be a real one, never its reference one; with
// AVX-512 VNNI its VNNI brgemm, with AMX a brgemm of the AVX-512 family
// (AMX tiles where oneDNN finds them worth it; not measured here which m
// take them).
TEST(Int8Linear, ChoosesVnniKernel) {
  for (int m : {1, 3, 16, 64, 272}) {
    auto impl = Int8MatmulImpl(m, 576, 960);
    ASSERT_TRUE(impl.ok()) << impl.status();
    EXPECT_THAT(*impl, ::testing::Not(::testing::StartsWith("ref")));
    if (Int8MatmulHasAmx()) {
      EXPECT_THAT(*impl, ::testing::StartsWith("brg:avx512_core"))
          << "m = " << m;
    } else if (Int8MatmulHasVnni()) {
      EXPECT_EQ(*impl, "brg:avx512_core_vnni") << "m = " << m;
    }
  }
  auto warm = WarmUpInt8Matmul(576, 960, 64);
  ASSERT_TRUE(warm.ok()) << warm.status();
}

// Weights use the full 8-bit range wherever every kernel that serves the
// linear is exact with it (VNNI, or our kernel for every batch), and
// 7 bits where oneDNN's non-VNNI u8 x s8 kernel serves some batches (its
// int16 pair sums would saturate).
TEST(Int8Linear, WeightRangeFollowsTheKernels) {
  const Matrix w = RandomMatrix(8, 576, 5);
  const bool own_everywhere =
      Int8Linear::DefaultPackedMaxRows() == Int8Linear::kEveryBatch;
  struct Row {
    int packed_max_rows;
    int qmax;
  };
  std::vector<Row> rows = {
      {-1, Int8MatmulHasVnni() || own_everywhere ? 127 : 63},
      {0, Int8MatmulHasVnni() ? 127 : 63}};
  if (own_everywhere) rows.push_back({Int8Linear::kEveryBatch, 127});
  for (const Row& r : rows) {
    Int8Linear::Options o;
    o.packed_max_rows = r.packed_max_rows;
    o.keep_plain_weights = true;
    auto lin = Int8Linear::Create(w, o);
    ASSERT_TRUE(lin.ok()) << lin.status();
    const auto& q = (*lin)->plain_weights();
    for (int n = 0; n < 8; ++n) {
      int row_max = 0;
      for (int k = 0; k < 576; ++k) {
        row_max = std::max(row_max, std::abs(int(q[size_t(n) * 576 + k])));
      }
      EXPECT_EQ(row_max, r.qmax)
          << "packed_max_rows " << r.packed_max_rows << " row " << n;
    }
  }
}

// Batch invariance: a spike in sequence 1 does not change sequence 0's
// per-tensor scale or its output.
TEST(Int8Linear, PerTensorScaleNeverCrossesSequences) {
  const Matrix w = RandomMatrix(64, 128, 3);
  std::vector<float> x = RandomInput(6, 128, 4);
  auto lin = *Int8Linear::Create(w, {});
  std::vector<float> alone(3 * 64), together(6 * 64);
  const int b1[] = {0, 3};
  lin->Forward({x.data(), 3, b1}, alone.data());
  x[4 * 128 + 7] = 500.0f;  // spike in the second sequence
  const int b2[] = {0, 3, 6};
  lin->Forward({x.data(), 6, b2}, together.data());
  for (int i = 0; i < 3 * 64; ++i) ASSERT_EQ(alone[i], together[i]) << i;
  EXPECT_GT(Int8Linear::last_row_scales()[4],
            10 * Int8Linear::last_row_scales()[0]);
}

TEST(Int8Linear, RowBuckets) {
  EXPECT_EQ(RowBucket(1), 1);
  EXPECT_EQ(RowBucket(16), 16);
  EXPECT_EQ(RowBucket(17), 32);
  EXPECT_EQ(RowBucket(257), 272);
}

TEST(Int8Linear, StaticModeNeedsACalibratedRange) {
  Int8Linear::Options o;
  o.mode = ActQuantMode::kPerTensorStatic;
  EXPECT_EQ(Int8Linear::Create(RandomMatrix(4, 32, 1), o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace spikeserve
