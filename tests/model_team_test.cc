// Model::LayersInTeam (model_team.cc): a decode step in one parallel region
// gives bit-identical logits, KV and observations to the same step run one
// parallel region per step (ForwardOptions::one_region = false).
#include <omp.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/model/model.h"
#include "tests/fixtures/gguf_builder.h"

namespace spikeserve {
namespace {

using ::spikeserve::testing::TinyLlama;
using ::spikeserve::testing::TinyLlamaSpec;

// What a forward reports, in call order (timings only counted).
class Log : public ForwardObserver {
 public:
  void OnSiteInput(int layer, Site site, const float* x, int m, int width,
                   absl::Span<const float> row_absmax,
                   absl::Span<const int> seq_bounds) override {
    inputs.push_back({layer, int(site), m});
    absmax.insert(absmax.end(), row_absmax.begin(), row_absmax.end());
  }
  void OnGuardFallback(int layer, Site site, int rows) override {
    fallbacks.push_back({layer, int(site), rows});
  }
  void OnLayerPart(int layer, LayerPart part, double seconds) override {
    parts.push_back({layer, int(part), seconds >= 0});
  }
  std::vector<std::vector<int>> inputs, fallbacks, parts;
  std::vector<float> absmax;
};

struct Case {
  std::string name;
  TinyLlamaSpec spec;
  QuantOptions quant;
  int prompt;  // tokens before the decode steps (long: attention splits)
  bool guarded = false;  // some rows take the spike guard's FP32 path
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::vector<int32_t> Tokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = int32_t(rng() % vocab);
  return t;
}

class ModelTeamTest : public ::testing::TestWithParam<Case> {};

// Five sequences prefilled, then decode steps of one (1 row) and of all (5
// rows: W4 units pair blocks), run twice from the same start: in one
// region and per step.
TEST_P(ModelTeamTest, OneRegionDecodeEqualsPerStepDecode) {
  if (omp_get_max_threads() < 2) GTEST_SKIP() << "one OpenMP thread";
  const Case& c = GetParam();
  const std::string bytes = TinyLlama(c.spec).Build();
  auto file = GgufFile::FromBuffer(
      reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  ASSERT_TRUE(file.ok()) << file.status();
  std::shared_ptr<const GgufFile> shared = *std::move(file);
  auto model = Model::Load(shared, c.quant);
  ASSERT_TRUE(model.ok()) << model.status();
  const Model& m = **model;

  ForwardOptions team, per_step;
  per_step.one_region = false;
  // One row always (the INT8 packed kernel may take only one); W4A8 five.
  ASSERT_TRUE(m.RunsInOneRegion(1, team));
  if (c.quant.w4_everywhere) {
    ASSERT_TRUE(m.RunsInOneRegion(5, team));
  }
  ASSERT_FALSE(m.RunsInOneRegion(1, per_step));
  ASSERT_FALSE(m.RunsInOneRegion(64, team));  // prefill

  constexpr int kSeqs = 5;
  struct Run {
    std::unique_ptr<KvPool> pool;
    std::vector<std::unique_ptr<SequenceKv>> kv;
    Log log;
    std::vector<float> logits;  // every step's, concatenated
  };
  auto run = [&](const ForwardOptions& decode_opt, Run* r) {
    r->pool = *m.NewKvPool(512, 16);
    std::vector<std::vector<int32_t>> prompts;
    std::vector<BatchEntry> prefill;
    for (int s = 0; s < kSeqs; ++s) {
      r->kv.push_back(std::make_unique<SequenceKv>(r->pool.get()));
      prompts.push_back(Tokens(s == 0 ? c.prompt : c.prompt / 2 + 3 * s,
                               c.spec.vocab, s + 1));
    }
    for (int s = 0; s < kSeqs; ++s) {
      prefill.push_back({r->kv[s].get(), prompts[s]});
    }
    std::vector<float> out;
    ASSERT_TRUE(m.Forward(prefill, &out).ok());
    ForwardOptions o = decode_opt;
    o.observer = &r->log;
    const auto next = Tokens(12 * kSeqs, c.spec.vocab, 99);
    for (int step = 0; step < 12; ++step) {
      std::vector<BatchEntry> batch;
      for (int s = 0; s < kSeqs; ++s) {
        // Steps of sequence 0 alone, of 1 alone, then of all five.
        if (step % 3 == 2 || s == step % 3) {
          batch.push_back({r->kv[s].get(),
                           absl::MakeConstSpan(&next[step * kSeqs + s], 1)});
        }
      }
      const absl::Status st = m.Forward(batch, &out, o);
      ASSERT_TRUE(st.ok()) << st;
      r->logits.insert(r->logits.end(), out.begin(), out.end());
    }
  };
  Run one, many;
  run(team, &one);
  run(per_step, &many);
  ASSERT_EQ(one.logits.size(), many.logits.size());
  int differ = 0;
  for (size_t i = 0; i < one.logits.size(); ++i) {
    differ += one.logits[i] != many.logits[i];
  }
  EXPECT_EQ(differ, 0) << "of " << one.logits.size() << " logits";
  EXPECT_EQ(one.log.inputs, many.log.inputs);
  EXPECT_EQ(one.log.absmax, many.log.absmax);
  EXPECT_EQ(one.log.fallbacks, many.log.fallbacks);
  EXPECT_EQ(!one.log.fallbacks.empty(), c.guarded);
  EXPECT_EQ(one.log.parts, many.log.parts);
  // The caches too: one more (per-step) forward reads them.
  const int32_t t[1] = {7};
  std::vector<float> la, lb;
  ASSERT_TRUE(m.Forward({{one.kv[0].get(), t}}, &la, per_step).ok());
  ASSERT_TRUE(m.Forward({{many.kv[0].get(), t}}, &lb, per_step).ok());
  EXPECT_EQ(la, lb);
}

QuantOptions W8(ActQuantMode mode) {
  QuantOptions q;
  q.w8a8 = true;
  q.mode = mode;
  q.warmup_rows = 8;
  return q;
}

QuantOptions W4() {
  QuantOptions q = W8(ActQuantMode::kPerTokenDynamic);
  q.w4_everywhere = true;
  return q;
}

// Static scales at 1.0 with a guard at 1x: the rows above go to FP32.
QuantOptions Guarded() {
  QuantOptions q = W8(ActQuantMode::kPerTensorStatic);
  q.guard_factor = 1.0f;
  for (int l = 0; l < 2; ++l) {
    for (Site s : kAllSites) q.static_absmax[{l, s}] = 1.0f;
  }
  return q;
}

TinyLlamaSpec Qwen2() {
  TinyLlamaSpec s;
  s.arch = "qwen2";
  return s;
}

TinyLlamaSpec LongContext() {
  TinyLlamaSpec s;
  s.context = 2560;
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    Plans, ModelTeamTest,
    ::testing::Values(
        Case{"w8a8_per_token", {}, W8(ActQuantMode::kPerTokenDynamic), 9},
        Case{"w8a8_per_tensor", {}, W8(ActQuantMode::kPerTensorDynamic), 9},
        Case{"w4a8", {}, W4(), 9},
        Case{"static_with_guard", {}, Guarded(), 9, true},
        Case{"qwen2_biases", Qwen2(), W8(ActQuantMode::kPerTokenDynamic), 9},
        // 2200 cached positions: a decode row's attention is 2200 x 4
        // heads x 2 x 16 >= 2^18 multiply-adds, so its items are split over
        // the team.
        Case{"long_context", LongContext(), W4(), 2200}),
    [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

}  // namespace
}  // namespace spikeserve
