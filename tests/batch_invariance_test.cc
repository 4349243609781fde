// Same request, same tokens (issue 23 D1): a greedy request's tokens must
// not depend on how its rows are grouped into forward calls: a cold cache or
// a prefix-cache hit, the chunk size of chunked prefill, or the other
// requests that share its batch. Checked on the default model with the
// default plan, with plain W8A8 (per-token scales, no plan), the two ways
// the server runs it by default, with a plan that keeps modules unquantized
// (QFeM: their FP32 or BF16 kernels) and with the FP32 model.
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/quant/quant_plan.h"
#include "runtime/serving/engine.h"
#include "runtime/serving/model_bundle.h"
#include "tests/fixtures/update_collector.h"
#include "tests/golden_util.h"

namespace spikeserve {
namespace {

using ::spikeserve::testing::DefaultModelPath;

constexpr int kNewTokens = 48;

using Collector = ::spikeserve::testing::UpdateCollector;

std::string ChatPrompt(const std::string& user) {
  std::string system;
  for (int i = 0; i < 12; ++i) {
    system += "You are a helpful assistant. Answer carefully and in detail. ";
  }
  return "<|im_start|>system\n" + system + "<|im_end|>\n<|im_start|>user\n" +
         user + "<|im_end|>\n<|im_start|>assistant\n";
}

struct Case {
  std::string name;
  enum Kind {
    kDefaultPlan,  // plans/smollm2-135m-instruct.json
    kNoPlan,       // plain W8A8, per-token dynamic
    kQfemPlan,     // the default plan with three modules kept unquantized
    kQfemBf16,     // the same in BF16, with a BF16 lm_head
    kFp32,         // --quant fp32
  } kind;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class BatchInvarianceTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const std::string model = DefaultModelPath();
    SPIKESERVE_REQUIRE_FILE(model);
    QuantOptions base;
    base.lm_head = FastestLmHead();  // the server's --lm_head auto
    absl::StatusOr<ModelBundle> bundle;
    const Case::Kind kind = GetParam().kind;
    if (kind == Case::kDefaultPlan || kind == Case::kQfemPlan ||
        kind == Case::kQfemBf16) {
      const std::string plan_path = std::string(SPIKESERVE_SOURCE_DIR) +
                                    "/plans/smollm2-135m-instruct.json";
      absl::StatusOr<v1::QuantPlan> plan = ReadQuantPlan(plan_path);
      ASSERT_TRUE(plan.ok()) << plan.status();
      if (kind != Case::kDefaultPlan) {
        // The sites calibrate's QFeM search picks first on this model
        // (the largest spike ratios).
        ASSERT_EQ(plan->qfem().modules_size(), 0);
        for (const char* m : {"0.qkv", "1.down", "29.down"}) {
          plan->mutable_qfem()->add_modules(m);
        }
        plan->mutable_qfem()->set_bf16(kind == Case::kQfemBf16);
        if (kind == Case::kQfemBf16) base.lm_head = LmHeadPrecision::kBf16;
      }
      bundle = LoadModelBundle(model, *plan, base);
    } else if (kind == Case::kNoPlan) {
      base.w8a8 = true;
      base.mode = ActQuantMode::kPerTokenDynamic;
      bundle = LoadModelBundle(model, base);
    } else {
      base.lm_head = LmHeadPrecision::kFp32;
      bundle = LoadModelBundle(model, base);
    }
    ASSERT_TRUE(bundle.ok()) << bundle.status();
    bundle_ = *std::move(bundle);
  }

