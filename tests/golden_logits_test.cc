// FP32 forward of the default model against llama.cpp's F32 forward on the
// same (dequantized) weights; goldens from tests/golden/make_goldens.py.
#include <algorithm>
#include <cmath>

#include "gtest/gtest.h"
#include "runtime/model/model.h"
#include "tests/golden_util.h"

namespace spikeserve {
namespace {

using ::spikeserve::testing::DefaultModelPath;
using ::spikeserve::testing::GoldenPath;
using ::spikeserve::testing::ReadJson;

constexpr double kMaxLogitDiff = 1e-2;  // acceptance bound

TEST(GoldenLogits, Fp32MatchesLlamaCpp) {
  const std::string model_path = DefaultModelPath();
  const std::string golden_path = GoldenPath("smollm2_logits.json");
  SPIKESERVE_REQUIRE_FILE(model_path);
  SPIKESERVE_REQUIRE_FILE(golden_path);
  auto file = GgufFile::Open(model_path);
  ASSERT_TRUE(file.ok()) << file.status();
  auto model = Model::Load(*std::move(file));
  ASSERT_TRUE(model.ok()) << model.status();
  const int vocab = (*model)->config().vocab_size;
  auto pool = (*model)->NewKvPool(64, 16);
  ASSERT_TRUE(pool.ok());

  const auto golden = ReadJson(golden_path);
  double max_diff = 0;
  int positions = 0, prompts = 0;
  for (const auto& p : golden["prompts"]) {
    const std::vector<int32_t> ids = p["ids"].get<std::vector<int32_t>>();
    const auto top_ids = p["top_ids"].get<std::vector<std::vector<int32_t>>>();
    const auto top_logits =
        p["top_logits"].get<std::vector<std::vector<double>>>();
    ASSERT_EQ(top_ids.size(), ids.size());
    SequenceKv kv(pool->get());
    std::vector<float> logits;
    ASSERT_TRUE((*model)->Forward({{&kv, ids, true}}, &logits).ok());
    for (size_t t = 0; t < ids.size(); ++t) {
      const float* row = &logits[t * vocab];
      const int32_t ours = int32_t(std::max_element(row, row + vocab) - row);
      // Top-1 agrees unless llama.cpp's first two are a near tie.
      if (top_logits[t][0] - top_logits[t][1] > kMaxLogitDiff) {
        EXPECT_EQ(ours, top_ids[t][0]) << p["text"] << " position " << t;
      }
      for (size_t j = 0; j < top_ids[t].size(); ++j) {
        const double d = std::abs(row[top_ids[t][j]] - top_logits[t][j]);
        max_diff = std::max(max_diff, d);
        EXPECT_LE(d, kMaxLogitDiff)
            << "position " << t << " token " << top_ids[t][j];
      }
      ++positions;
    }
    // 32-token greedy continuation through the decode path.
    const auto want = p["greedy_ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> got;
    int32_t next =
        int32_t(std::max_element(logits.end() - vocab, logits.end()) -
                (logits.end() - vocab));
    for (size_t i = 0; i < want.size(); ++i) {
      got.push_back(next);
      if (i + 1 == want.size()) break;
      ASSERT_TRUE((*model)->Forward({{&kv, {next}, false}}, &logits).ok());
      next = int32_t(std::max_element(logits.begin(), logits.end()) -
                     logits.begin());
    }
    EXPECT_EQ(got, want) << p["text"];
    ++prompts;
  }
  EXPECT_GE(prompts, 5);
  std::printf("golden logits: %d prompts, %d positions, max |dlogit| = %.3g\n",
              prompts, positions, max_diff);
  ::testing::Test::RecordProperty("max_abs_logit_diff",
                                  std::to_string(max_diff));
}

}  // namespace
}  // namespace spikeserve
