#include "runtime/gguf/four_bit.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/gguf/dequantize.h"
#include "runtime/gguf/ggml_type.h"
#include "runtime/linear/w4_gemm.h"

namespace spikeserve {
namespace {

// Random blocks of a type: every byte random but the half scales, which
// are finite (d, m or dmin of either sign, as files hold).
std::vector<uint8_t> RandomBlocks(GgmlType type, int cols, uint32_t seed) {
  const int block = type == GgmlType::kQ4_K ? 256 : 32;
  const int bytes = type == GgmlType::kQ4_0   ? 18
                    : type == GgmlType::kQ4_1 ? 20
                                              : 144;
  const int halves = type == GgmlType::kQ4_0 ? 1 : 2;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-0.02f, 0.02f);
  std::vector<uint8_t> out(size_t(cols / block) * bytes);
  for (size_t b = 0; b < out.size() / bytes; ++b) {
    uint8_t* p = out.data() + b * bytes;
    for (int i = 0; i < bytes; ++i) p[i] = uint8_t(byte(rng));
    for (int h = 0; h < halves; ++h) {
      const uint16_t v = FloatToHalf(scale(rng));
      std::memcpy(p + 2 * h, &v, 2);
    }
  }
  return out;
}

// The stored nibbles and scales, dequantized by the W4 form's own rule,
// give ggml's values: bit for bit for Q4_0 and Q4_1, within the rounding
// of d·sc and dmin·m to half for Q4_K.
TEST(FourBit, RowsEqualGgmlsDequantization) {
  const int cols = 512;
  for (GgmlType type : {GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ4_K}) {
    SCOPED_TRACE(int(type));
    const std::optional<FourBitLayout> layout = FourBitLayoutOf(uint32_t(type));
    ASSERT_TRUE(layout.has_value());
    EXPECT_EQ(layout->group, 32);
    EXPECT_EQ(layout->has_min, type != GgmlType::kQ4_0);
    const std::vector<uint8_t> blocks = RandomBlocks(type, cols, int(type));
    std::vector<float> want(cols), got(cols);
    DequantizeRow(uint32_t(type), blocks.data(), want.data(), cols);
    W4Plain p{1,
              cols,
              32,
              layout->has_min,
              std::vector<uint8_t>(cols),
              std::vector<uint16_t>(cols / 32),
              std::vector<uint16_t>(layout->has_min ? cols / 32 : 0)};
    FourBitRowOf(uint32_t(type), blocks.data(), cols, p.u.data(),
                 p.scale.data(), p.has_min ? p.min.data() : nullptr);
    DequantizeW4Row(p, 0, got.data());
    for (int i = 0; i < cols; ++i) {
      ASSERT_LE(p.u[i], 15);
      if (type == GgmlType::kQ4_K) {
        // |w| <= 15·|d·sc| + |dmin·m|, each rounded by at most 2^-11.
        const float d = HalfToFloat(p.scale[i / 32]);
        const float m = HalfToFloat(p.min[i / 32]);
        const float bound = (15 * std::fabs(d) + std::fabs(m)) * 0x1p-11f;
        ASSERT_NEAR(got[i], want[i], bound * 1.01f + 1e-9f) << i;
      } else {
        ASSERT_EQ(got[i], want[i]) << i;
      }
    }
  }
}

TEST(FourBit, OtherTypesHaveNoLayout) {
  for (GgmlType type : {GgmlType::kF32, GgmlType::kQ8_0, GgmlType::kQ5_K,
                        GgmlType::kQ6_K, GgmlType::kQ5_0}) {
    EXPECT_FALSE(FourBitLayoutOf(uint32_t(type)).has_value()) << int(type);
  }
}

}  // namespace
}  // namespace spikeserve
