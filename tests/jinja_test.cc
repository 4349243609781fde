#include "runtime/text/jinja.h"
#include "gtest/gtest.h"
namespace spikeserve {
namespace {
TEST(Jinja, Placeholder) { EXPECT_TRUE(ChatTemplate::Parse("x").ok()); }
}  // namespace
}  // namespace spikeserve
