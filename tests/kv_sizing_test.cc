#include "runtime/serving/kv_sizing.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace spikeserve {
namespace {

using ::testing::HasSubstr;

TEST(KvSizing, BytesPerTokenByHand) {
  // SmolLM2-135M: 30 layers, 3 KV heads of 64: 30 x 2 x 192 x 4 bytes.
  EXPECT_EQ(KvBytesPerToken(30, 192), 46080);
  // Llama-3.1-8B: 32 layers, 8 KV heads of 128.
  EXPECT_EQ(KvBytesPerToken(32, 1024), 262144);
}

struct Case {
  std::string spec;
  int64_t available;
  int blocks;         // expected, when error is empty
  std::string error;  // substring of the message
};

TEST(KvSizing, BlocksForBytes) {
  // One block: 16 tokens x 1024 bytes = 16 KiB.
  const std::vector<Case> cases = {
      {"16384", -1, 1, ""},
      {"1M", -1, 64, ""},
      {"1m", -1, 64, ""},
      {" 2G ", -1, 131072, ""},
      {"1.5K", -1, 0, "smaller than one KV block (16384 bytes)"},
      {"50%", 1 << 30, 32768, ""},
      {"100%", 16384 * 3 + 5, 3, ""},
      {"0.5%", 1 << 20, 0, "smaller than one KV block"},
      {"30%", -1, 0, "available memory is unknown"},
      {"0%", 1 << 30, 0, "a percentage must be in (0, 100]"},
      {"101%", 1 << 30, 0, "a percentage must be in (0, 100]"},
      {"", -1, 0, "empty"},
      {"-5M", -1, 0, "not a positive size"},
      {"lots", -1, 0, "not a positive size"},
      {"4X", -1, 0, "not a positive size"},
      {"16E", -1, 0, "not a positive size"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("spec \"" + c.spec + "\"");
    absl::StatusOr<int> b = KvBlocksForBytes(c.spec, 1024, 16, c.available);
    if (c.error.empty()) {
      ASSERT_TRUE(b.ok()) << b.status();
      EXPECT_EQ(*b, c.blocks);
    } else {
      ASSERT_FALSE(b.ok());
      EXPECT_THAT(std::string(b.status().message()), HasSubstr(c.error));
      EXPECT_THAT(std::string(b.status().message()), HasSubstr(c.spec));
    }
  }
}

TEST(KvSizing, AvailableMemoryIsReadOnLinux) {
  EXPECT_GT(AvailableMemoryBytes(), 0);
}

}  // namespace
}  // namespace spikeserve
