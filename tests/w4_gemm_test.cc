#include "runtime/linear/w4_gemm.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/gguf/dequantize.h"
#include "runtime/linear/w4_gemm_amx.h"

namespace spikeserve {
namespace {

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// Every finite half converts to float and back to itself; the float
// halfway between two neighbouring halves rounds to the one whose last bit
// is 0, and a hair above it to the upper one.
TEST(FloatToHalf, RoundTripsAndTiesToEven) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7C00) == 0x7C00) continue;  // inf, NaN
    const float f = HalfToFloat(uint16_t(h));
    ASSERT_EQ(FloatToHalf(f), h) << std::hex << h;
    if ((h & 0x7FFF) == 0x7BFF) continue;  // the largest finite: no next
    const float next = HalfToFloat(uint16_t(h + 1));
    const float mid = (f + next) / 2;  // exact: a float has bits to spare
    ASSERT_EQ(FloatToHalf(mid), (h & 1) ? h + 1 : h) << std::hex << h;
    ASSERT_EQ(FloatToHalf(std::nextafter(mid, next)), h + 1) << std::hex << h;
  }
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7C00);  // rounds past 65504: inf
  EXPECT_EQ(FloatToHalf(-1e9f), 0xFC00);
  EXPECT_EQ(FloatToHalf(1e-9f), 0x0000);  // below half a subnormal
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(NAN) & 0x7E00, 0x7E00);  // still a NaN
}

// The CPU's own conversion (F16C) agrees on random floats of every scale.
__attribute__((target("f16c"))) uint16_t CpuHalf(float f) {
  return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
TEST(FloatToHalf, AgreesWithF16c) {
  // The AVX2 kernel needs F16C (W4KernelSupported checks it).
  if (!W4KernelSupported(W4KernelIsa::kAvx2)) GTEST_SKIP() << "no F16C";
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 1000000; ++i) {
    uint32_t b = bits(rng);
    // Exponents from 2^-30 to 2^20, where halves live and just outside.
    b = (b & 0x807FFFFFu) | ((97 + (b >> 23) % 51) << 23);
    float f;
    std::memcpy(&f, &b, 4);
    ASSERT_EQ(FloatToHalf(f), CpuHalf(f)) << std::hex << b;
  }
}

// A group whose largest magnitude is -8 has d = 1: integers in [-8, 7]
// come back exactly. With a largest value of +4, d = -0.5: 4 maps to
// u = 0, -3.5 to u = 15, and 0.3 to the nearest multiple, 0.5.
TEST(QuantizeW4Row, HandChecked) {
  std::vector<float> w(64);
  for (int i = 0; i < 32; ++i) w[i] = float(i % 16 - 8);
  for (int i = 32; i < 64; ++i) w[i] = 0;
  w[32] = 4.0f;
  w[33] = -3.5f;
  w[34] = 0.3f;
  std::vector<uint8_t> u(64);
  std::vector<uint16_t> scale(2);
  QuantizeW4Row(w.data(), 64, 32, u.data(), scale.data());
  EXPECT_EQ(HalfToFloat(scale[0]), 1.0f);
  EXPECT_EQ(HalfToFloat(scale[1]), -0.5f);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(u[i], i % 16) << i;
  EXPECT_EQ(u[32], 0);
  EXPECT_EQ(u[33], 15);
  EXPECT_EQ(u[34], 7);  // 0.3 / -0.5 = -0.6 -> -1 -> u = 7
  EXPECT_EQ(u[35], 8);  // 0 -> 0
  W4Plain p{1, 64, 32, false, u, scale, {}};
  std::vector<float> back(64);
  DequantizeW4Row(p, 0, back.data());
  for (int i = 0; i < 32; ++i) EXPECT_EQ(back[i], w[i]) << i;
  EXPECT_EQ(back[32], 4.0f);
  EXPECT_EQ(back[33], -3.5f);
  EXPECT_EQ(back[34], 0.5f);
}

