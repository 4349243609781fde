// The default model's tokenizer against llama.cpp: token ids of every
// string in tests/golden/smollm2_tokenizer.json (made by
// tests/golden/make_goldens.py), and decode(encode(s)) == s.
#include "gtest/gtest.h"
#include "runtime/gguf/gguf_reader.h"
#include "runtime/text/tokenizer.h"
#include "runtime/text/tokenizer_spec.h"
#include "tests/golden_util.h"

namespace spikeserve {
namespace {

using ::spikeserve::testing::DefaultModelPath;
using ::spikeserve::testing::GoldenPath;
using ::spikeserve::testing::ReadJson;

TEST(TokenizerGolden, MatchesLlamaCppOnEveryString) {
  const std::string model = DefaultModelPath();
  const std::string golden = GoldenPath("smollm2_tokenizer.json");
  SPIKESERVE_REQUIRE_FILE(model);
  SPIKESERVE_REQUIRE_FILE(golden);
  auto file = GgufFile::Open(model);
  ASSERT_TRUE(file.ok()) << file.status();
  auto spec = LoadTokenizerSpec(**file);
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto tok = Tokenizer::Create(*std::move(spec));
  ASSERT_TRUE(tok.ok()) << tok.status();
  int checked = 0, mismatched = 0;
  const nlohmann::json cases = ReadJson(golden)["cases"];
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const auto want = c["ids"].get<std::vector<int32_t>>();
    auto got =
        (*tok)->Encode(text, /*add_special=*/false, /*parse_special=*/true);
    ASSERT_TRUE(got.ok()) << got.status();
    if (*got != want) ++mismatched;
    EXPECT_EQ(*got, want) << "text: " << ::testing::PrintToString(text);
    EXPECT_EQ(*(*tok)->Decode(*got), text);
    ++checked;
  }
  std::printf("tokenizer golden: %d strings, %d mismatched\n", checked,
              mismatched);
  EXPECT_GE(checked, 200);
}

}  // namespace
}  // namespace spikeserve
