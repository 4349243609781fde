#include "runtime/serving/sampler.h"

#include <cmath>
#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace spikeserve {
namespace {

using ::testing::HasSubstr;

const std::vector<float> kLogits = {1.0f, 3.0f, 2.0f, -1.0f, 2.5f};

TEST(Sampler, GreedyPicksArgmaxWithLogprob) {
  Sampler s({}, {});
  SampledToken t = s.Sample(kLogits);
  EXPECT_EQ(t.id, 1);
  double z = 0;
  for (float l : kLogits) z += std::exp(l);
  EXPECT_NEAR(t.logprob, 3.0 - std::log(z), 1e-6);
}

TEST(Sampler, TopKOneIsGreedyAtAnyTemperature) {
  Sampler s({.temperature = 5.0f, .top_k = 1, .seed = 9}, {});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(kLogits).id, 1);
}

TEST(Sampler, TinyTopPIsGreedy) {
  Sampler s({.temperature = 1.0f, .top_p = 0.01f, .seed = 3}, {});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(kLogits).id, 1);
}

// min_p = 0.5 keeps tokens with p >= 0.5 p_max: e^2.5/e^3 = 0.61 passes,
// e^2/e^3 = 0.37 does not. So only ids 1 and 4 can appear.
TEST(Sampler, MinPKeepsOnlyLikelyTokens) {
  Sampler s({.temperature = 1.0f, .min_p = 0.5f, .seed = 4}, {});
  std::map<int, int> seen;
  for (int i = 0; i < 400; ++i) ++seen[s.Sample(kLogits).id];
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[1], 0);
  EXPECT_GT(seen[4], 0);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferent) {
  std::vector<int> a, b, c;
  Sampler sa({.temperature = 1.0f, .seed = 42}, {});
  Sampler sb({.temperature = 1.0f, .seed = 42}, {});
  Sampler sc({.temperature = 1.0f, .seed = 43}, {});
  for (int i = 0; i < 64; ++i) {
    a.push_back(sa.Sample(kLogits).id);
    b.push_back(sb.Sample(kLogits).id);
    c.push_back(sc.Sample(kLogits).id);
  }
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

// At temperature 1 the empirical frequencies follow softmax(logits): with
// 20000 draws each frequency is within 0.02 of its probability (> 6 sigma).
TEST(Sampler, TemperatureOneFollowsSoftmax) {
  Sampler s({.temperature = 1.0f, .seed = 1}, {});
  std::vector<int> counts(kLogits.size());
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[s.Sample(kLogits).id];
  double z = 0;
  for (float l : kLogits) z += std::exp(l);
  for (size_t i = 0; i < kLogits.size(); ++i) {
    EXPECT_NEAR(double(counts[i]) / n, std::exp(kLogits[i]) / z, 0.02) << i;
  }
}

// Hand-checked penalties. Prompt has token 1; output will contain token 2.
TEST(Sampler, PenaltiesAsDefined) {
  // repetition 2: token 1 (logit 3 > 0) becomes 1.5, below token 4 (2.5).
  Sampler rep({.repetition_penalty = 2.0f}, {1});
  EXPECT_EQ(rep.Sample(kLogits).id, 4);
  // presence 1 + frequency 0.5: after sampling token 1 once, its logit is
  // 3 - 1.5 = 1.5 < 2.5, so the next greedy pick is 4.
  Sampler pf({.presence_penalty = 1.0f, .frequency_penalty = 0.5f}, {});
  EXPECT_EQ(pf.Sample(kLogits).id, 1);
  EXPECT_EQ(pf.Sample(kLogits).id, 4);
  // Negative logits are multiplied: -1 * 2 = -2 (rank unchanged, logprob
  // visible through top-n).
  Sampler neg({.repetition_penalty = 2.0f}, {3});
  std::vector<SampledToken> top;
  neg.Sample(kLogits, 5, &top);
  ASSERT_EQ(top.size(), 5u);
  EXPECT_EQ(top[4].id, 3);
  double z = 0;
  for (float l : {1.0f, 3.0f, 2.0f, -2.0f, 2.5f}) z += std::exp(l);
  EXPECT_NEAR(top[4].logprob, -2.0 - std::log(z), 1e-5);
}

// OpenAI's logit_bias, added after the penalties: +2 lifts token 2 (2 -> 4)
// over token 1 (3); -100 on token 1 leaves token 4 (2.5) on top, and the
// logprobs are of the biased logits.
TEST(Sampler, LogitBiasAddsToTheLogits) {
  Sampler up({.logit_bias = {{2, 2.0f}}}, {});
  EXPECT_EQ(up.Sample(kLogits).id, 2);
  Sampler ban({.logit_bias = {{1, -100.0f}}}, {});
  const SampledToken t = ban.Sample(kLogits);
  EXPECT_EQ(t.id, 4);
  double z = 0;
  for (float l : {1.0f, -97.0f, 2.0f, -1.0f, 2.5f}) z += std::exp(l);
  EXPECT_NEAR(t.logprob, 2.5 - std::log(z), 1e-5);
  // After a repetition penalty of 2 on token 1 (3 -> 1.5), +0.75 gives
  // 2.25 < 2.5: the penalty came first.
  Sampler both({.repetition_penalty = 2.0f, .logit_bias = {{1, 0.75f}}}, {1});
  EXPECT_EQ(both.Sample(kLogits).id, 4);
  // At a temperature, -100 makes a token all but impossible.
  Sampler hot({.temperature = 1.0f, .seed = 3, .logit_bias = {{1, -100.0f}}},
              {});
  for (int i = 0; i < 200; ++i) EXPECT_NE(hot.Sample(kLogits).id, 1);
}

// Issue 23 D8: whatever penalty reaches the sampler, logprobs stay finite
// (a penalized logit is kept within float range, never infinite).
TEST(Sampler, ExtremePenaltiesKeepLogprobsFinite) {
  for (float penalty : {1e-45f, 1e-38f, 0.01f, 10.0f, 1e38f}) {
    for (float temperature : {0.0f, 1.0f}) {
      Sampler s({.temperature = temperature, .repetition_penalty = penalty},
                {1, 2, 3, 4});
      std::vector<SampledToken> top;
      const SampledToken t = s.Sample(kLogits, 5, &top);
      EXPECT_TRUE(std::isfinite(t.logprob)) << penalty << " " << temperature;
      for (const SampledToken& alt : top) {
        EXPECT_TRUE(std::isfinite(alt.logprob)) << penalty;
      }
    }
  }
}

TEST(Sampler, TopNIsSortedLogSoftmax) {
  Sampler s({}, {});
  std::vector<SampledToken> top;
  s.Sample(kLogits, 3, &top);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].id, 1);
  EXPECT_EQ(top[1].id, 4);
  EXPECT_EQ(top[2].id, 2);
  EXPECT_GT(top[0].logprob, top[1].logprob);
}

