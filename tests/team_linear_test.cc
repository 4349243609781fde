// The team form of the linear kernels (linear.h): TeamPrepare once, then
// TeamRun on disjoint ranges of units in any order, gives Forward's
// outputs bit for bit, and TeamUnitWeights tiles the weights in order.
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/linear/int8_linear.h"
#include "runtime/linear/w4a8_linear.h"
#include "tests/fixtures/random_matrix.h"

namespace spikeserve {
namespace {

using ::spikeserve::testing::RandomMatrix;

enum class Kernel { kW4, kW4Min, kInt8 };

struct Case {
  std::string name;
  Kernel kernel;
  ActQuantMode mode;
  int m, k, n;  // n: a partial last unit (16 or 8 W4 columns, 4 INT8)
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::unique_ptr<Linear> Make(const Case& c, const Matrix& w) {
  if (c.kernel == Kernel::kInt8) {
    Int8Linear::Options o;
    o.mode = c.mode;
    o.static_absmax = 3;
    o.packed_max_rows = 4;
    auto lin = Int8Linear::Create(w, o);
    EXPECT_TRUE(lin.ok()) << lin.status();
    return lin.ok() ? *std::move(lin) : nullptr;
  }
  W4A8Linear::Options o;
  o.mode = c.mode;
  o.static_absmax = 3;
  o.group = 32;
  o.with_min = c.kernel == Kernel::kW4Min;
  auto lin = W4A8Linear::Create(MatrixRows(w), o);
  EXPECT_TRUE(lin.ok()) << lin.status();
  return lin.ok() ? *std::move(lin) : nullptr;
}

class TeamLinearTest : public ::testing::TestWithParam<Case> {};

TEST_P(TeamLinearTest, RangesInAnyOrderEqualForward) {
  const Case& c = GetParam();
  if (W4A8Linear::KernelDescription() == "none") GTEST_SKIP() << "no AVX2";
  const Matrix w = RandomMatrix(c.n, c.k, c.k + c.n);
  const std::unique_ptr<Linear> lin = Make(c, w);
  ASSERT_NE(lin, nullptr);
  const int units = lin->TeamUnits(c.m);
  ASSERT_GT(units, 1);
  std::vector<float> x(size_t(c.m) * c.k);
  std::mt19937 rng(c.m);
  std::normal_distribution<float> nd(0, 1);
  for (float& v : x) v = nd(rng);
  x[5] = 25;  // a spike
  const std::vector<int> bounds =
      c.m > 1 ? std::vector<int>{0, 1, c.m} : std::vector<int>{0, 1};
  const LinearInput in{x.data(), c.m, bounds};
  std::vector<float> want(size_t(c.m) * c.n), got(want.size(), -1.0f);
  lin->Forward(in, want.data());

  lin->TeamPrepare(in);
  // Ranges of 3 units from the back, then what is left from the front.
  int end = units;
  for (; end - 3 >= units / 2; end -= 3) lin->TeamRun(end - 3, end, got.data());
  for (int u = 0; u < end; ++u) lin->TeamRun(u, u + 1, got.data());
  int differ = 0;
  for (size_t i = 0; i < want.size(); ++i) differ += got[i] != want[i];
  EXPECT_EQ(differ, 0) << "of " << want.size();

  // The units' weights: consecutive, in order, within what the kernel holds.
  const auto all = lin->TeamUnitWeights(c.m, 0, units);
  EXPECT_LE(all.size(), lin->weight_bytes());
  EXPECT_EQ(lin->TeamUnitWeights(c.m, 0, units / 2).data() +
                lin->TeamUnitWeights(c.m, 0, units / 2).size(),
            lin->TeamUnitWeights(c.m, units / 2, units).data());
  EXPECT_EQ(lin->TeamUnitWeights(c.m, units / 2, units).data() +
                lin->TeamUnitWeights(c.m, units / 2, units).size(),
            all.data() + all.size());
}

INSTANTIATE_TEST_SUITE_P(
    Kernels, TeamLinearTest,
    ::testing::Values(Case{"w4_one_row", Kernel::kW4,
                           ActQuantMode::kPerTokenDynamic, 1, 96, 100},
                      Case{"w4_three_rows", Kernel::kW4,
                           ActQuantMode::kPerTensorDynamic, 3, 128, 72},
                      Case{"w4_min_static", Kernel::kW4Min,
                           ActQuantMode::kPerTensorStatic, 2, 64, 40},
                      // From 4 rows VNNI units pair blocks: 5 blocks of 16
                      // columns, the last alone.
                      Case{"w4_four_rows", Kernel::kW4,
                           ActQuantMode::kPerTokenDynamic, 4, 96, 72},
                      Case{"w4_min_seven_rows", Kernel::kW4Min,
                           ActQuantMode::kPerTokenDynamic, 7, 64, 100},
                      Case{"int8_one_row", Kernel::kInt8,
                           ActQuantMode::kPerTokenDynamic, 1, 96, 102},
                      Case{"int8_four_rows", Kernel::kInt8,
                           ActQuantMode::kPerTensorDynamic, 4, 200, 30},
                      Case{"int8_static", Kernel::kInt8,
                           ActQuantMode::kPerTensorStatic, 1, 64, 50}),
    [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

// A batch the packed INT8 kernel does not take has no team form.
TEST(TeamLinear, Int8BeyondThePackedRowsHasNone) {
  Int8Linear::Options o;
  o.packed_max_rows = 2;
  auto lin = Int8Linear::Create(RandomMatrix(8, 64, 1), o);
  ASSERT_TRUE(lin.ok()) << lin.status();
  if (Int8Linear::DefaultPackedMaxRows() == 0) GTEST_SKIP() << "no kernel";
  EXPECT_GT((*lin)->TeamUnits(2), 0);
  EXPECT_EQ((*lin)->TeamUnits(3), 0);
}

}  // namespace
}  // namespace spikeserve
