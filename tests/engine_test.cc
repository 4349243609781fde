#include "runtime/serving/engine.h"

#include <condition_variable>
#include <map>
#include <mutex>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/text/tokenizer_spec.h"
#include "tests/fixtures/gguf_builder.h"
#include "tests/fixtures/update_collector.h"

namespace spikeserve {
namespace {

using ::spikeserve::testing::TinyLlama;
using ::testing::HasSubstr;

using Collector = ::spikeserve::testing::UpdateCollector;

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bytes_ = TinyLlama({.layers = 2, .context = 256}).Build();
    file_ = *GgufFile::FromBuffer(
        reinterpret_cast<const uint8_t*>(bytes_.data()), bytes_.size());
    model_ = *Model::Load(file_);
    tok_ = *Tokenizer::Create(*LoadTokenizerSpec(*file_));
  }
  std::unique_ptr<Engine> Start(EngineOptions o) {
    auto e = Engine::Create(model_.get(), tok_.get(), std::move(o));
    EXPECT_TRUE(e.ok()) << e.status();
    return *std::move(e);
  }
  // Greedy continuation computed directly with the model (the reference).
  std::vector<int32_t> DirectGreedy(const std::vector<int32_t>& prefix,
                                    const std::vector<int32_t>& prompt, int n) {
    auto pool = *model_->NewKvPool(64, 16);
    SequenceKv kv(pool.get());
    std::vector<int32_t> all = prefix;
    all.insert(all.end(), prompt.begin(), prompt.end());
    std::vector<float> logits;
    EXPECT_TRUE(model_->Forward({{&kv, all, false}}, &logits).ok());
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) {
      const int32_t t = int32_t(std::max_element(logits.begin(), logits.end()) -
                                logits.begin());
      out.push_back(t);
      EXPECT_TRUE(model_->Forward({{&kv, {t}, false}}, &logits).ok());
    }
    return out;
  }
  static GenerationRequest Request(const std::string& id,
                                   std::vector<int32_t> prompt, int n) {
    GenerationRequest r;
    r.id = id;
    r.prompt = std::move(prompt);
    r.stopping.max_new_tokens = n;
    r.stopping.ignore_eos = true;
    return r;
  }
  static std::vector<int32_t> Prompt(int n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> p(n);
    for (auto& t : p) t = int32_t(32 + rng() % 200);
    return p;
  }

  std::string bytes_;
  std::shared_ptr<GgufFile> file_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(EngineTest, GreedyMatchesDirectModelAndReportsUsage) {
  auto e = Start({.kv_blocks = 64});
  Collector c;
  const auto prompt = Prompt(20, 1);
  ASSERT_TRUE(e->Submit(Request("a", prompt, 12), c.For("a")).ok());
  const auto r = c.Wait("a");
  EXPECT_EQ(r.tokens, DirectGreedy({}, prompt, 12));
  EXPECT_EQ(r.final.finish_reason, FinishReason::kLength);
  EXPECT_EQ(r.final.prompt_tokens, 20);
  EXPECT_EQ(r.final.completion_tokens, 12);
  // Text is the streaming detokenization: valid UTF-8 (a random model emits
  // stray bytes, which become U+FFFD).
  StreamingDetokenizer d(tok_.get(), false);
  std::string want;
  for (int32_t t : r.tokens) want += *d.Push(t);
  want += d.Flush();
  EXPECT_EQ(r.text, want);
  EXPECT_GE(r.final.total_seconds, r.final.ttft_seconds);
}

// Batch invariance (greedy): 8 requests together give the tokens each
// gives alone; and chunked prefill (budget 8 tokens per step) too.
TEST_F(EngineTest, BatchInvariance) {
  std::vector<std::vector<int32_t>> alone(8);
  for (int i = 0; i < 8; ++i)
    alone[i] = DirectGreedy({}, Prompt(10 + 3 * i, 10 + i), 10);
  for (int budget : {512, 8}) {
    auto e = Start({.kv_blocks = 128, .max_batch_tokens = budget});
    Collector c;
    for (int i = 0; i < 8; ++i) {
      const std::string id = "r" + std::to_string(i);
      ASSERT_TRUE(
          e->Submit(Request(id, Prompt(10 + 3 * i, 10 + i), 10), c.For(id))
              .ok());
    }
    for (int i = 0; i < 8; ++i) {
      EXPECT_EQ(c.Wait("r" + std::to_string(i)).tokens, alone[i])
          << "request " << i << " budget " << budget;
    }
  }
}