  std::unique_ptr<Engine> Start(int max_batch_tokens, bool prefix_caching) {
    EngineOptions o;
    o.kv_blocks = 512;
    o.max_batch_tokens = max_batch_tokens;
    o.prefix = bundle_.qfep_prefix;
    o.prefix_caching = prefix_caching;
    auto e = Engine::Create(bundle_.model.get(), bundle_.tokenizer.get(), o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *std::move(e) : nullptr;
  }

  std::vector<int32_t> Tokens(const std::string& user) {
    auto ids =
        bundle_.tokenizer->Encode(ChatPrompt(user),
                                  /*add_special=*/bundle_.qfep_prefix.empty(),
                                  /*parse_special=*/true);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<int32_t>{};
  }

  static GenerationRequest Greedy(const std::string& id,
                                  std::vector<int32_t> prompt) {
    GenerationRequest r;
    r.id = id;
    r.prompt = std::move(prompt);
    r.stopping.max_new_tokens = kNewTokens;
    r.stopping.ignore_eos = true;
    return r;
  }

  // Runs one request on `e` and returns its result.
  Collector::Result Run(Engine* e, const std::string& id,
                        const std::vector<int32_t>& prompt) {
    Collector c;
    absl::Status s = e->Submit(Greedy(id, prompt), c.For(id));
    EXPECT_TRUE(s.ok()) << s;
    if (!s.ok()) return {};
    Collector::Result r = c.Wait(id);
    EXPECT_TRUE(r.final.status.ok()) << r.final.status;
    return r;
  }

  ModelBundle bundle_;
};

TEST_P(BatchInvarianceTest, SameRequestSameTokens) {
  const std::vector<int32_t> prompt =
      Tokens("Tell me the history of the Roman empire in three paragraphs.");
  ASSERT_GT(prompt.size(), 150u);

  // (a) alone on a cold cache, (b) again, now hitting the prefix cache.
  std::unique_ptr<Engine> e = Start(512, true);
  ASSERT_NE(e, nullptr);
  const Collector::Result cold = Run(e.get(), "cold", prompt);
  ASSERT_EQ(cold.tokens.size(), size_t(kNewTokens));
  EXPECT_EQ(cold.final.cached_tokens, 0);
  const Collector::Result hit = Run(e.get(), "hit", prompt);
  EXPECT_GT(hit.final.cached_tokens, 100);
  EXPECT_EQ(hit.tokens, cold.tokens) << "prefix-cache hit";

  // (c) chunked prefill in chunks of 16, 64 and 512 tokens.
  for (int chunk : {16, 64, 512}) {
    std::unique_ptr<Engine> ec = Start(chunk, false);
    ASSERT_NE(ec, nullptr);
    EXPECT_EQ(Run(ec.get(), "chunk", prompt).tokens, cold.tokens)
        << "chunks of " << chunk;
  }

  // (d) among 7 concurrent requests that share its system prompt (on a
  // fresh engine, so that some hit the cache the others filled).
  const char* kOthers[] = {
      "What is the capital of France?",
      "Write a haiku about autumn leaves.",
      "Explain how a bicycle stays upright.",
      "List three uses of copper.",
      "Why is the sky blue?",
      "Give me a recipe for pancakes.",
      "Summarize the plot of Hamlet in two sentences.",
  };
  std::unique_ptr<Engine> eb = Start(512, true);
  ASSERT_NE(eb, nullptr);
  Collector c;
  for (int i = 0; i < 7; ++i) {
    const std::string id = "other" + std::to_string(i);
    ASSERT_TRUE(eb->Submit(Greedy(id, Tokens(kOthers[i])), c.For(id)).ok());
    if (i == 3) {
      ASSERT_TRUE(eb->Submit(Greedy("target", prompt), c.For("target")).ok());
    }
  }
  const Collector::Result target = c.Wait("target");
  for (int i = 0; i < 7; ++i) c.Wait("other" + std::to_string(i));
  EXPECT_TRUE(target.final.status.ok()) << target.final.status;
  EXPECT_EQ(target.tokens, cold.tokens) << "among 7 concurrent requests";
  // They did share steps: one after another, 8 requests of 48 tokens would
  // take at least 8 x 48 steps.
  EXPECT_LT(eb->Stats().steps, 2 * kNewTokens);
}

INSTANTIATE_TEST_SUITE_P(
    DefaultModel, BatchInvarianceTest,
    ::testing::Values(Case{"DefaultPlan", Case::kDefaultPlan},
                      Case{"W8a8NoPlan", Case::kNoPlan},
                      Case{"QfemPlan", Case::kQfemPlan},
                      Case{"QfemBf16", Case::kQfemBf16},
                      Case{"Fp32", Case::kFp32}),
    [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

}  // namespace
}  // namespace spikeserve
