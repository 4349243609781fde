#include "runtime/gguf/gguf_reader.h"

#include <cstring>
#include <functional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/gguf/dequantize.h"
#include "runtime/gguf/ggml_type.h"
#include "runtime/model/model.h"
#include "runtime/model/model_config.h"
#include "runtime/model/weights.h"
#include "tests/fixtures/gguf_builder.h"

namespace spikeserve {
namespace {

using ::spikeserve::testing::GgufBuilder;
using ::spikeserve::testing::TinyLlama;
using ::spikeserve::testing::TinyLlamaSpec;
using ::testing::HasSubstr;

absl::StatusOr<std::unique_ptr<GgufFile>> Parse(const std::string& bytes) {
  return GgufFile::FromBuffer(reinterpret_cast<const uint8_t*>(bytes.data()),
                              bytes.size());
}

TEST(GgufReader, ReadsEveryMetadataType) {
  for (uint32_t version : {2u, 3u}) {
    GgufBuilder b(version);
    b.SetU32("u32", 4000000000u);
    b.SetI32("i32", -7);
    b.SetU64("u64", uint64_t{1} << 40);
    b.SetF32("f32", 0.25f);
    b.SetBool("flag", true);
    b.SetString("s", "héllo");
    b.SetStringArray("sa", {"a", "", "ccc"});
    b.SetI32Array("ia", {1, -2, 3});
    b.SetF32Array("fa", {0.5f, -1.5f});
    b.SetRaw("u8", GgufBuilder::kU8, std::string(1, '\xff'));
    b.SetRaw("i16", GgufBuilder::kI16, std::string("\xfe\xff", 2));
    b.SetRaw("f64", GgufBuilder::kF64, [] {
      std::string s(8, '\0');
      const double d = 2.5;
      std::memcpy(s.data(), &d, 8);
      return s;
    }());
    b.AddF32Tensor("t", {4, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
    const std::string bytes = b.Build();
    auto f = Parse(bytes);
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ((*f)->version(), version);
    EXPECT_EQ(*(*f)->GetUint32("u32"), 4000000000u);
    EXPECT_EQ(*(*f)->GetUint("u64"), uint64_t{1} << 40);
    EXPECT_EQ(*(*f)->GetFloat("f32"), 0.25);
    EXPECT_EQ(*(*f)->GetFloat("f64"), 2.5);
    EXPECT_EQ(*(*f)->GetFloat("i32"), -7);
    EXPECT_EQ(*(*f)->GetUint("u8"), 255u);
    EXPECT_EQ((*f)->Find("i16")->i64, -2);
    EXPECT_TRUE(*(*f)->GetBool("flag"));
    EXPECT_EQ(*(*f)->GetString("s"), "héllo");
    EXPECT_THAT(*(*f)->GetStringArray("sa"),
                ::testing::ElementsAre("a", "", "ccc"));
    EXPECT_THAT(*(*f)->GetInt32Array("ia"), ::testing::ElementsAre(1, -2, 3));
    EXPECT_THAT(*(*f)->GetFloat32Array("fa"),
                ::testing::ElementsAre(0.5f, -1.5f));
    const GgufTensor* t = (*f)->FindTensor("t");
    ASSERT_NE(t, nullptr);
    EXPECT_THAT(t->dims, ::testing::ElementsAre(4u, 2u));
    EXPECT_EQ(t->num_bytes, 32u);
    float v[8];
    std::memcpy(v, t->data, 32);
    EXPECT_EQ(v[7], 8.0f);
  }
}

TEST(GgufReader, TypedGettersNameTheKey) {
  GgufBuilder b;
  b.SetString("s", "x");
  b.SetI32("neg", -1);
  auto f = Parse(b.Build());
  ASSERT_TRUE(f.ok());
  EXPECT_THAT((*f)->GetUint("s").status().message(),
              HasSubstr("'s' has type STRING, expected an unsigned integer"));
  EXPECT_THAT((*f)->GetUint("neg").status().message(), HasSubstr("negative"));
  EXPECT_EQ((*f)->GetUint("missing").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT((*f)->GetString("missing").status().message(),
              HasSubstr("'missing' is missing"));
}

// A tensor of every dequantizable quantized type round-trips: the reader
// computes its byte size from the type's block geometry and the
// dequantizer accepts it. Dims {512, 3}: 512 is a multiple of 32 and 256.
TEST(GgufReader, TensorOfEveryQuantizedTypeRoundTrips) {
  const GgmlType types[] = {
      GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ5_0,   GgmlType::kQ5_1,
      GgmlType::kQ8_0, GgmlType::kQ2_K, GgmlType::kQ3_K,   GgmlType::kQ4_K,
      GgmlType::kQ5_K, GgmlType::kQ6_K, GgmlType::kIQ4_NL, GgmlType::kIQ4_XS};
  for (GgmlType type : types) {
    const uint32_t id = static_cast<uint32_t>(type);
    SCOPED_TRACE(GgmlTypeName(id));
    const GgmlTypeTraits* traits = GetGgmlTypeTraits(id);
    ASSERT_NE(traits, nullptr);
    const uint64_t bytes = 512 / traits->block_elems * traits->block_bytes * 3;
    std::string data(bytes, '\0');
    for (uint64_t i = 0; i < bytes; ++i) data[i] = static_cast<char>(i * 37);
    GgufBuilder b;
    b.AddTensor("w", {512, 3}, id, data);
    b.AddF32Tensor("after", {4}, {1.f, 2.f, 3.f, 4.f});
    const std::string file = b.Build();
    auto f = Parse(file);
    ASSERT_TRUE(f.ok()) << f.status();
    const GgufTensor* t = (*f)->FindTensor("w");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->type, id);
    EXPECT_EQ(t->dims, (std::vector<uint64_t>{512, 3}));
    EXPECT_EQ(t->num_elements, 512u * 3);
    EXPECT_EQ(t->num_bytes, bytes);
    EXPECT_EQ(std::memcmp(t->data, data.data(), bytes), 0);
    const GgufTensor* after = (*f)->FindTensor("after");
    ASSERT_NE(after, nullptr);
    EXPECT_EQ(after->num_bytes, 16u);
    ASSERT_TRUE(IsDequantizable(id));
    auto values = DequantizeTensor(*t);
    ASSERT_TRUE(values.ok()) << values.status();
    EXPECT_EQ(values->size(), 512u * 3);
  }
}

// Every prefix of a valid file must fail cleanly (never crash).
TEST(GgufReader, EveryTruncationFailsCleanly) {
  const std::string bytes = TinyLlama({.layers = 1,
                                       .hidden = 32,
                                       .heads = 2,
                                       .kv_heads = 1,
                                       .ffn = 32,
                                       .vocab = 260})
                                .Build();
  ASSERT_TRUE(Parse(bytes).ok());
  // All cut points in the header/metadata region, then a stride over data.
  for (size_t n = 0; n < bytes.size(); n += (n < 20000 ? 1 : 997)) {
    auto f = Parse(bytes.substr(0, n));
    ASSERT_FALSE(f.ok()) << "prefix of " << n << " bytes parsed";
  }
}

struct MalformedCase {
  const char* name;
  std::function<void(GgufBuilder&)> mutate;
  // Post-processing on the built bytes (for header-level damage).
  std::function<void(std::string&)> damage;
  const char* expected;        // substring of the error
  bool fails_at_parse = true;  // else at config/weights load
};
void PrintTo(const MalformedCase& c, std::ostream* os) { *os << c.name; }

class GgufMalformedTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(GgufMalformedTest, FailsWithSpecificMessage) {
  const MalformedCase& c = GetParam();
  GgufBuilder b = TinyLlama({.layers = 1,
                             .hidden = 32,
                             .heads = 2,
                             .kv_heads = 1,
                             .ffn = 32,
                             .vocab = 260});
  if (c.mutate) c.mutate(b);
  std::string bytes = b.Build();
  if (c.damage) c.damage(bytes);
  auto f = Parse(bytes);
  absl::Status status = f.status();
  if (f.ok()) {
    ASSERT_FALSE(c.fails_at_parse) << "parsed, expected: " << c.expected;
    auto model = Model::Load(*std::move(f));
    status = model.status();
  }
  ASSERT_FALSE(status.ok()) << c.name;
  EXPECT_THAT(std::string(status.message()), HasSubstr(c.expected)) << c.name;
}

void PutU32(std::string& s, size_t at, uint32_t v) {
  std::memcpy(&s[at], &v, 4);
}
void PutU64(std::string& s, size_t at, uint64_t v) {
  std::memcpy(&s[at], &v, 8);
}
std::string F64(double v) {
  std::string s(8, '\0');
  std::memcpy(s.data(), &v, 8);
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, GgufMalformedTest,
    ::testing::Values(
        MalformedCase{"wrong_magic", nullptr,
                      [](std::string& s) { s[0] = 'X'; }, "bad magic"},
        MalformedCase{"version_1", nullptr,
                      [](std::string& s) { PutU32(s, 4, 1); },
                      "unsupported version 1"},
        MalformedCase{"version_4", nullptr,
                      [](std::string& s) { PutU32(s, 4, 4); },
                      "unsupported version 4"},
        MalformedCase{"big_endian", nullptr,
                      [](std::string& s) { PutU32(s, 4, 0x03000000); },
                      "big-endian"},
        MalformedCase{"huge_tensor_count", nullptr,
                      [](std::string& s) { PutU64(s, 8, uint64_t{1} << 60); },
                      "cannot fit"},
        MalformedCase{"huge_kv_count", nullptr,
                      [](std::string& s) { PutU64(s, 16, uint64_t{1} << 60); },
                      "metadata count"},
        MalformedCase{"truncated_file", nullptr,
                      [](std::string& s) { s.resize(s.size() - 100); },
                      "beyond the end of the file"},
        MalformedCase{"key_length_past_end", nullptr,
                      [](std::string& s) { PutU64(s, 24, uint64_t{1} << 50); },
                      "truncated file: key of metadata entry 0"},
        MalformedCase{"tensor_data_beyond_eof",
                      [](GgufBuilder& b) {
                        b.SetTensorOffset("output_norm.weight", 1 << 30);
                      },
                      nullptr, "'output_norm.weight' data"},
        MalformedCase{
            "unaligned_offset",
            [](GgufBuilder& b) { b.SetTensorOffset("output_norm.weight", 3); },
            nullptr, "not a multiple of the alignment"},
        MalformedCase{"dimension_overflow",
                      [](GgufBuilder& b) {
                        b.SetTensorDims("token_embd.weight",
                                        {1u << 30, 1u << 30, 1u << 30});
                      },
                      nullptr, "overflow the element count"},
        // 2^62 F32 elements: 2^64 bytes, which wrapped to 0.
        MalformedCase{
            "byte_count_overflow",
            [](GgufBuilder& b) {
              b.SetTensorDims("output_norm.weight", {1u << 31, 1u << 31});
            },
            nullptr, "overflow the byte count"},
        MalformedCase{
            "zero_dimension",
            [](GgufBuilder& b) { b.SetTensorDims("output_norm.weight", {0}); },
            nullptr, "dimension 0 is 0"},
        MalformedCase{"five_dims",
                      [](GgufBuilder& b) {
                        b.SetTensorDims("output_norm.weight", {1, 1, 1, 1, 32});
                      },
                      nullptr, "has 5 dimensions"},
        MalformedCase{
            "unknown_tensor_type",
            [](GgufBuilder& b) { b.SetTensorType("output_norm.weight", 99); },
            nullptr, "unknown ggml type id 99"},
        MalformedCase{"block_size_mismatch",
                      [](GgufBuilder& b) {
                        b.SetTensorType("output_norm.weight", 14);  // Q6_K
                      },
                      nullptr, "not a multiple of the block size 256"},
        MalformedCase{"unknown_value_type",
                      [](GgufBuilder& b) { b.SetRaw("x", 13, ""); }, nullptr,
                      "unknown value type 13"},
        MalformedCase{
            "bad_bool",
            [](GgufBuilder& b) { b.SetRaw("x", GgufBuilder::kBool, "\x02"); },
            nullptr, "bool value is 2"},
        MalformedCase{"nested_array",
                      [](GgufBuilder& b) {
                        b.SetRaw("x", GgufBuilder::kArray,
                                 std::string("\x09\0\0\0", 4) +
                                     std::string(8, '\0'));
                      },
                      nullptr, "nested arrays"},
        MalformedCase{"duplicate_key",
                      [](GgufBuilder& b) {
                        // SetRaw replaces; append a duplicate by renaming.
                        b.SetU32("dup", 1);
                        b.SetU32("llama.block_coun_", 1);
                      },
                      [](std::string& s) {
                        const size_t at = s.find("llama.block_coun_");
                        s[at + 16] = 't';
                      },
                      "duplicate metadata key 'llama.block_count'"},
        MalformedCase{"missing_required_key",
                      [](GgufBuilder& b) { b.Remove("llama.block_count"); },
                      nullptr, "'llama.block_count' is missing", false},
        MalformedCase{
            "wrong_metadata_type",
            [](GgufBuilder& b) { b.SetString("llama.embedding_length", "32"); },
            nullptr,
            "'llama.embedding_length' has type STRING, expected an "
            "unsigned integer",
            false},
        MalformedCase{"unsupported_architecture",
                      [](GgufBuilder& b) {
                        b.SetString("general.architecture", "mamba");
                      },
                      nullptr,
                      "general.architecture is 'mamba', which is not "
                      "supported (supported: llama, qwen2)",
                      false},
        MalformedCase{"mixture_of_experts",
                      [](GgufBuilder& b) { b.SetU32("llama.expert_count", 8); },
                      nullptr,
                      "llama.expert_count is 8: mixture-of-experts models "
                      "(Mixtral) are not supported",
                      false},
        MalformedCase{"unsupported_rope_scaling",
                      [](GgufBuilder& b) {
                        b.SetString("llama.rope.scaling.type", "yarn");
                      },
                      nullptr, "llama.rope.scaling.type is 'yarn'", false},
        MalformedCase{
            "rope_factors_of_the_wrong_length",
            [](GgufBuilder& b) {
              b.AddF32Tensor("rope_freqs.weight", {3}, {1.0f, 2.0f, 3.0f});
            },
            nullptr, "tensor 'rope_freqs.weight' has shape [3]", false},
        MalformedCase{"qwen2_without_a_bias",
                      [](GgufBuilder& b) {
                        b.SetString("general.architecture", "qwen2");
                        b.RenamePrefix("llama.", "qwen2.");
                      },
                      nullptr, "tensor 'blk.0.attn_q.bias'", false},
        MalformedCase{"output_bias",
                      [](GgufBuilder& b) {
                        b.AddF32Tensor("blk.0.attn_output.bias", {32},
                                       std::vector<float>(32, 0.5f));
                      },
                      nullptr,
                      "tensor 'blk.0.attn_output.bias': biases on the "
                      "attention output and the feed-forward projections are "
                      "not supported",
                      false},
        MalformedCase{"mlp_bias",
                      [](GgufBuilder& b) {
                        b.AddF32Tensor("blk.0.ffn_down.bias", {32},
                                       std::vector<float>(32, 0.5f));
                      },
                      nullptr, "tensor 'blk.0.ffn_down.bias': biases", false},
        MalformedCase{"heads_not_dividing",
                      [](GgufBuilder& b) {
                        b.SetU32("llama.attention.head_count_kv", 3);
                      },
                      nullptr, "not a multiple of head_count_kv 3", false},
        MalformedCase{
            "missing_tensor",
            [](GgufBuilder& b) { b.RemoveTensor("blk.0.ffn_up.weight"); },
            nullptr, "'blk.0.ffn_up.weight' is missing", false},
        MalformedCase{"wrong_tensor_shape",
                      [](GgufBuilder& b) {
                        b.SetTensorDims("blk.0.attn_q.weight", {16, 64});
                      },
                      nullptr,
                      "'blk.0.attn_q.weight' has shape [16, 64], expected "
                      "[32, 32]",
                      false},
        MalformedCase{"unsupported_tensor_type",
                      [](GgufBuilder& b) {
                        // Valid geometry (I32 is 4 bytes/elem) but no decoder.
                        b.SetTensorType("output_norm.weight", 26);
                      },
                      nullptr, "'output_norm.weight' has unsupported type I32",
                      false},
        // Checked in float, as used: a FLOAT64 beyond float's range
        // became inf (0 for the epsilon).
        MalformedCase{"rope_base_beyond_float",
                      [](GgufBuilder& b) {
                        b.SetRaw("llama.rope.freq_base", GgufBuilder::kF64,
                                 F64(1e39));
                      },
                      nullptr, "rope.freq_base is 1e+39", false},
        MalformedCase{"rms_eps_below_float",
                      [](GgufBuilder& b) {
                        b.SetRaw("llama.attention.layer_norm_rms_epsilon",
                                 GgufBuilder::kF64, F64(1e-50));
                      },
                      nullptr, "layer_norm_rms_epsilon is 1e-50", false}),
    [](const ::testing::TestParamInfo<MalformedCase>& i) {
      return std::string(i.param.name);
    });

TEST(GgufReader, OpenReportsMissingFile) {
  auto f = GgufFile::Open("/nonexistent/model.gguf");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr("/nonexistent/model.gguf"));
}

TEST(GgufReader, OpenMapsAFile) {
  const std::string path = ::testing::TempDir() + "/tiny.gguf";
  ASSERT_TRUE(TinyLlama({}).WriteFile(path));
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  auto config = ReadModelConfig(**f);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->n_layers, 2);
  EXPECT_EQ(config->hidden, 64);
  EXPECT_EQ(config->n_kv_heads, 2);
  EXPECT_EQ(config->head_dim, 16);
  EXPECT_EQ(config->vocab_size, 300);
  EXPECT_TRUE(config->tied_output);
}

}  // namespace
}  // namespace spikeserve