// Random rows: every value within half a step of its group's grid, or one
// step where the grid's short side (+7 of -8) clamps it.
TEST(QuantizeW4Row, ErrorWithinHalfAStep) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0, 0.02f);
  const int k = 256, group = 64;
  std::vector<float> w(k), back(k);
  W4Plain p{1,
            k,
            group,
            false,
            std::vector<uint8_t>(k),
            std::vector<uint16_t>(k / group),
            {}};
  for (int trial = 0; trial < 100; ++trial) {
    for (float& v : w) v = nd(rng);
    QuantizeW4Row(w.data(), k, group, p.u.data(), p.scale.data());
    DequantizeW4Row(p, 0, back.data());
    for (int i = 0; i < k; ++i) {
      const float d = std::fabs(HalfToFloat(p.scale[i / group]));
      const float q = w[i] / HalfToFloat(p.scale[i / group]);
      const float bound = (q > 7.5f ? 1.0f : 0.5f) * d * 1.001f;
      ASSERT_LE(std::fabs(back[i] - w[i]), bound) << i;
    }
  }
}

// Asymmetric groups: a group in [1, 4] (all positive) gets min 1 and d
// 0.2 (3/15, rounded to half); 1 -> u 0, 4 -> u 15, 2.5 -> u 7 or 8.
TEST(QuantizeW4RowMin, HandChecked) {
  std::vector<float> w(32, 2.5f);
  w[0] = 1.0f;
  w[1] = 4.0f;
  w[2] = 1.1f;  // 0.1 / 0.2 = 0.5 -> ties to even: 0
  std::vector<uint8_t> u(32);
  uint16_t scale, min;
  QuantizeW4RowMin(w.data(), 32, 32, u.data(), &scale, &min);
  EXPECT_EQ(HalfToFloat(min), 1.0f);
  EXPECT_EQ(scale, FloatToHalf(3.0f / 15.0f));
  EXPECT_EQ(u[0], 0);
  EXPECT_EQ(u[1], 15);
  EXPECT_LE(u[2], 1);
  EXPECT_TRUE(u[3] == 7 || u[3] == 8) << int(u[3]);
}

// Random rows, centred and shifted: every value within half a step (plus
// the half roundings of min and d) of the original, and on a shifted
// distribution the error is well below the symmetric form's.
TEST(QuantizeW4RowMin, ErrorWithinHalfAStepAndBelowSymmetric) {
  std::mt19937 rng(5);
  const int k = 256, group = 32;
  std::vector<float> w(k), back(k), sym(k);
  W4Plain p{1,
            k,
            group,
            true,
            std::vector<uint8_t>(k),
            std::vector<uint16_t>(k / group),
            std::vector<uint16_t>(k / group)};
  W4Plain ps{1,
             k,
             group,
             false,
             std::vector<uint8_t>(k),
             std::vector<uint16_t>(k / group),
             {}};
  for (float shift : {0.0f, 0.03f, -0.05f}) {
    std::normal_distribution<float> nd(shift, 0.02f);
    double err_min = 0, err_sym = 0;
    for (int trial = 0; trial < 50; ++trial) {
      for (float& v : w) v = nd(rng);
      QuantizeW4RowMin(w.data(), k, group, p.u.data(), p.scale.data(),
                       p.min.data());
      DequantizeW4Row(p, 0, back.data());
      QuantizeW4Row(w.data(), k, group, ps.u.data(), ps.scale.data());
      DequantizeW4Row(ps, 0, sym.data());
      for (int i = 0; i < k; ++i) {
        const float d = HalfToFloat(p.scale[i / group]);
        const float mn = HalfToFloat(p.min[i / group]);
        const float bound = 0.5f * d + 2e-3f * (std::fabs(mn) + 16 * d) + 1e-7f;
        ASSERT_LE(std::fabs(back[i] - w[i]), bound) << shift << " " << i;
        err_min += (back[i] - w[i]) * double(back[i] - w[i]);
        err_sym += (sym[i] - w[i]) * double(sym[i] - w[i]);
      }
    }
    std::printf("shift %.2f: squared error asymmetric / symmetric %.3f\n",
                shift, err_min / err_sym);
    // 16 steps over the group's own span: on a shifted group far below the
    // symmetric grid, which spends levels on the side the values do not
    // reach; on a centred one the spans are alike (15 steps of the range
    // against 8 of the peak).
    EXPECT_LT(err_min, (shift == 0 ? 1.25 : 0.7) * err_sym) << shift;
  }
}