// The QFeP prefix sits in the same pinned blocks for every sequence, the
// output equals running prefix + prompt directly, and KV usage returns to
// its idle value (prefix + prefix cache) when requests end.
TEST_F(EngineTest, SharedPrefixAndIdleKv) {
  const std::vector<int32_t> prefix = {298, 40, 41};
  auto e = Start({.kv_blocks = 256, .prefix = prefix});
  const EngineStats idle = e->Stats();
  ASSERT_EQ(idle.prefix_blocks.size(), 1u);
  EXPECT_EQ(idle.kv_blocks_used, 1);
  Collector c;
  for (int i = 0; i < 16; ++i) {
    const std::string id = "s" + std::to_string(i);
    ASSERT_TRUE(e->Submit(Request(id, Prompt(9, 100 + i), 6), c.For(id)).ok());
  }
  for (int i = 0; i < 16; ++i) {
    const auto r = c.Wait("s" + std::to_string(i));
    EXPECT_EQ(r.tokens, DirectGreedy(prefix, Prompt(9, 100 + i), 6)) << i;
  }
  const EngineStats s = e->Stats();
  EXPECT_EQ(s.prefix_blocks, idle.prefix_blocks);
  EXPECT_EQ(s.kv_blocks_used, 1 + s.kv_blocks_cached);
}

TEST_F(EngineTest, PrefixCacheReusesPromptBlocks) {
  auto e = Start({.kv_blocks = 128});
  Collector c;
  std::vector<int32_t> shared = Prompt(64, 7);
  std::vector<int32_t> a = shared, b = shared;
  a.push_back(50);
  b.push_back(60);
  ASSERT_TRUE(e->Submit(Request("a", a, 4), c.For("a")).ok());
  EXPECT_EQ(c.Wait("a").final.cached_tokens, 0);
  ASSERT_TRUE(e->Submit(Request("b", b, 4), c.For("b")).ok());
  const auto rb = c.Wait("b");
  EXPECT_EQ(rb.final.cached_tokens, 64);
  EXPECT_EQ(rb.tokens, DirectGreedy({}, b, 4));
  EXPECT_EQ(e->Stats().prefix_cache_hit_tokens, 64);
}

// Every block at the same depth has the same hash here: the worst case of
// a hash a client could collide on purpose (as in vLLM's CVE-2025-25183).
// A block cached after another client's different first block must not be
// reused after ours: the parent entry must be the one we matched.
uint64_t DepthHash(uint64_t parent, const int32_t*, int) { return parent + 1; }

// a + b + {last}.
std::vector<int32_t> Cat(std::vector<int32_t> a, const std::vector<int32_t>& b,
                         int32_t last) {
  a.insert(a.end(), b.begin(), b.end());
  a.push_back(last);
  return a;
}

TEST_F(EngineTest, PrefixCacheCollisionsNeverShareAnotherPrefixsKv) {
  auto e = Start({.kv_blocks = 128, .block_hash = &DepthHash});
  Collector c;
  const std::vector<int32_t> v0 = Prompt(16, 1), other = Prompt(16, 2),
                             b1 = Prompt(16, 3);
  std::vector<int32_t> system = v0;
  system.push_back(40);
  ASSERT_TRUE(e->Submit(Request("system", system, 2), c.For("system")).ok());
  c.Wait("system");  // caches v0
  // Another client: a different first block under v0's hash, then b1.
  const std::vector<int32_t> attack = Cat(other, b1, 41);
  ASSERT_TRUE(e->Submit(Request("attack", attack, 2), c.For("attack")).ok());
  EXPECT_EQ(c.Wait("attack").final.cached_tokens, 0);
  // v0 + b1: v0 is reused, b1 (computed after `other`) is not.
  const std::vector<int32_t> victim = Cat(v0, b1, 42);
  ASSERT_TRUE(e->Submit(Request("victim", victim, 4), c.For("victim")).ok());
  const auto r = c.Wait("victim");
  EXPECT_EQ(r.final.cached_tokens, 16);
  EXPECT_EQ(r.tokens, DirectGreedy({}, victim, 4));
  // The same prefix again reuses both of its own blocks.
  std::vector<int32_t> again = victim;
  again.back() = 43;
  ASSERT_TRUE(e->Submit(Request("again", again, 4), c.For("again")).ok());
  const auto r2 = c.Wait("again");
  EXPECT_EQ(r2.final.cached_tokens, 32);
  EXPECT_EQ(r2.tokens, DirectGreedy({}, again, 4));
}