struct BadParams {
  SamplingParams p;
  const char* field;
};

TEST(Sampler, ValidationNamesTheField) {
  const BadParams cases[] = {
      {{.temperature = -1}, "temperature"},
      {{.temperature = NAN}, "temperature"},
      {{.top_k = -3}, "top_k"},
      {{.top_p = 0}, "top_p"},
      {{.top_p = 1.5}, "top_p"},
      {{.min_p = 1}, "min_p"},
      {{.repetition_penalty = 0}, "repetition_penalty"},
      // Issue 23 D8: tiny penalties divided positive logits to infinity.
      {{.repetition_penalty = 1e-45f}, "repetition_penalty = 1.4013e-45"},
      {{.repetition_penalty = 1e-38f}, "repetition_penalty = 1e-38"},
      {{.repetition_penalty = 0.001f},
       "repetition_penalty = 0.001 is outside the allowed range [0.01, 10]"},
      {{.repetition_penalty = NAN}, "repetition_penalty"},
      {{.presence_penalty = 3}, "presence_penalty"},
      {{.frequency_penalty = -2.5}, "frequency_penalty"},
      {{.logit_bias = {{7, 101.0f}}},
       "logit_bias[7] = 101 is outside the allowed range [-100, 100]"},
      {{.logit_bias = {{7, NAN}}}, "logit_bias[7]"},
      {{.logit_bias = std::vector<std::pair<int32_t, float>>(1025, {0, 1.0f})},
       "logit_bias has 1025 tokens; at most 1024"},
  };
  for (const BadParams& c : cases) {
    absl::Status s = ValidateSamplingParams(c.p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(s.message(), HasSubstr(std::string("sampling.") + c.field));
  }
  EXPECT_TRUE(ValidateSamplingParams({}).ok());
}

}  // namespace
}  // namespace spikeserve
