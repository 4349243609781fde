#include "runtime/gguf/dequantize.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"
#include "runtime/gguf/ggml_type.h"
#include "tests/golden_util.h"

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
  t.type = uint32_t(GgmlType::kIQ2_XXS);
  auto r = DequantizeTensor(t);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(r.status().message().find("'blk.0.ffn_down.weight' has unsupported "
                                      "type IQ2_XXS"),
            std::string::npos);
}

// Goldens from the `gguf` PyPI package (tests/golden/make_dequant_goldens.py):
// random blocks with extreme fp16 scales, expected outputs as float32 bits.
// One case per type; every output must have the golden's exact bit pattern.
struct GoldenCase {
  std::string name;
  uint32_t type_id;
  uint32_t block_elems;
  uint32_t block_bytes;
  uint64_t num_blocks;
  std::string blocks;    // raw block bytes
  std::string expected;  // little-endian float32, num_blocks * block_elems
};

std::vector<GoldenCase> LoadGoldens() {
  const nlohmann::json j =
      testing::ReadJson(testing::GoldenPath("dequant_goldens.json"));
  std::vector<GoldenCase> cases;
  for (const auto& t : j.at("types")) {
    GoldenCase c;
    c.name = t.at("name").get<std::string>();
    c.type_id = t.at("type_id").get<uint32_t>();
    c.block_elems = t.at("block_elems").get<uint32_t>();
    c.block_bytes = t.at("block_bytes").get<uint32_t>();
    c.num_blocks = t.at("num_blocks").get<uint64_t>();
    if (!absl::Base64Unescape(t.at("blocks_b64").get<std::string>(),
                              &c.blocks) ||
        !absl::Base64Unescape(t.at("expected_b64").get<std::string>(),
                              &c.expected)) {
      ADD_FAILURE() << c.name << ": bad base64 in golden file";
      continue;
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

// Every type the runtime claims to dequantize has a golden.
TEST(DequantizeGolden, CoversEveryDequantizableType) {
  const std::string path = testing::GoldenPath("dequant_goldens.json");
  ASSERT_TRUE(testing::FileExists(path)) << path;
  const std::vector<GoldenCase> cases = LoadGoldens();
  for (uint32_t id = 0; id < 64; ++id) {
    if (!IsDequantizable(id) || id == uint32_t(GgmlType::kF32)) continue;
    bool found = false;
    for (const GoldenCase& c : cases) found |= c.type_id == id;
    EXPECT_TRUE(found) << "no golden for " << GgmlTypeName(id);
  }
}

const GoldenCase* FindGolden(const std::vector<GoldenCase>& cases,
                             GgmlType type) {
  for (const GoldenCase& c : cases) {
    if (c.type_id == uint32_t(type)) return &c;
  }
  return nullptr;
}

// One instance per type: names the type in the test name and on failure.
class DequantizeGoldenTest : public ::testing::TestWithParam<GgmlType> {};

TEST_P(DequantizeGoldenTest, BitIdenticalToGgufPackage) {
  const std::string path = testing::GoldenPath("dequant_goldens.json");
  ASSERT_TRUE(testing::FileExists(path)) << path;
  const std::vector<GoldenCase> cases = LoadGoldens();
  const GoldenCase* found = FindGolden(cases, GetParam());
  ASSERT_NE(found, nullptr)
      << "no golden for " << GgmlTypeName(uint32_t(GetParam()));
  const GoldenCase& c = *found;
  ASSERT_TRUE(IsDequantizable(c.type_id)) << c.name;
  const GgmlTypeTraits* traits = GetGgmlTypeTraits(c.type_id);
  ASSERT_NE(traits, nullptr);
  EXPECT_EQ(GgmlTypeName(c.type_id), c.name);
  EXPECT_EQ(traits->block_elems, c.block_elems);
  EXPECT_EQ(traits->block_bytes, c.block_bytes);
  const uint64_t n = c.num_blocks * c.block_elems;
  ASSERT_EQ(c.blocks.size(), c.num_blocks * c.block_bytes);
  ASSERT_EQ(c.expected.size(), n * sizeof(float));
  std::vector<float> y(n);
  DequantizeRow(c.type_id, reinterpret_cast<const uint8_t*>(c.blocks.data()),
                y.data(), n);
  int mismatches = 0;
  for (uint64_t e = 0; e < n; ++e) {
    uint32_t got, want;
    std::memcpy(&got, &y[e], 4);
    std::memcpy(&want, c.expected.data() + 4 * e, 4);
    if (got != want && ++mismatches <= 5) {
      float w;
      std::memcpy(&w, &want, 4);
      ADD_FAILURE() << c.name << " element " << e << " (block "
                    << e / c.block_elems << ", index " << e % c.block_elems
                    << "): got 0x" << std::hex << got << " (" << y[e]
                    << "), want 0x" << want << " (" << w << ")";
    }
  }
  EXPECT_EQ(mismatches, 0) << c.name << ": " << mismatches << " of " << n
                           << " elements differ";
}

INSTANTIATE_TEST_SUITE_P(AllTypes, DequantizeGoldenTest,
                         ::testing::Values(GgmlType::kF16, GgmlType::kBF16,
                                           GgmlType::kQ4_0, GgmlType::kQ4_1,
                                           GgmlType::kQ5_0, GgmlType::kQ5_1,
                                           GgmlType::kQ8_0, GgmlType::kIQ4_NL,
                                           GgmlType::kQ2_K, GgmlType::kQ3_K,
                                           GgmlType::kQ4_K, GgmlType::kQ5_K,
                                           GgmlType::kQ6_K, GgmlType::kIQ4_XS),
                         [](const ::testing::TestParamInfo<GgmlType>& info) {
                           return GgmlTypeName(uint32_t(info.param));
                         });

}  // namespace
}  // namespace spikeserve