struct Case {
  int m, k, n, group;
  bool has_min;
  // u = 15 everywhere and x at its ends: the largest sums, in magnitude
  // (the AVX2 kernel sums four chunks of products in int16 before widening).
  enum Extremes { kNone, kMixedSigns, kAllMax, kAllMin } extremes;
};

class W4GemmTest
    : public ::testing::TestWithParam<std::tuple<W4KernelIsa, Case>> {};

// Bit for bit the scalar reference's floats, for each kernel the CPU runs:
// the row counts (1, 3, 16, 64, 257: tails of the 4-row tiles),
// every group size, with and without mins, N with a tail past the 8- and
// 16-column blocks, negative scales and the largest sums.
TEST_P(W4GemmTest, EqualsScalarReference) {
  const auto [isa, c] = GetParam();
  if (!W4KernelSupported(isa)) {
    GTEST_SKIP() << "this CPU has no " << W4KernelIsaName(isa);
  }
  std::mt19937 rng(c.m * 131 + c.k * 7 + c.n + c.group + c.has_min);
  std::uniform_int_distribution<int> dx(-127, 127), du(0, 15), sign(0, 1);
  std::normal_distribution<float> ds(0, 0.01f);
  std::vector<int8_t> x(size_t(c.m) * c.k);
  for (int8_t& v : x) {
    switch (c.extremes) {
      case Case::kNone:
        v = int8_t(dx(rng));
        break;
      case Case::kMixedSigns:
        v = int8_t(sign(rng) ? 127 : -127);
        break;
      case Case::kAllMax:
        v = 127;
        break;
      case Case::kAllMin:
        v = -128;
        break;
    }
  }
  W4Plain w;
  w.n = c.n;
  w.k = c.k;
  w.group = c.group;
  w.has_min = c.has_min;
  w.u.resize(size_t(c.n) * c.k);
  for (uint8_t& v : w.u) v = uint8_t(c.extremes != Case::kNone ? 15 : du(rng));
  w.scale.resize(size_t(c.n) * w.groups());
  for (uint16_t& v : w.scale) v = FloatToHalf(ds(rng));
  if (c.has_min) {
    w.min.resize(w.scale.size());
    for (uint16_t& v : w.min) v = FloatToHalf(8 * ds(rng));
  }
  std::vector<float> row_scale(c.m);
  for (float& v : row_scale) v = std::fabs(ds(rng)) + 1e-3f;

  std::vector<float> want(size_t(c.m) * c.n), got(want.size(), NAN);
  W4GemmReference(x.data(), c.m, w, row_scale.data(), want.data());
  const W4PackedWeights packed = PackW4Weights(w, isa);
  std::vector<int32_t> sums(size_t(c.m) * w.groups());
  W4GroupSums(x.data(), c.m, c.k, c.group, sums.data());
  W4Gemm(x.data(), sums.data(), c.m, packed, row_scale.data(), got.data());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(Bits(got[i]), Bits(want[i]))
        << "row " << i / c.n << " column " << i % c.n << ": " << got[i]
        << " vs " << want[i];
  }
  // AMX tiles, on the VNNI packing, for every row count (W4A8Linear uses
  // them from kW4AmxMinRows rows; the tails of 16- and 32-row tiles and
  // the odd last block of 16 columns are among the cases).
  if (isa == W4KernelIsa::kAvx512Vnni && W4AmxSupported()) {
    std::vector<float> amx(want.size(), NAN);
    W4GemmAmx(x.data(), sums.data(), c.m, packed, row_scale.data(), amx.data());
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(Bits(amx[i]), Bits(want[i]))
          << "AMX: row " << i / c.n << " column " << i % c.n << ": " << amx[i]
          << " vs " << want[i];
    }
    // Through W4Gemm's dispatch, as W4A8Linear packs it.
    W4PackedWeights with_amx = packed;
    with_amx.amx_min_rows = 1;
    std::fill(amx.begin(), amx.end(), NAN);
    W4Gemm(x.data(), sums.data(), c.m, with_amx, row_scale.data(), amx.data());
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(Bits(amx[i]), Bits(want[i])) << "AMX via W4Gemm: " << i;
    }
  }
  // The pieces a decode team runs (W4GemmUnits): the back half's units
  // first, then the front's, one at a time.
  if (c.m > 16) return;
  std::vector<float> pieces(want.size(), NAN);
  const int units = W4Units(packed, c.m);
  ASSERT_EQ(W4UnitWeights(packed, c.m, 0, units).size(), packed.bytes());
  W4GemmUnits(x.data(), sums.data(), c.m, packed, row_scale.data(),
              pieces.data(), units / 2, units);
  for (int u = 0; u < units / 2; ++u) {
    W4GemmUnits(x.data(), sums.data(), c.m, packed, row_scale.data(),
                pieces.data(), u, u + 1);
  }
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(Bits(pieces[i]), Bits(want[i]))
        << "units: row " << i / c.n << " column " << i % c.n;
  }
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  // 17 and 49: the AMX kernel's partial pass of 32 rows, two tiles of
  // which the second is partial, from the zero-padded copy.
  for (int m : {1, 3, 16, 17, 49, 64, 257}) {
    for (int group : {32, 64, 128}) {
      for (bool has_min : {false, true}) {
        cases.push_back({m, 384, 40, group, has_min, Case::kNone});
      }
    }
  }
  cases.push_back({5, 1536, 96, 128, false, Case::kMixedSigns});
  cases.push_back({2, 1536, 96, 32, true, Case::kMixedSigns});
  for (int group : {32, 128}) {
    cases.push_back({5, 512, 24, group, false, Case::kAllMax});
    cases.push_back({3, 512, 24, group, true, Case::kAllMin});
  }
  cases.push_back({1, 4096, 17, 128, false, Case::kNone});
  // Many row panels (12 rows each at K = 2048), the last one partial, over
  // several chunks of units per thread (65 blocks of 16: an odd last one).
  cases.push_back({100, 2048, 1040, 64, false, Case::kNone});
  // Every partial row tile (1..7 rows after full tiles of 8 or 4).
  for (int m : {10, 12, 14, 15}) {
    cases.push_back({m, 256, 24, 32, m % 2 == 0, Case::kNone});
  }
  return cases;
}

std::string Name(
    const ::testing::TestParamInfo<std::tuple<W4KernelIsa, Case>>& info) {
  const auto& [isa, c] = info.param;
  return std::string(W4KernelIsaName(isa)) + "_m" + std::to_string(c.m) + "_k" +
         std::to_string(c.k) + "_n" + std::to_string(c.n) + "_g" +
         std::to_string(c.group) + (c.has_min ? "_min" : "_sym") +
         (c.extremes == Case::kMixedSigns ? "_extremes"
          : c.extremes == Case::kAllMax   ? "_allmax"
          : c.extremes == Case::kAllMin   ? "_allmin"
                                          : "");
}

INSTANTIATE_TEST_SUITE_P(
    All, W4GemmTest,
    ::testing::Combine(::testing::Values(W4KernelIsa::kAvx2,
                                         W4KernelIsa::kAvx512Vnni),
                       ::testing::ValuesIn(Cases())),
    Name);

}  // namespace
}  // namespace spikeserve
