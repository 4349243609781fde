// LastOccurrence against std::string::rfind (the quadratic reference) on
// hand-picked and random strings, and on the input that made rfind take
// minutes.
#include "base/last_occurrence.h"

#include <random>
#include <string>

#include "gtest/gtest.h"

namespace spikeserve {
namespace {

size_t Reference(const std::string& text, const std::string& pattern) {
  return pattern.empty() ? std::string::npos : text.rfind(pattern);
}

TEST(LastOccurrence, EqualsRfind) {
  const std::pair<const char*, const char*> cases[] = {
      {"", ""},
      {"abc", ""},
      {"", "a"},
      {"a", "a"},
      {"abc", "abcd"},
      {"abcabc", "abc"},
      {"aaaa", "aa"},
      {"abababa", "aba"},
      {"xyz", "q"},
      {"aabaabaab", "aab"},
      {"hello world", "o"},
      {"abcab", "cab"},
  };
  for (const auto& [text, pattern] : cases) {
    EXPECT_EQ(LastOccurrence(text, pattern), Reference(text, pattern))
        << "'" << text << "' '" << pattern << "'";
  }
  std::mt19937 rng(5);
  for (int trial = 0; trial < 20000; ++trial) {
    const int alphabet = 1 + int(rng() % 3);
    auto random = [&](size_t len) {
      std::string s(len, 'a');
      for (char& c : s) c = char('a' + rng() % alphabet);
      return s;
    };
    const std::string text = random(rng() % 40);
    const std::string pattern = random(1 + rng() % 6);
    ASSERT_EQ(LastOccurrence(text, pattern), Reference(text, pattern))
        << "'" << text << "' '" << pattern << "'";
  }
}

// rfind compares up to 1M bytes at each of 2M start positions here.
TEST(LastOccurrence, LinearOnAlmostMatchingText) {
  const std::string text(2000000, 'a');
  std::string pattern(1000000, 'a');
  pattern.push_back('b');
  EXPECT_EQ(LastOccurrence(text, pattern), std::string::npos);
  pattern.back() = 'a';
  EXPECT_EQ(LastOccurrence(text, pattern), text.size() - pattern.size());
}

}  // namespace
}  // namespace spikeserve
