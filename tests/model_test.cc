#include "runtime/model.h"

#include <cmath>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fixtures/gguf_builder.h"
#include "tests/reference_forward.h"

namespace spikeserve {
namespace {

using ::spikeserve::testing::ReferenceForward;
using ::spikeserve::testing::TinyLlama;
using ::spikeserve::testing::TinyLlamaSpec;
using ::testing::HasSubstr;

// Owns the image, the parsed file and the model.
struct Loaded {
  std::string bytes;
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Model> model;
};

Loaded Load(const TinyLlamaSpec& spec) {
  Loaded l;
  l.bytes = TinyLlama(spec).Build();
  auto f = GgufFile::FromBuffer(reinterpret_cast<const uint8_t*>(l.bytes.data()),
                                l.bytes.size());
  EXPECT_TRUE(f.ok()) << f.status();
  l.file = *std::move(f);
  auto m = Model::Load(*l.file);
  EXPECT_TRUE(m.ok()) << m.status();
  l.model = *std::move(m);
  return l;
}

std::vector<int32_t> RandomTokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = int32_t(rng() % vocab);
  return t;
}

double MaxAbsDiff(const float* a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < b.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

struct ShapeCase {
  const char* name;
  TinyLlamaSpec spec;
  int tokens;
};
void PrintTo(const ShapeCase& c, std::ostream* os) { *os << c.name; }


class ModelVsReference : public ::testing::TestWithParam<ShapeCase> {};

// Prefill of the whole prompt with logits at every position equals the
// naive reference, for MHA, GQA, tied and untied heads, and prompts long
// enough to take the GEMM attention path (>= 8 rows) and cross KV blocks.
TEST_P(ModelVsReference, PrefillMatches) {
  const ShapeCase& p = GetParam();
  Loaded l = Load(p.spec);
  const ModelConfig& c = l.model->config();
  const auto tokens = RandomTokens(p.tokens, c.vocab_size, 7);
  const auto ref = ReferenceForward(c, l.model->weights(), tokens);
  auto pool = l.model->NewKvPool(64, 16);
  ASSERT_TRUE(pool.ok());
  SequenceKv kv(pool->get());
  std::vector<float> logits;
  ASSERT_TRUE(l.model->Forward({{&kv, tokens, true}}, &logits).ok());
  ASSERT_EQ(logits.size(), size_t(p.tokens) * c.vocab_size);
  for (int t = 0; t < p.tokens; ++t) {
    EXPECT_LT(MaxAbsDiff(&logits[size_t(t) * c.vocab_size], ref[t]), 2e-4)
        << "position " << t;
  }
  EXPECT_EQ(kv.length(), p.tokens);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ModelVsReference,
    ::testing::Values(
        ShapeCase{"gqa_short", {}, 5},
        ShapeCase{"gqa_long", {}, 40},
        ShapeCase{"mha_untied", {.heads = 4, .kv_heads = 4, .tied = false}, 20},
        ShapeCase{"mqa_three_layers", {.layers = 3, .heads = 4, .kv_heads = 1},
                  33}),
    [](const auto& i) { return std::string(i.param.name); });

// Chunked prefill and token-by-token decode give the same logits as one
// prefill: the cache carries exactly the state the reference recomputes.
TEST(Model, ChunkedPrefillAndDecodeMatchReference) {
  Loaded l = Load({});
  const ModelConfig& c = l.model->config();
  const auto tokens = RandomTokens(37, c.vocab_size, 3);
  const auto ref = ReferenceForward(c, l.model->weights(), tokens);
  auto pool = l.model->NewKvPool(16, 4);  // small blocks: many crossings
  ASSERT_TRUE(pool.ok());
  SequenceKv kv(pool->get());
  std::vector<float> logits;
  // Chunks of 9, 11 (GEMM path), then single tokens (dot path).
  size_t at = 0;
  for (size_t n : {9u, 11u}) {
    ASSERT_TRUE(l.model
                    ->Forward({{&kv, absl::MakeConstSpan(&tokens[at], n), false}},
                              &logits)
                    .ok());
    at += n;
    EXPECT_LT(MaxAbsDiff(logits.data(), ref[at - 1]), 2e-4) << at;
  }
  for (; at < tokens.size(); ++at) {
    ASSERT_TRUE(
        l.model->Forward({{&kv, absl::MakeConstSpan(&tokens[at], 1), false}},
                         &logits)
            .ok());
    EXPECT_LT(MaxAbsDiff(logits.data(), ref[at]), 2e-4) << at;
  }
}

// Rows of different sequences in one batch do not interact.
TEST(Model, BatchedSequencesAreIndependent) {
  Loaded l = Load({});
  const ModelConfig& c = l.model->config();
  const auto a = RandomTokens(12, c.vocab_size, 11);
  const auto b = RandomTokens(3, c.vocab_size, 12);
  const auto ref_a = ReferenceForward(c, l.model->weights(), a);
  const auto ref_b = ReferenceForward(c, l.model->weights(), b);
  auto pool = l.model->NewKvPool(16, 16);
  SequenceKv ka(pool->get()), kb(pool->get());
  std::vector<float> logits;
  ASSERT_TRUE(l.model->Forward({{&ka, a, false}, {&kb, b, true}}, &logits).ok());
  ASSERT_EQ(logits.size(), size_t(1 + 3) * c.vocab_size);
  EXPECT_LT(MaxAbsDiff(&logits[0], ref_a[11]), 2e-4);
  for (int t = 0; t < 3; ++t) {
    EXPECT_LT(MaxAbsDiff(&logits[size_t(1 + t) * c.vocab_size], ref_b[t]), 2e-4);
  }
}

TEST(Model, RejectsBadInputWithoutTouchingCaches) {
  Loaded l = Load({.context = 32});
  auto pool = l.model->NewKvPool(2, 16);
  SequenceKv kv(pool->get());
  std::vector<float> logits;
  const std::vector<int32_t> bad = {1, 300};
  absl::Status s = l.model->Forward({{&kv, bad, false}}, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("token id 300"));
  const std::vector<int32_t> long_prompt(33, 5);
  s = l.model->Forward({{&kv, long_prompt, false}}, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(s.message(), HasSubstr("context length 32"));
  EXPECT_EQ(kv.length(), 0);
  // Pool of 2 blocks x 16: a second sequence cannot get room.
  const std::vector<int32_t> fill(32, 5);
  ASSERT_TRUE(l.model->Forward({{&kv, fill, false}}, &logits).ok());
  SequenceKv other(pool->get());
  s = l.model->Forward({{&other, absl::MakeConstSpan(fill.data(), 1), false}},
                       &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(other.length(), 0);
  EXPECT_EQ(kv.length(), 32);
}

}  // namespace
}  // namespace spikeserve