// The same attack after an eviction: block numbers are reused (the freed
// block is the next one handed out), so a cached block's parent must be
// identified by something never reused. X caches A (block a) and B after
// it; the attacker's C collides with A, and its admission evicts A and gets
// block a for C. B was computed after A and must not be found after C.
TEST_F(EngineTest, PrefixCacheCollisionsAfterAnEvictionNeverShareKv) {
  auto e = Start({.kv_blocks = 4, .block_hash = &DepthHash});
  Collector c;
  const std::vector<int32_t> a = Prompt(16, 1), b = Prompt(16, 3),
                             other = Prompt(16, 2);
  const std::vector<int32_t> first = Cat(a, b, 40);
  ASSERT_TRUE(e->Submit(Request("first", first, 2), c.For("first")).ok());
  c.Wait("first");  // caches A and B: 2 of the 4 blocks
  ASSERT_EQ(e->Stats().kv_blocks_cached, 2);
  const std::vector<int32_t> attack = Cat(other, b, 41);
  ASSERT_TRUE(e->Submit(Request("attack", attack, 2), c.For("attack")).ok());
  EXPECT_EQ(c.Wait("attack").final.cached_tokens, 0);
  const std::vector<int32_t> victim = Cat(other, b, 42);
  ASSERT_TRUE(e->Submit(Request("victim", victim, 4), c.For("victim")).ok());
  const auto r = c.Wait("victim");
  EXPECT_EQ(r.final.cached_tokens, 16);  // its own first block only
  EXPECT_EQ(r.tokens, DirectGreedy({}, victim, 4));
}

// A queue head that cannot fit yet waits without emptying the prefix
// cache (evicting could not have made room), and its lookups count once,
// when it is admitted, not at every step it waits.
TEST_F(EngineTest, AWaitingHeadKeepsThePrefixCacheAndItsCounts) {
  auto e = Start({.kv_blocks = 8});
  Collector c;
  std::vector<int32_t> cached = Prompt(32, 1);
  cached.push_back(40);
  ASSERT_TRUE(e->Submit(Request("cached", cached, 2), c.For("cached")).ok());
  c.Wait("cached");
  ASSERT_EQ(e->Stats().kv_blocks_cached, 2);
  // `long` takes the other 6 blocks (60 + 30 tokens); `head`, submitted at
  // its 5th token, needs 4 (50 + 8 tokens) where at most 3 could be freed.
  Engine* raw = e.get();
  auto long_cb = c.For("long");
  auto head_cb = c.For("head");
  int seen = 0;
  EngineStats at_submit, later;
  ASSERT_TRUE(
      e->Submit(Request("long", Prompt(60, 2), 30), [&, long_cb, head_cb](
                                                        const GenerationUpdate&
                                                            u) {
         long_cb(u);
         seen += int(u.tokens.size());
         if (seen == 5 && !u.tokens.empty()) {
           ASSERT_TRUE(
               raw->Submit(Request("head", Prompt(50, 3), 8), head_cb).ok());
           at_submit = raw->Stats();
         } else if (seen == 25 && !u.tokens.empty()) {
           later = raw->Stats();
         }
       }).ok());
  EXPECT_EQ(c.Wait("long").final.finish_reason, FinishReason::kLength);
  EXPECT_EQ(later.waiting, 1);  // the head waited all along
  EXPECT_EQ(later.kv_blocks_cached, 2);
  EXPECT_EQ(later.prefix_cache_query_tokens,
            at_submit.prefix_cache_query_tokens);
  const auto h = c.Wait("head");
  EXPECT_EQ(h.final.finish_reason, FinishReason::kLength);
  EXPECT_EQ(e->Stats().prefix_cache_query_tokens,
            at_submit.prefix_cache_query_tokens + 48);  // 3 blocks, once
}

