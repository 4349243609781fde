#include "runtime/gguf/dequantize.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "gtest/gtest.h"
#include "runtime/gguf/ggml_type.h"

namespace spikeserve {
namespace {

struct HalfCase {
  uint16_t bits;
  float value;
};

TEST(Dequantize, HalfToFloat) {
  // Hand-checked IEEE binary16 encodings.
  const HalfCase cases[] = {
      {0x0000, 0.0f},
      {0x3C00, 1.0f},
      {0xC000, -2.0f},
      {0x3555, 0.333251953125f},
      {0x7BFF, 65504.0f},
      {0x0001, 5.960464477539063e-8f},  // smallest subnormal, 2^-24
      {0x0200, 3.0517578125e-05f},      // subnormal 2^-15
      {0x0400, 6.103515625e-05f},       // smallest normal, 2^-14
  };
  for (const HalfCase& c : cases) {
    EXPECT_EQ(HalfToFloat(c.bits), c.value) << std::hex << c.bits;
  }
  EXPECT_TRUE(std::isinf(HalfToFloat(0x7C00)));
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7E00)));
  EXPECT_TRUE(std::signbit(HalfToFloat(0x8000)));
}

TEST(Dequantize, Bf16) {
  EXPECT_EQ(Bf16ToFloat(0x3F80), 1.0f);
  EXPECT_EQ(Bf16ToFloat(0xC040), -3.0f);
}

// Blocks built by hand: d = 0.5 (0x3800), m = -1 (0xBC00).
TEST(Dequantize, Q4_0) {
  uint8_t block[18] = {0x00, 0x38};
  for (int j = 0; j < 16; ++j) block[2 + j] = uint8_t(j | ((15 - j) << 4));
  float y[32];
  DequantizeRow(uint32_t(GgmlType::kQ4_0), block, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.5f);
    EXPECT_EQ(y[j + 16], (15 - j - 8) * 0.5f);
  }
}

TEST(Dequantize, Q4_1) {
  uint8_t block[20] = {0x00, 0x38, 0x00, 0xBC};
  for (int j = 0; j < 16; ++j) block[4 + j] = uint8_t(j | ((15 - j) << 4));
  float y[32];
  DequantizeRow(uint32_t(GgmlType::kQ4_1), block, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], j * 0.5f - 1.0f);
    EXPECT_EQ(y[j + 16], (15 - j) * 0.5f - 1.0f);
  }
}

TEST(Dequantize, Q8_0TwoBlocks) {
  uint8_t blocks[68] = {0x00, 0x38};  // block 0: d = 0.5
  blocks[34] = 0x00;
  blocks[35] = 0x40;  // block 1: d = 2
  for (int j = 0; j < 32; ++j) {
    blocks[2 + j] = uint8_t(int8_t(j - 16));
    blocks[36 + j] = uint8_t(int8_t(-j));
  }
  float y[64];
  DequantizeRow(uint32_t(GgmlType::kQ8_0), blocks, y, 64);
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(y[j], (j - 16) * 0.5f);
    EXPECT_EQ(y[32 + j], -j * 2.0f);
  }
}

TEST(Dequantize, UnsupportedTypeNamesTensorAndType) {
  GgufTensor t;
  t.name = "blk.0.ffn_down.weight";
  t.type = uint32_t(GgmlType::kQ5_K);
  auto r = DequantizeTensor(t);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(r.status().message().find("'blk.0.ffn_down.weight' has unsupported "
                                      "type Q5_K"),
            std::string::npos);
}

}  // namespace
}  // namespace spikeserve
