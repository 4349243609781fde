// Splitting text at special tokens (runtime/text/special_split.h): the
// one-pass form gives exactly what the literal, one-search-per-special form
// gives, on texts dense with overlapping, nested and whitespace-eating
// specials.
#include "runtime/text/special_split.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace spikeserve {
namespace {

std::string Show(const std::vector<SpecialPiece>& pieces) {
  std::string out;
  for (const SpecialPiece& p : pieces) {
    out += p.token >= 0 ? "[" + std::to_string(p.token) + "]"
                        : "'" + std::string(p.text) + "'";
  }
  return out;
}

TEST(SpecialSplit, OnePassEqualsTheLiteralOrder) {
  // Longest first, as the tokenizer orders them; ties keep this order.
  const SpecialSplitter splitter({
      {"<|a|>", 0, false, true},
      {"<|ab", 1, true, false},
      {"a|><", 2, false, false},
      {"<|a", 3, false, true},
      {"b b", 4, true, false},
      {"<|", 5, false, false},
      {"|>", 6, false, true},
      {"aa", 7, false, false},
      {"a", 8, false, true},
  });
  const char* const parts[] = {"<|a|>", "<|ab", "a|><", "<|", "|>", "a", "b",
                               " ",     "  ",   "\n",   "x",  "<",  "|"};
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::string text;
    const int n = int(rng() % 12);
    for (int j = 0; j < n; ++j) text += parts[rng() % std::size(parts)];
    for (bool control : {false, true}) {
      ASSERT_EQ(Show(splitter.Split(text, control)),
                Show(splitter.SplitSequential(text, control)))
          << "text '" << text << "', control " << control;
    }
  }
}

// Hand-checkable cases: the longer special wins where it starts later; a
// special eats the whitespace after it; control specials wait for
// parse_control.
TEST(SpecialSplit, LongerFirstWhitespaceAndControl) {
  const SpecialSplitter splitter({
      {"bcd", 0, false, false},
      {"ab", 1, true, false},
      {"<c>", 2, false, true},
  });
  EXPECT_EQ(Show(splitter.Split("abcd", true)), "'a'[0]");
  EXPECT_EQ(Show(splitter.Split("ab  x<c>y", true)), "[1]'x'[2]'y'");
  EXPECT_EQ(Show(splitter.Split("ab  x<c>y", false)), "[1]'x<c>y'");
  EXPECT_TRUE(splitter.Split("", true).empty());
}

}  // namespace
}  // namespace spikeserve
