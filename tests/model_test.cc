#include "runtime/model/model.h"

#include <cmath>
#include <map>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/linear/onednn_matmul.h"
#include "runtime/model/shared_prefix.h"
#include "runtime/model/smoothing.h"
#include "runtime/quant/w4_weights_file.h"
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
  std::shared_ptr<GgufFile> file;
  std::unique_ptr<Model> model;
};

Loaded Load(const TinyLlamaSpec& spec) {
  Loaded l;
  l.bytes = TinyLlama(spec).Build();
  auto f = GgufFile::FromBuffer(
      reinterpret_cast<const uint8_t*>(l.bytes.data()), l.bytes.size());
  EXPECT_TRUE(f.ok()) << f.status();
  l.file = *std::move(f);
  auto m = Model::Load(l.file);
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
        ShapeCase{"gqa_short", {}, 5}, ShapeCase{"gqa_long", {}, 40},
        ShapeCase{"mha_untied", {.heads = 4, .kv_heads = 4, .tied = false}, 20},
        ShapeCase{
            "mqa_three_layers", {.layers = 3, .heads = 4, .kv_heads = 1}, 33},
        // Qwen2: q/k/v biases and NeoX-order RoPE.
        ShapeCase{"qwen2", {.tied = false, .arch = "qwen2"}, 24},
        // A LLaMA file with q/k/v biases (attention_bias = true).
        ShapeCase{"llama_qkv_bias", {.qkv_bias = true}, 16},
        // LLaMA 3.1: per-frequency RoPE factors (8 of them: head dim 16).
        ShapeCase{"llama3_rope_factors",
                  {.rope_base = 500000.f,
                   .rope_freq_factors = {1, 1, 1.5f, 2, 4, 8, 8, 8}},
                  24},
        // A Q4_K_M-like file (Q4_K, Q6_K for output, attn_v, ffn_down):
        // K-quant tensors read in place, row by row.
        ShapeCase{"q4_k_m_mix",
                  {.hidden = 256,
                   .heads = 4,
                   .kv_heads = 2,
                   .ffn = 512,
                   .tied = false,
                   .weight_type = ::spikeserve::testing::kMixQ4_K_M},
                  12}),
    [](const auto& i) { return std::string(i.param.name); });

// A LLaMA file's q/k/v biases are optional, each on its own: present ones
// are added (ModelVsReference's llama_qkv_bias), absent ones are zero. An
// output or feed-forward bias, which the forward pass would not add, fails
// the load naming the tensor (GgufMalformedTest has the message).
TEST(Model, LlamaQkvBiasesAreOptionalEachOnItsOwn) {
  TinyLlamaSpec spec{.qkv_bias = true};
  ::spikeserve::testing::GgufBuilder b = TinyLlama(spec);
  b.RemoveTensor("blk.0.attn_k.bias");
  b.RemoveTensor("blk.0.attn_v.bias");
  const std::string bytes = b.Build();
  auto f = GgufFile::FromBuffer(reinterpret_cast<const uint8_t*>(bytes.data()),
                                bytes.size());
  ASSERT_TRUE(f.ok()) << f.status();
  auto m = Model::Load(std::shared_ptr<GgufFile>(*std::move(f)));
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelConfig& c = (*m)->config();
  const std::vector<float>& b0 = (*m)->weights().layers[0].bqkv;
  ASSERT_EQ(b0.size(), size_t(c.q_dim() + 2 * c.kv_dim()));
  EXPECT_NE(b0[0], 0.0f);  // attn_q.bias, from the file
  for (size_t i = c.q_dim(); i < b0.size(); ++i) {
    ASSERT_EQ(b0[i], 0.0f) << i;
  }
  // Layer 1 keeps all three.
  const std::vector<float>& b1 = (*m)->weights().layers[1].bqkv;
  ASSERT_EQ(b1.size(), b0.size());
  EXPECT_NE(b1[c.q_dim()], 0.0f);
  // A file without any bias adds none.
  EXPECT_TRUE(Load({}).model->weights().layers[0].bqkv.empty());
}

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
    ASSERT_TRUE(
        l.model
            ->Forward({{&kv, absl::MakeConstSpan(&tokens[at], n), false}},
                      &logits)
            .ok());
    at += n;
    EXPECT_LT(MaxAbsDiff(logits.data(), ref[at - 1]), 2e-4) << at;
  }
  for (; at < tokens.size(); ++at) {
    ASSERT_TRUE(
        l.model
            ->Forward({{&kv, absl::MakeConstSpan(&tokens[at], 1), false}},
                      &logits)
            .ok());
    EXPECT_LT(MaxAbsDiff(logits.data(), ref[at]), 2e-4) << at;
  }
}