TEST_F(EngineTest, AbortDeadlineAndInvalidPrompts) {
  auto e = Start({.kv_blocks = 64, .max_waiting = 2});
  Collector c;
  GenerationRequest late = Request("late", Prompt(5, 1), 50);
  late.deadline = absl::Now() - absl::Seconds(1);
  ASSERT_TRUE(e->Submit(late, c.For("late")).ok());
  EXPECT_EQ(c.Wait("late").final.finish_reason, FinishReason::kDeadline);

  // An abort from the request's own first update stops it early.
  Engine* raw = e.get();
  auto cb = c.For("long");
  ASSERT_TRUE(e->Submit(Request("long", Prompt(5, 2), 200),
                        [&, cb](const GenerationUpdate& u) {
                          cb(u);
                          if (!u.finished) raw->Abort("long");
                        })
                  .ok());
  const auto r = c.Wait("long");
  EXPECT_EQ(r.final.finish_reason, FinishReason::kAborted);
  EXPECT_LT(r.final.completion_tokens, 200);
  EXPECT_EQ(e->Stats().kv_blocks_used, e->Stats().kv_blocks_cached);

  EXPECT_EQ(e->Submit(Request("x", {}, 5), nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(e->Submit(Request("x", Prompt(250, 3), 50), nullptr).message(),
              HasSubstr("exceeds the context"));
}

// A model that computes a NaN logit (here: a NaN embedding row, reached only
// through its token) ends that request with an error that says so, while
// the request beside it in the batch decodes on. Sampling at a temperature
// read outside its candidate list on NaN logits.
TEST(EngineNonFinite, OnlyTheRequestWithNonFiniteLogitsFails) {
  constexpr int kHidden = 64, kVocab = 300, kBadToken = 77;
  testing::GgufBuilder b = TinyLlama({.layers = 2,
                                      .hidden = kHidden,
                                      .vocab = kVocab,
                                      .context = 256,
                                      .tied = false});
  std::vector<float> embd(size_t(kHidden) * kVocab);
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0.f, 1.f);
  for (float& x : embd) x = d(rng);
  std::fill_n(embd.begin() + size_t(kBadToken) * kHidden, kHidden, NAN);
  b.RemoveTensor("token_embd.weight");
  b.AddF32Tensor("token_embd.weight", {kHidden, kVocab}, embd);
  const std::string bytes = b.Build();
  std::shared_ptr<GgufFile> file = *GgufFile::FromBuffer(
      reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  auto model = *Model::Load(file);
  auto tok = *Tokenizer::Create(*LoadTokenizerSpec(*file));
  auto e = *Engine::Create(model.get(), tok.get(), {.kv_blocks = 64});
  Collector c;
  GenerationRequest bad, good;
  bad.id = "bad";
  bad.prompt = {40, 41, kBadToken, 42};
  good.id = "good";
  good.prompt = {40, 41, 43, 42};
  for (GenerationRequest* r : {&bad, &good}) {
    r->stopping.max_new_tokens = 4;
    r->stopping.ignore_eos = true;
    r->sampling.temperature = 0.8f;
    r->sampling.seed = 3;
    ASSERT_TRUE(e->Submit(*r, c.For(r->id)).ok());
  }
  const auto rb = c.Wait("bad");
  EXPECT_EQ(rb.final.status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(rb.final.status.message()),
              HasSubstr("non-finite logit"));
  EXPECT_TRUE(rb.tokens.empty());
  const auto rg = c.Wait("good");
  EXPECT_TRUE(rg.final.status.ok()) << rg.final.status;
  EXPECT_EQ(rg.final.finish_reason, FinishReason::kLength);
  EXPECT_EQ(rg.tokens.size(), 4u);
}

TEST_F(EngineTest, FullQueueAndDuplicateIdsAreRefused) {
  // One running slot; each request holds it for a long generation.
  auto e = Start({.kv_blocks = 64, .max_running = 1, .max_waiting = 2});
  Collector c;
  ASSERT_TRUE(e->Submit(Request("a", Prompt(5, 1), 100), c.For("a")).ok());
  EXPECT_EQ(e->Submit(Request("a", Prompt(5, 1), 5), nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status s;
  int accepted = 1;
  for (int i = 0; i < 5 && s.ok(); ++i) {
    s = e->Submit(Request("q" + std::to_string(i), Prompt(5, 1), 5),
                  c.For("q" + std::to_string(i)));
    if (s.ok()) ++accepted;
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_LE(accepted, 4);
  e->Shutdown();
  EXPECT_EQ(c.Wait("a").final.finish_reason == FinishReason::kAborted ||
                c.Wait("a").final.finish_reason == FinishReason::kLength,
            true);
  EXPECT_EQ(e->Submit(Request("z", Prompt(5, 1), 5), nullptr).code(),
            absl::StatusCode::kUnavailable);
}

// Stop strings end the text before them; stop token ids end generation.
TEST_F(EngineTest, StopSequencesAndTokens) {
  auto e = Start({.kv_blocks = 64});
  Collector c;
  const auto prompt = Prompt(12, 5);
  ASSERT_TRUE(e->Submit(Request("ref", prompt, 16), c.For("ref")).ok());
  const auto ref = c.Wait("ref");
  ASSERT_GE(ref.text.size(), 6u);
  const std::string stop = ref.text.substr(3, 2);
  GenerationRequest r = Request("stop", prompt, 16);
  r.stopping.stop_sequences = {stop};
  ASSERT_TRUE(e->Submit(r, c.For("stop")).ok());
  const auto got = c.Wait("stop");
  EXPECT_EQ(got.final.finish_reason, FinishReason::kStopSequence);
  EXPECT_EQ(got.text, ref.text.substr(0, ref.text.find(stop)));
  GenerationRequest t = Request("tok", prompt, 16);
  t.stopping.stop_token_ids = {ref.tokens[4]};
  ASSERT_TRUE(e->Submit(t, c.For("tok")).ok());
  const auto gt = c.Wait("tok");
  EXPECT_EQ(gt.final.finish_reason, FinishReason::kEosToken);
  const auto first =
      std::find(ref.tokens.begin(), ref.tokens.end(), ref.tokens[4]);
  EXPECT_EQ(gt.tokens.size(), size_t(first - ref.tokens.begin()) + 1);
}

// A pool too small for all sequences at once (16 blocks of 4 tokens; each
// request ends at 46 tokens = 12 blocks): the newest are preempted and
// recomputed, and every output still equals its run alone. The others are
// submitted from p0's first update, so they certainly overlap it.
TEST_F(EngineTest, PreemptionByRecomputeKeepsOutputs) {
  auto e = Start({.kv_blocks = 16, .block_tokens = 4, .max_running = 4});
  Collector c;
  std::vector<std::vector<int32_t>> want(4);
  for (int i = 0; i < 4; ++i) want[i] = DirectGreedy({}, Prompt(6, 30 + i), 40);
  Engine* raw = e.get();
  auto cb0 = c.For("p0");
  bool submitted = false;
  ASSERT_TRUE(
      e->Submit(Request("p0", Prompt(6, 30), 40), [&,
                                                   cb0](const GenerationUpdate&
                                                            u) {
         cb0(u);
         if (submitted) return;
         submitted = true;
         for (int i = 1; i < 4; ++i) {
           const std::string id = "p" + std::to_string(i);
           EXPECT_TRUE(
               raw->Submit(Request(id, Prompt(6, 30 + i), 40), c.For(id)).ok());
         }
       }).ok());
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(c.Wait("p" + std::to_string(i)).tokens, want[i]) << i;
  }
  EXPECT_GT(e->Stats().preemptions, 0);
  EXPECT_EQ(e->Stats().kv_blocks_used, e->Stats().kv_blocks_cached);
  // The cache counters count each prompt once, at its first admission:
  // (6 - 1) / 4 = 1 full block of 4 tokens looked up per request, however
  // often a preempted one comes back (with its generated tokens, and its
  // own prompt block cached by then). The four prompts differ, so none
  // reuses another's block.
  EXPECT_EQ(e->Stats().prefix_cache_query_tokens, 4 * 4);
  EXPECT_EQ(e->Stats().prefix_cache_hit_tokens, 0);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(c.Wait("p" + std::to_string(i)).final.cached_tokens, 0) << i;
  }
}

}  // namespace
}  // namespace spikeserve
