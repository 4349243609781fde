// Real vocabularies against llama.cpp, tokenized as llama.cpp's
// test-tokenizer-0 does (add_special = false, parse_special = false):
// - llama.cpp's own test vectors (tests/data/llama.cpp-vocab, copied from
//   llama.cpp; README there) for every vocabulary the README lists as
//   supported: each input of NAME.gguf.inp must give exactly the ids of the
//   same line of NAME.gguf.out;
// - tests/golden/vocab_goldens.json (tests/golden/make_vocab_goldens.py):
//   those inputs and random strings, tokenized by llama.cpp with the same
//   vocabularies and with test vocabularies of the pre-tokenizers llama.cpp
//   ships none for (llama-bpe, qwen2, default; tests/data/bpe-vocab); and
//   strings with special-token texts, tokenized with add_special and
//   parse_special on.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/gguf/gguf_reader.h"
#include "runtime/text/tokenizer.h"
#include "runtime/text/tokenizer_spec.h"

namespace spikeserve {
namespace {

std::string VocabPath(const std::string& name, const std::string& suffix) {
  return std::string(SPIKESERVE_SOURCE_DIR) +
         "/tests/data/llama.cpp-vocab/ggml-vocab-" + name + ".gguf" + suffix;
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The inputs, each followed by "\n__ggml_vocab_test__\n" (the split of
// llama.cpp's test-tokenizer-0).
std::vector<std::string> ReadInputs(const std::string& path) {
  static constexpr char kSep[] = "\n__ggml_vocab_test__\n";
  std::string s = ReadAll(path);
  std::vector<std::string> inputs;
  size_t start = 0;
  for (size_t at; (at = s.find(kSep, start)) != std::string::npos;) {
    inputs.push_back(s.substr(start, at - start));
    start = at + sizeof(kSep) - 1;
  }
  return inputs;
}

// One line of space-separated ids per input.
std::vector<std::vector<int32_t>> ReadOutputs(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::vector<int32_t>> outputs;
  for (std::string line; std::getline(f, line);) {
    std::istringstream ids(line);
    outputs.emplace_back();
    for (int32_t id; ids >> id;) outputs.back().push_back(id);
  }
  return outputs;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(
    const std::string& path) {
  auto file = GgufFile::Open(path);
  if (!file.ok()) return file.status();
  auto spec = LoadTokenizerSpec(**file);
  if (!spec.ok()) return spec.status();
  return Tokenizer::Create(*std::move(spec));
}

class VocabTest : public ::testing::TestWithParam<const char*> {};

TEST_P(VocabTest, EveryVectorMatchesLlamaCpp) {
  const std::string name = GetParam();
  auto tok = LoadTokenizer(VocabPath(name, ""));
  ASSERT_TRUE(tok.ok()) << tok.status();

  const std::vector<std::string> inputs = ReadInputs(VocabPath(name, ".inp"));
  const std::vector<std::vector<int32_t>> outputs =
      ReadOutputs(VocabPath(name, ".out"));
  ASSERT_EQ(inputs.size(), outputs.size());
  ASSERT_GE(inputs.size(), 40u);
  int passed = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto got = (*tok)->Encode(inputs[i], /*add_special=*/false,
                              /*parse_special=*/false);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, outputs[i]) << name << " vector " << i << ": "
                                << ::testing::PrintToString(inputs[i]);
    if (*got == outputs[i]) ++passed;
  }
  std::printf("%s: %d/%zu vectors pass\n", name.c_str(), passed, inputs.size());
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, VocabTest,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2",
                                           "starcoder", "deepseek-llm",
                                           "deepseek-coder", "falcon"),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           std::string n = p.param;
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

TEST(VocabGoldens, EveryStringMatchesLlamaCpp) {
  std::ifstream f(std::string(SPIKESERVE_SOURCE_DIR) +
                  "/tests/golden/vocab_goldens.json");
  ASSERT_TRUE(f.good());
  const nlohmann::json goldens = nlohmann::json::parse(f);
  const auto texts = goldens["texts"].get<std::vector<std::string>>();
  const auto special_texts =
      goldens["special_texts"].get<std::vector<std::string>>();
  ASSERT_GE(texts.size(), 150u);
  ASSERT_GE(special_texts.size(), 100u);
  ASSERT_GE(goldens["vocabs"].size(), 10u);
  for (const auto& [name, vocab] : goldens["vocabs"].items()) {
    auto tok = LoadTokenizer(std::string(SPIKESERVE_SOURCE_DIR) + "/" +
                             vocab["file"].get<std::string>());
    ASSERT_TRUE(tok.ok()) << name << ": " << tok.status();
    const auto want = vocab["ids"].get<std::vector<std::vector<int32_t>>>();
    ASSERT_EQ(want.size(), texts.size()) << name;
    int passed = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      auto got = (*tok)->Encode(texts[i], /*add_special=*/false,
                                /*parse_special=*/false);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, want[i]) << name << " string " << i << ": "
                               << ::testing::PrintToString(texts[i]);
      if (*got == want[i]) ++passed;
    }
    // With BOS/EOS as the file asks and special tokens parsed.
    const auto special_want =
        vocab["special_ids"].get<std::vector<std::vector<int32_t>>>();
    ASSERT_EQ(special_want.size(), special_texts.size()) << name;
    int special_passed = 0;
    for (size_t i = 0; i < special_texts.size(); ++i) {
      auto got = (*tok)->Encode(special_texts[i], /*add_special=*/true,
                                /*parse_special=*/true);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, special_want[i])
          << name << " special string " << i << ": "
          << ::testing::PrintToString(special_texts[i]);
      if (*got == special_want[i]) ++special_passed;
    }
    std::printf(
        "%s: %d/%zu strings match llama.cpp, %d/%zu with special tokens\n",
        name.c_str(), passed, texts.size(), special_passed,
        special_texts.size());
  }
}

}  // namespace
}  // namespace spikeserve