// Rows of different sequences in one batch do not interact.
// Mistral's sliding window is honoured by serving no more context than the
// window: a position never has keys beyond it to ignore.
TEST(Model, SlidingWindowCapsTheContext) {
  Loaded wide = Load({.context = 128, .sliding_window = 256});
  EXPECT_EQ(wide.model->config().context_length, 128);
  Loaded narrow = Load({.context = 128, .sliding_window = 48});
  EXPECT_EQ(narrow.model->config().context_length, 48);
  EXPECT_EQ(narrow.model->config().sliding_window, 48);
}

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
  ASSERT_TRUE(
      l.model->Forward({{&ka, a, false}, {&kb, b, true}}, &logits).ok());
  ASSERT_EQ(logits.size(), size_t(1 + 3) * c.vocab_size);
  EXPECT_LT(MaxAbsDiff(&logits[0], ref_a[11]), 2e-4);
  for (int t = 0; t < 3; ++t) {
    EXPECT_LT(MaxAbsDiff(&logits[size_t(1 + t) * c.vocab_size], ref_b[t]),
              2e-4);
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
  const std::vector<int32_t> two = {1, 2};
  s = l.model->Forward({{&kv, two, false}, {&kv, two, false}}, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("entries 0 and 1 are the same sequence"));
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

namespace spikeserve {
namespace {

// Records which (layer, site) inputs were observed and their row absmax.
class RecordingObserver : public ForwardObserver {
 public:
  void OnSiteInput(int layer, Site site, const float* x, int m, int width,
                   absl::Span<const float> row_absmax,
                   absl::Span<const int> seq_bounds) override {
    seen[{layer, site}] += m;
    for (int r = 0; r < m; ++r) {
      float mx = 0;
      for (int j = 0; j < width; ++j)
        mx = std::max(mx, std::abs(x[size_t(r) * width + j]));
      EXPECT_EQ(mx, row_absmax[r]);
    }
    EXPECT_EQ(seq_bounds.back(), m);
  }
  void OnGuardFallback(int layer, Site site, int rows) override {
    fallbacks[{layer, site}] += rows;
  }
  void OnLayerPart(int layer, LayerPart part, double seconds) override {
    EXPECT_GE(seconds, 0);
    ++parts;
  }
  std::map<SiteKey, int> seen, fallbacks;
  int parts = 0;
};

std::vector<float> Logits(const Model& m, const std::vector<int32_t>& tokens,
                          const ForwardOptions& opt = {}) {
  auto pool = m.NewKvPool(8, 16);
  SequenceKv kv(pool->get());
  std::vector<float> logits;
  EXPECT_TRUE(m.Forward({{&kv, tokens, true}}, &logits, opt).ok());
  return logits;
}

struct Int8Fixture {
  std::string bytes;
  std::shared_ptr<GgufFile> file;
  std::unique_ptr<Model> fp32;
  Int8Fixture() {
    bytes = TinyLlama({}).Build();
    file = *GgufFile::FromBuffer(reinterpret_cast<const uint8_t*>(bytes.data()),
                                 bytes.size());
    fp32 = *Model::Load(file);
  }
  std::unique_ptr<Model> Quantized(const QuantOptions& q) {
    auto m = Model::Load(file, q);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *std::move(m) : nullptr;
  }
};

double Rel(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * double(a[i] - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

TEST(ModelInt8, W8A8IsCloseToFp32AndUsesVnni) {
  Int8Fixture f;
  const auto tokens = RandomTokens(24, 300, 5);
  const auto ref = Logits(*f.fp32, tokens);
  for (ActQuantMode mode :
       {ActQuantMode::kPerTensorDynamic, ActQuantMode::kPerTokenDynamic}) {
    auto q = f.Quantized({.w8a8 = true, .mode = mode, .warmup_rows = 32});
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(q->IsInt8({0, Site::kDown}));
    // The kernel this CPU should run: ours, VNNI with AMX tiles for many
    // rows where oneDNN has AMX, VNNI, or AVX2.
    EXPECT_EQ(q->int8_impl(), Int8MatmulHasAmx()    ? "own:avx512_vnni+amx"
                              : Int8MatmulHasVnni() ? "own:avx512_vnni"
                                                    : "own:avx2");
    const auto got = Logits(*q, tokens);
    const double rel = Rel(got, ref);
    EXPECT_LT(rel, 0.05) << ActQuantModeName(mode);
    EXPECT_GT(rel, 0.0) << "INT8 path did not run";
  }
}

// W4A8 at every quantized site (groups chosen per width: 64 for hidden 64,
// 32 for ffn 96): close to FP32, further than W8A8 (the 4-bit kernels
// ran), holding half a byte per weight and a half scale per group.
TEST(ModelW4, W4A8IsCloseToFp32AndHoldsFourBits) {
  Int8Fixture f;
  const auto tokens = RandomTokens(24, 300, 5);
  const auto ref = Logits(*f.fp32, tokens);
  const QuantOptions w8{
      .w8a8 = true, .mode = ActQuantMode::kPerTokenDynamic, .warmup_rows = 32};
  QuantOptions w4 = w8;
  w4.w4_everywhere = true;
  auto q8 = f.Quantized(w8);
  auto q4 = f.Quantized(w4);
  ASSERT_NE(q4, nullptr);
  EXPECT_EQ(q4->W4Group({0, Site::kQkv}), 64);
  EXPECT_EQ(q4->W4Group({1, Site::kDown}), 32);
  EXPECT_EQ(q8->W4Group({1, Site::kDown}), 0);
  EXPECT_EQ(q4->w4_site_count(), 8);
  const Model::WeightMemory m = q4->weight_memory();
  EXPECT_EQ(m.int8, 0);
  // Per layer: qkv 128x64, o 64x64, gate_up 192x64 at group 64 (4.25
  // bits), down 64x96 at group 32 (4.5 bits).
  const int64_t per_layer = (128 + 64 + 192) * 64 * 17 / 32 + 64 * 96 * 9 / 16;
  EXPECT_EQ(m.int4, 2 * per_layer);
  const double rel8 = Rel(Logits(*q8, tokens), ref);
  const double rel4 = Rel(Logits(*q4, tokens), ref);
  EXPECT_LT(rel4, 0.2);
  EXPECT_GT(rel4, rel8);
}

// A plan's weight_min (QuantOptions::w4_min_sites) gives its site the same
// asymmetric groups as the global w4_with_min, and only that site: the
// logits equal the global option's bit for bit, differ from symmetric
// groups, and the site holds one more half (its minimum) per group.
TEST(ModelW4, PerSiteMinimumsAreTheGlobalOptionsOnThatSite) {
  Int8Fixture f;
  const auto tokens = RandomTokens(24, 300, 5);
  QuantOptions sym{
      .w8a8 = true, .mode = ActQuantMode::kPerTokenDynamic, .warmup_rows = 32};
  sym.w4_sites = {{{0, Site::kO}, 0}, {{1, Site::kGateUp}, 0}};
  QuantOptions per_site = sym;
  per_site.w4_min_sites = {{1, Site::kGateUp}};
  QuantOptions global = sym;
  global.w4_sites.erase({0, Site::kO});
  global.w4_with_min = true;
  QuantOptions global_sym = global;
  global_sym.w4_with_min = false;
  per_site.w4_sites.erase({0, Site::kO});
  auto a = f.Quantized(per_site);
  auto b = f.Quantized(global);
  auto c = f.Quantized(global_sym);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(a->W4HasMin({1, Site::kGateUp}));
  EXPECT_FALSE(c->W4HasMin({1, Site::kGateUp}));
  EXPECT_FALSE(a->W4HasMin({0, Site::kO}));  // W8A8 here
  EXPECT_EQ(Logits(*a, tokens), Logits(*b, tokens));
  EXPECT_NE(Logits(*a, tokens), Logits(*c, tokens));
  // gate_up 192x64 in one group of 64 per row: 192 more halves.
  EXPECT_EQ(a->weight_memory().int4 - c->weight_memory().int4, 192 * 2);
  // Both W4 sites, the minimum on one of them.
  QuantOptions mixed = sym;
  mixed.w4_min_sites = {{1, Site::kGateUp}};
  auto d = f.Quantized(mixed);
  ASSERT_NE(d, nullptr);
  EXPECT_TRUE(d->W4HasMin({1, Site::kGateUp}));
  EXPECT_FALSE(d->W4HasMin({0, Site::kO}));
  EXPECT_EQ(d->W4Group({0, Site::kO}), 64);
}

// A site's importance (QuantOptions::w4_importance) reaches its W4 groups:
// the site reports it and the logits change (other scales), the sites
// without one keep round-to-nearest; an importance of the wrong width
// fails the load naming the site and both numbers.
TEST(ModelW4, ImportanceReachesItsSiteAndNamesAWrongWidth) {
  Int8Fixture f;
  const auto tokens = RandomTokens(24, 300, 6);
  QuantOptions q{
      .w8a8 = true, .mode = ActQuantMode::kPerTokenDynamic, .warmup_rows = 32};
  q.w4_sites = {{{0, Site::kO}, 32}, {{1, Site::kGateUp}, 32}};
  auto plain = f.Quantized(q);
  std::vector<float> h(64);
  for (int j = 0; j < 64; ++j) h[j] = 1.0f + (j % 7) * 3.0f;
  q.w4_importance[{1, Site::kGateUp}] = h;
  auto weighted = f.Quantized(q);
  ASSERT_NE(plain, nullptr);
  ASSERT_NE(weighted, nullptr);
  EXPECT_TRUE(weighted->W4ImportanceWeighted({1, Site::kGateUp}));
  EXPECT_FALSE(weighted->W4ImportanceWeighted({0, Site::kO}));
  EXPECT_FALSE(plain->W4ImportanceWeighted({1, Site::kGateUp}));
  EXPECT_NE(Logits(*plain, tokens), Logits(*weighted, tokens));

  q.w4_importance[{1, Site::kGateUp}].resize(10);
  auto m = Model::Load(f.file, q);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(),
              ::testing::HasSubstr("W4 site 1.gate_up: W4A8: 10 importance "
                                   "values for 64 input channels"));
}

// Given 4-bit weights (QuantOptions::w4_given, a plan's GPTQ file) are what
// the site serves: the site's own round-to-nearest, given, gives the same
// logits as re-quantizing; other codes change them; a wrong shape fails
// the load naming the site.
TEST(ModelW4, GivenWeightsAreServedAsGiven) {
  Int8Fixture f;
  const auto tokens = RandomTokens(24, 300, 8);
  QuantOptions q{
      .w8a8 = true, .mode = ActQuantMode::kPerTokenDynamic, .warmup_rows = 32};
  q.w4_sites = {{{0, Site::kO}, 32}, {{1, Site::kGateUp}, 32}};
  auto requantized = f.Quantized(q);
  ASSERT_NE(requantized, nullptr);
  // gate_up of layer 1 as Create rounds it: QuantizeW4Row per row.
  const WeightRows& rows = f.fp32->site_rows(1, Site::kGateUp);
  W4Plain p{rows.rows(), rows.cols(), 32, false};
  p.u.resize(size_t(p.n) * p.k);
  p.scale.resize(size_t(p.n) * p.groups());
  std::vector<float> row(p.k);
  for (int r = 0; r < p.n; ++r) {
    rows.Row(r, row.data());
    QuantizeW4Row(row.data(), p.k, 32, &p.u[size_t(r) * p.k],
                  &p.scale[size_t(r) * p.groups()]);
  }
  auto given = std::make_shared<W4WeightsMap>();
  given->sites[{1, Site::kGateUp}] = p;
  q.w4_given = given;
  auto same = f.Quantized(q);
  ASSERT_NE(same, nullptr);
  EXPECT_TRUE(same->W4Given({1, Site::kGateUp}));
  EXPECT_FALSE(same->W4Given({0, Site::kO}));
  EXPECT_EQ(Logits(*same, tokens), Logits(*requantized, tokens));

  for (int i = 0; i < p.k; ++i) given->sites[{1, Site::kGateUp}].u[i] = 8;
  auto other = f.Quantized(q);
  ASSERT_NE(other, nullptr);
  EXPECT_NE(Logits(*other, tokens), Logits(*requantized, tokens));

  given->sites[{1, Site::kGateUp}].n -= 1;
  auto m = Model::Load(f.file, q);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(m.status().message(),
              ::testing::HasSubstr("W4 site 1.gate_up: the given weights are "
                                   "191x64, the site's 192x64"));
}

// Issue 24 acceptance 6: a 4-bit site whose width the group does not
// divide fails the load naming the module and both numbers.
TEST(ModelW4, GroupThatDoesNotDivideTheWidthFailsNamingTheSite) {
  Int8Fixture f;
  QuantOptions q{.w8a8 = true, .mode = ActQuantMode::kPerTokenDynamic};
  q.w4_sites[{1, Site::kDown}] = 64;  // ffn 96
  auto m = Model::Load(f.file, q);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(),
              ::testing::HasSubstr("W4 site 1.down: W4A8: the input width 96 "
                                   "is not a multiple of the group size 64"));
}

// A Q4_K_M file served with the file's own groups: its Q4_K sites are read
// as stored (group 32 with mins), the sites with a Q6_K part (layer 1's
// attn_v and ffn_down) are re-quantized (group 128); reading as stored
// keeps the file's weights, so it is closer to the file's FP32 model than
// re-quantizing every site.
TEST(ModelW4, Q4KSitesAreReadAsStored) {
  const TinyLlamaSpec spec{.hidden = 256,
                           .heads = 4,
                           .kv_heads = 2,
                           .ffn = 512,
                           .tied = false,
                           .weight_type = ::spikeserve::testing::kMixQ4_K_M};
  Loaded f = Load(spec);
  ASSERT_NE(f.model, nullptr);
  QuantOptions q{
      .w8a8 = true, .mode = ActQuantMode::kPerTokenDynamic, .warmup_rows = 16};
  q.w4_everywhere = true;
  q.w4_everywhere_group = kW4AsStored;
  auto stored = Model::Load(f.file, q);
  ASSERT_TRUE(stored.ok()) << stored.status();
  const Model& m = **stored;
  EXPECT_EQ(m.W4Group({0, Site::kQkv}), 32);
  EXPECT_EQ(m.W4Group({0, Site::kDown}), 32);
  EXPECT_EQ(m.W4Group({1, Site::kO}), 32);
  EXPECT_EQ(m.W4Group({1, Site::kGateUp}), 32);
  EXPECT_EQ(m.W4Group({1, Site::kQkv}), 128);   // attn_v is Q6_K
  EXPECT_EQ(m.W4Group({1, Site::kDown}), 128);  // Q6_K
  q.w4_everywhere_group = 0;
  auto requantized = Model::Load(f.file, q);
  ASSERT_TRUE(requantized.ok()) << requantized.status();
  const auto tokens = RandomTokens(16, spec.vocab, 4);
  const auto ref = Logits(*f.model, tokens);
  const double rel_stored = Rel(Logits(m, tokens), ref);
  const double rel_requantized = Rel(Logits(**requantized, tokens), ref);
  EXPECT_LT(rel_stored, rel_requantized);
  EXPECT_LT(rel_stored, 0.1);
}

// A model stored as ggml Q8_0 (the fixture's own encoder, the format
// llama.cpp quantizes to) loads through the dequantizer and stays within
// Q8_0's rounding of the same model in F32: each weight moves by at most
// half a step of absmax/127 of its 32-block.
TEST(Model, Q8_0FileMatchesF32WithinQuantization) {
  TinyLlamaSpec spec;
  spec.tied = false;
  Loaded f32 = Load(spec);
  spec.weight_type = ::spikeserve::testing::kGgmlQ8_0;
  Loaded q8 = Load(spec);
  ASSERT_NE(q8.model, nullptr);
  ASSERT_NE(q8.file->FindTensor("blk.0.ffn_down.weight"), nullptr);
  EXPECT_EQ(q8.file->FindTensor("blk.0.ffn_down.weight")->type,
            ::spikeserve::testing::kGgmlQ8_0);
  const auto tokens = RandomTokens(16, spec.vocab, 3);
  const auto ref = Logits(*f32.model, tokens);
  const auto got = Logits(*q8.model, tokens);
  const double rel = Rel(got, ref);
  EXPECT_LT(rel, 0.02);
  EXPECT_GT(rel, 0.0) << "the Q8_0 copy should not be bit-identical";
}

// A loaded model holds no FP32 copy of a quantized matrix: only the QFeM
// site computed in FP32 has one. Releasing the FP32 reference (the model
// file) leaves the quantized output bit for bit and refuses FP32 forwards
// afterwards instead of reading a closed file.
TEST(ModelInt8, ReleaseUnquantizedWeightsKeepsOutput) {
  TinyLlamaSpec spec;
  spec.tied = false;
  Loaded l = Load(spec);
  QuantOptions q;
  q.w8a8 = true;
  q.warmup_rows = 32;
  q.fp32_sites = {{1, Site::kDown}};
  q.lm_head = LmHeadPrecision::kBf16;
  auto m = Model::Load(l.file, q);
  ASSERT_TRUE(m.ok()) << m.status();
  l.file.reset();  // the model keeps the file for its FP32 reference
  const auto tokens = RandomTokens(12, spec.vocab, 9);
  const auto before = Logits(**m, tokens);
  const ModelWeights& w = (*m)->weights();
  EXPECT_TRUE(w.layers[0].w_down.data.empty());
  EXPECT_TRUE(w.layers[0].wqkv.data.empty());
  EXPECT_EQ(w.layers[1].w_down.data.size(),
            size_t(spec.hidden) * spec.ffn);  // QFeM, FP32
  // A BF16 head holds no FP32 copy.
  EXPECT_TRUE(w.output.data.empty());
  ForwardOptions all_fp32;
  all_fp32.all_fp32 = true;
  // Before release the FP32 reference reads the file: with an FP32 lm_head
  // (all_fp32 leaves the head's precision alone) it gives an FP32 model's
  // logits, bit for bit (the same fixed-order kernel on the same rows).
  {
    Loaded f = Load(spec);
    QuantOptions q32 = q;
    q32.lm_head = LmHeadPrecision::kFp32;
    auto quantized = Model::Load(f.file, q32);
    ASSERT_TRUE(quantized.ok());
    EXPECT_EQ(Logits(**quantized, tokens, all_fp32), Logits(*f.model, tokens));
  }
  EXPECT_EQ((*m)->ReleaseUnquantizedWeights(), 0);  // nothing FP32 given
  EXPECT_EQ(Logits(**m, tokens), before);
  auto pool = (*m)->NewKvPool(8, 16);
  SequenceKv kv(pool->get());
  std::vector<float> logits;
  EXPECT_EQ((*m)->Forward({{&kv, tokens, false}}, &logits, all_fp32).code(),
            absl::StatusCode::kFailedPrecondition);
}

// A model built from FP32 matrices frees them on release, all but the
// embedding, which Forward still reads.
TEST(ModelInt8, ReleaseFreesTheGivenMatrices) {
  TinyLlamaSpec spec;
  spec.tied = false;
  Loaded l = Load(spec);
  auto m = Model::FromWeights(l.model->config(), l.model->weights(),
                              {.w8a8 = true, .warmup_rows = 16});
  ASSERT_TRUE(m.ok()) << m.status();
  const auto tokens = RandomTokens(12, spec.vocab, 9);
  const auto before = Logits(**m, tokens);
  const int64_t H = spec.hidden, F = spec.ffn, V = spec.vocab;
  const int64_t hd = H / spec.heads;
  const int64_t per_layer = (hd * spec.heads + 2 * hd * spec.kv_heads) * H +
                            hd * spec.heads * H + 2 * F * H + F * H;
  EXPECT_EQ((*m)->ReleaseUnquantizedWeights(),
            4 * (spec.layers * per_layer + V * H));
  EXPECT_EQ(Logits(**m, tokens), before);
}

// BF16 QFeM sites and a BF16 lm_head run on every CPU (the fixed-order
// kernel needs no BF16 instructions): quant() keeps them, they hold bf16
// weights, and their logits stay within bf16 weight rounding of FP32's.
TEST(ModelInt8, Bf16SitesHoldBf16WeightsOnEveryCpu) {
  Int8Fixture f;
  QuantOptions bf16{.w8a8 = true,
                    .fp32_sites = {{1, Site::kDown}},
                    .qfem_bf16 = true,
                    .warmup_rows = 16,
                    .lm_head = LmHeadPrecision::kBf16};
  auto m = f.Quantized(bf16);
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(m->quant().qfem_bf16);
  EXPECT_EQ(m->quant().lm_head, LmHeadPrecision::kBf16);
  // The down site (ffn x hidden) and the head (vocab x hidden), 2 bytes
  // per weight.
  const TinyLlamaSpec spec;  // Int8Fixture's
  EXPECT_EQ(m->weight_memory().bf16, 2 * (int64_t(spec.ffn) * spec.hidden +
                                          int64_t(spec.vocab) * spec.hidden));
  QuantOptions fp32 = bf16;
  fp32.qfem_bf16 = false;
  fp32.lm_head = LmHeadPrecision::kFp32;
  const auto tokens = RandomTokens(10, 300, 4);
  const double rel =
      Rel(Logits(*m, tokens), Logits(*f.Quantized(fp32), tokens));
  EXPECT_GT(rel, 0.0) << "the BF16 kernels did not run";
  EXPECT_LT(rel, 0.01);
}

// The INT8 lm_head (block Hadamard rotation, per-token W8A8) stays close
// to the FP32 lm_head of the same W8A8 model.
TEST(ModelInt8, Int8LmHeadIsCloseToFp32Head) {
  Int8Fixture f;
  const auto tokens = RandomTokens(16, 300, 8);
  auto fp32_head = f.Quantized({.w8a8 = true, .warmup_rows = 16});
  auto int8_head = f.Quantized(
      {.w8a8 = true, .warmup_rows = 16, .lm_head = LmHeadPrecision::kInt8});
  ASSERT_NE(int8_head, nullptr);
  const double rel =
      Rel(Logits(*int8_head, tokens), Logits(*fp32_head, tokens));
  EXPECT_LT(rel, 0.03);
  EXPECT_GT(rel, 0.0) << "the INT8 lm_head did not run";
}

TEST(LmHeadPrecision, ParsesNamesAndAuto) {
  const struct {
    const char* name;
    LmHeadPrecision want;
  } cases[] = {{"fp32", LmHeadPrecision::kFp32},
               {"bf16", LmHeadPrecision::kBf16},
               {"int8", LmHeadPrecision::kInt8},
               {"auto", LmHeadPrecision::kInt8}};
  for (const auto& c : cases) {
    auto p = ParseLmHeadPrecision(c.name);
    ASSERT_TRUE(p.ok()) << c.name;
    EXPECT_EQ(*p, c.want) << c.name;
  }
  for (const char* bad : {"", "FP32", "int4"}) {
    auto p = ParseLmHeadPrecision(bad);
    ASSERT_FALSE(p.ok()) << bad;
    EXPECT_THAT(p.status().message(),
                ::testing::HasSubstr("auto, fp32, bf16 or int8"))
        << bad;
  }
}

// QFeM of every site, or all_fp32, reproduces the FP32 model bit for bit.
TEST(ModelInt8, FullQfemAndAllFp32EqualFp32) {
  Int8Fixture f;
  const auto tokens = RandomTokens(10, 300, 6);
  const auto ref = Logits(*f.fp32, tokens);
  QuantOptions all{.w8a8 = true, .warmup_rows = 16};
  for (int l = 0; l < 2; ++l) {
    for (Site s : kAllSites) all.fp32_sites.insert({l, s});
  }
  EXPECT_EQ(Logits(*f.Quantized(all), tokens), ref);
  auto q = f.Quantized({.w8a8 = true, .warmup_rows = 16});
  EXPECT_EQ(Logits(*q, tokens, {.all_fp32 = true}), ref);
}

TEST(ModelInt8, ObserverSeesEverySiteAndLayerPart) {
  Int8Fixture f;
  RecordingObserver obs;
  Logits(*f.fp32, RandomTokens(7, 300, 1), {.observer = &obs});
  EXPECT_EQ(obs.seen.size(), 2u * kNumSites);
  for (const auto& [key, rows] : obs.seen)
    EXPECT_EQ(rows, 7) << SiteKeyName(key);
  EXPECT_EQ(obs.parts, 2 * 2);
}

TEST(ModelInt8, StaticModeNeedsEverySiteAndGuardFallsBack) {
  Int8Fixture f;
  QuantOptions q{
      .w8a8 = true, .mode = ActQuantMode::kPerTensorStatic, .warmup_rows = 16};
  EXPECT_THAT(Model::Load(f.file, q).status().message(),
              HasSubstr("calibrated absmax for site 0.qkv"));
  // Tiny calibrated ranges: every row exceeds 2x, so the guard recomputes
  // every row in FP32 and the output equals the FP32 model's.
  for (int l = 0; l < 2; ++l) {
    for (Site s : kAllSites) q.static_absmax[{l, s}] = 1e-3f;
  }
  q.guard_factor = 2.0f;
  auto m = f.Quantized(q);
  RecordingObserver obs;
  const auto tokens = RandomTokens(6, 300, 2);
  // Equal up to float rounding: the guard runs rows one at a time (M = 1),
  // whose GEMM sums in another order than the FP32 model's M = 6 call.
  EXPECT_LT(
      Rel(Logits(*m, tokens, {.observer = &obs}), Logits(*f.fp32, tokens)),
      1e-5);
  EXPECT_EQ(obs.fallbacks.size(), 2u * kNumSites);
  EXPECT_EQ((obs.fallbacks[{1, Site::kDown}]), 6);
}

TEST(ModelInt8, RejectsQfemSiteOutsideModel) {
  Int8Fixture f;
  EXPECT_THAT(
      Model::Load(f.file, {.w8a8 = true, .fp32_sites = {{9, Site::kDown}}})
          .status()
          .message(),
      HasSubstr("9.down"));
}

}  // namespace
}  // namespace spikeserve

namespace spikeserve {
namespace {

// A sequence attached to a shared prefix computes exactly what running the
// prefix and then its own tokens would (FP32 model), the prefix occupies the
// same blocks for every sequence, and the blocks survive the sequences.
TEST(SharedPrefix, SequencesReusePrefixBlocks) {
  Int8Fixture f;
  auto pool = *f.fp32->NewKvPool(16, 4);
  auto prefix =
      SharedPrefix::Compute(*f.fp32, pool.get(), {298, 17, 42, 17, 42, 9});
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  EXPECT_EQ((*prefix)->blocks().size(), 2u);  // 6 tokens, blocks of 4
  const int used_by_prefix = pool->used_blocks();
  const auto tokens = RandomTokens(9, 300, 8);
  std::vector<int32_t> full = (*prefix)->tokens();
  full.insert(full.end(), tokens.begin(), tokens.end());
  const auto ref = ReferenceForward(f.fp32->config(), f.fp32->weights(), full);
  for (int i = 0; i < 3; ++i) {
    SequenceKv seq(pool.get());
    ASSERT_TRUE((*prefix)->AttachTo(&seq).ok());
    EXPECT_EQ(seq.prefix_blocks(), (*prefix)->blocks());
    std::vector<float> logits;
    ASSERT_TRUE(f.fp32->Forward({{&seq, tokens, false}}, &logits).ok());
    EXPECT_LT(MaxAbsDiff(logits.data(), ref.back()), 2e-4);
    EXPECT_EQ(seq.length(), 15);
  }
  EXPECT_EQ(pool->used_blocks(), used_by_prefix);
  for (int b : (*prefix)->blocks()) EXPECT_EQ(pool->refcount(b), 1);
  prefix->reset();
  EXPECT_EQ(pool->used_blocks(), 0);
}

// Under W8A8 the prefix still runs in FP32: its KV equals the FP32 model's.
TEST(SharedPrefix, ComputedUnquantized) {
  Int8Fixture f;
  auto q = f.Quantized({.w8a8 = true, .warmup_rows = 16});
  auto pool_fp = *f.fp32->NewKvPool(4, 16);
  auto pool_q = *q->NewKvPool(4, 16);
  auto a = *SharedPrefix::Compute(*f.fp32, pool_fp.get(), {1, 2, 3});
  auto b = *SharedPrefix::Compute(*q, pool_q.get(), {1, 2, 3});
  for (int l = 0; l < 2; ++l) {
    for (int i = 0; i < 3 * f.fp32->config().kv_dim(); ++i) {
      ASSERT_EQ(pool_fp->k(a->blocks()[0], l)[i],
                pool_q->k(b->blocks()[0], l)[i]);
    }
  }
}

}  // namespace
}  // namespace spikeserve

namespace spikeserve {
namespace {

// SmoothQuant folding and the down_proj rotation are exact transforms: in
// FP32 the model computes the same logits (up to float rounding).
TEST(ModelTransforms, SmoothingAndRotationPreserveFp32Output) {
  Int8Fixture f;
  const ModelConfig& c = f.fp32->config();
  const auto tokens = RandomTokens(12, 300, 9);
  const auto ref = Logits(*f.fp32, tokens);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.2f, 5.0f);
  QuantOptions q;
  for (int l = 0; l < c.n_layers; ++l) {
    for (Site s : {Site::kQkv, Site::kGateUp, Site::kDown}) {
      std::vector<float> sc(s == Site::kDown ? c.ffn : c.hidden);
      for (float& v : sc) v = u(rng);
      q.smooth_scales[{l, s}] = sc;
    }
  }
  q.down_hadamard = true;  // ffn 96 = 12 * 8
  auto m = Model::FromWeights(c, f.fp32->weights(), q);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_LT(Rel(Logits(**m, tokens), ref), 1e-5);
  // And the weights did change.
  EXPECT_NE((*m)->weights().layers[0].w_down.data,
            f.fp32->weights().layers[0].w_down.data);
  QuantOptions bad;
  bad.smooth_scales[{0, Site::kO}] = std::vector<float>(c.q_dim(), 1.0f);
  EXPECT_FALSE(Model::FromWeights(c, f.fp32->weights(), bad).ok());
}

// The norm-output rotation is exact in FP32 too, alone and after smoothing
// (hidden 64: one block of 64).
TEST(ModelTransforms, NormRotationPreservesFp32Output) {
  Int8Fixture f;
  const ModelConfig& c = f.fp32->config();
  const auto tokens = RandomTokens(12, 300, 9);
  const auto ref = Logits(*f.fp32, tokens);
  for (bool smooth : {false, true}) {
    SCOPED_TRACE(smooth ? "smoothed" : "plain");
    QuantOptions q;
    q.norm_hadamard = true;
    if (smooth) {
      for (int l = 0; l < c.n_layers; ++l) {
        for (Site s : {Site::kQkv, Site::kGateUp}) {
          std::vector<float> sc(c.hidden);
          for (int j = 0; j < c.hidden; ++j) sc[j] = 0.5f + 0.1f * (j % 7);
          q.smooth_scales[{l, s}] = sc;
        }
      }
    }
    auto m = Model::FromWeights(c, f.fp32->weights(), q);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_LT(Rel(Logits(**m, tokens), ref), 1e-5);
    EXPECT_NE((*m)->weights().layers[0].wqkv.data,
              f.fp32->weights().layers[0].wqkv.data);
  }
}

// What the rotation is for: a massive channel in the norm outputs (a norm
// gain of 20 on one channel, as trained LLaMAs have) sets every token's
// INT8 scale; rotated, it is spread over the block and the W8A8 logits
// come much closer to FP32's (relative error 0.086 -> 0.036 here).
TEST(ModelTransforms, NormRotationShrinksTheErrorOfAMassiveChannel) {
  Int8Fixture f;
  const ModelConfig& c = f.fp32->config();
  ModelWeights w = f.fp32->weights();
  for (LayerWeights& L : w.layers) {
    L.attn_norm[5] *= 20.0f;
    L.ffn_norm[17] *= 20.0f;
  }
  auto fp32 = Model::FromWeights(c, w, {});
  ASSERT_TRUE(fp32.ok()) << fp32.status();
  const auto tokens = RandomTokens(24, 300, 4);
  const auto ref = Logits(**fp32, tokens);
  QuantOptions q;
  q.w8a8 = true;
  q.mode = ActQuantMode::kPerTokenDynamic;
  auto plain = Model::FromWeights(c, w, q);
  q.norm_hadamard = true;
  auto rotated = Model::FromWeights(c, w, q);
  ASSERT_TRUE(plain.ok() && rotated.ok());
  const double e_plain = Rel(Logits(**plain, tokens), ref);
  const double e_rotated = Rel(Logits(**rotated, tokens), ref);
  EXPECT_LT(e_rotated, 0.6 * e_plain) << e_plain << " vs " << e_rotated;
}

}  // namespace
}  // namespace spikeserve

namespace spikeserve {
namespace {

TEST(Smoothing, ScalesByHand) {
  // W [2][3]; column maxima 1, 2, 4. alpha 0.5: s = sqrt(a) / sqrt(w).
  Matrix w{2, 3, {1, -2, 0.5f, -0.5f, 1, -4}};
  const std::vector<float> s = SmoothScales({4, 8, 0}, w, 0.5f);
  EXPECT_FLOAT_EQ(s[0], 2.0f);  // sqrt(4) / sqrt(1)
  EXPECT_FLOAT_EQ(s[1], 2.0f);  // sqrt(8) / sqrt(2)
  EXPECT_FLOAT_EQ(s[2], 1.0f);  // no activation seen
}

}  // namespace
}  // namespace spikeserve
