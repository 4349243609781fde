// Each architecture against llama.cpp (issue 17, acceptance 2): small
// random-weight F32 GGUF files written with the `gguf` package, FP32 logits
// at every prompt position within 1e-3 (max |a - b| / max |b| over the
// vocabulary) and the same 32-token greedy continuation. Goldens and files:
// tests/golden/make_arch_goldens.py (llama-cpp-python).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/gguf/gguf_reader.h"
#include "runtime/model/model.h"
#include "tests/golden_util.h"

namespace spikeserve {
namespace {

std::string ArchDir() {
  return std::string(SPIKESERVE_SOURCE_DIR) + "/tests/data/arch/";
}

class ArchGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(ArchGolden, LogitsAndGreedyMatchLlamaCpp) {
  const nlohmann::json goldens = testing::ReadJson(ArchDir() + "goldens.json");
  const nlohmann::json* c = nullptr;
  for (const auto& x : goldens["cases"]) {
    if (x["name"] == GetParam()) c = &x;
  }
  ASSERT_NE(c, nullptr) << GetParam();
  auto file = GgufFile::Open(ArchDir() + (*c)["file"].get<std::string>());
  ASSERT_TRUE(file.ok()) << file.status();
  auto model = Model::Load(*std::move(file));
  ASSERT_TRUE(model.ok()) << model.status();
  const int vocab = (*model)->config().vocab_size;
  const std::vector<int32_t> prompt =
      goldens["prompt"].get<std::vector<int32_t>>();
  auto pool = (*model)->NewKvPool(16, 16);
  ASSERT_TRUE(pool.ok());
  SequenceKv kv(pool->get());
  std::vector<float> logits;
  ASSERT_TRUE((*model)->Forward({{&kv, prompt, true}}, &logits).ok());
  const auto& want = (*c)["logits"];
  ASSERT_EQ(want.size(), prompt.size());
  for (size_t t = 0; t < prompt.size(); ++t) {
    const std::vector<float> ref = want[t].get<std::vector<float>>();
    ASSERT_EQ(int(ref.size()), vocab);
    double diff = 0, scale = 0;
    for (int v = 0; v < vocab; ++v) {
      diff = std::max(diff, std::abs(double(logits[t * vocab + v]) - ref[v]));
      scale = std::max(scale, std::abs(double(ref[v])));
    }
    EXPECT_LT(diff / scale, 1e-3) << "position " << t;
  }
  // Greedy continuation, token by token through the cache.
  std::vector<int32_t> greedy;
  const float* last = &logits[(prompt.size() - 1) * vocab];
  std::vector<float> step(last, last + vocab);
  for (size_t i = 0; i < (*c)["greedy"].size(); ++i) {
    const int32_t next =
        int32_t(std::max_element(step.begin(), step.end()) - step.begin());
    greedy.push_back(next);
    const int32_t one[1] = {next};
    ASSERT_TRUE((*model)->Forward({{&kv, one}}, &step).ok());
  }
  EXPECT_EQ(greedy, (*c)["greedy"].get<std::vector<int32_t>>());
}

INSTANTIATE_TEST_SUITE_P(Archs, ArchGolden,
                         ::testing::Values("llama3", "mistral", "qwen2"),
                         [](const auto& i) { return i.param; });

}  // namespace
}  // namespace spikeserve
